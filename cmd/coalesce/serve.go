package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/internal/app"
	"github.com/coalesce-ml/coalesce/internal/memlimit"
)

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// serve runs the server until SIGTERM or SIGINT, then drains: readiness
// turns 503 at once, the listener closes after shutdown.drain_delay,
// every request sent on an open connection is answered (with
// Connection: close), idle keep-alive connections close after
// shutdown.idle_timeout, and it returns exitOK when the last connection
// closed within shutdown.grace_period. SIGHUP rescans the model
// repository when models.control is poll.
func serve(cfg *config.Config, stdout, stderr io.Writer) int {
	log := newLogger(cfg, stdout)
	// GOMEMLIMIT and the in-flight byte budget default from the cgroup's
	// memory limit: process-wide, so here and not in app.New.
	memLimit, memSource := memlimit.SetDefault(memlimit.DefaultRoot)
	if cfg.Limits.InflightBytes == 0 {
		cfg.Limits.InflightBytes = config.ByteSize(memlimit.InflightBudget(memLimit, int64(cfg.Limits.MaxBodyBytes)))
	}
	inflight := int64(cfg.Limits.InflightBytes)
	a, err := app.New(cfg, version, log)
	if err != nil {
		fmt.Fprintf(stderr, "coalesce: %v\n", err)
		return exitConfig
	}
	srv := a.Server
	defer a.Close(context.Background()) // on early exits; a second Close is a no-op

	dataLn, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		fmt.Fprintf(stderr, "coalesce: http.addr: %v\n", err)
		return exitFail
	}
	scheme := "http"
	if tc := srv.TLSConfig(); tc != nil {
		// Inside the edge's Listener, so that it tracks the TLS
		// connections (and their first byte) like plain ones.
		dataLn, scheme = tls.NewListener(dataLn, tc), "https"
	}
	adminLn, err := net.Listen("tcp", cfg.Admin.Addr)
	if err != nil {
		dataLn.Close()
		fmt.Fprintf(stderr, "coalesce: admin.addr: %v\n", err)
		return exitFail
	}
	errc := make(chan error, 3) // one per server; nobody closes it
	grpcAddr := ""
	if a.GRPC != nil {
		grpcLn, err := net.Listen("tcp", cfg.GRPC.Addr)
		if err != nil {
			dataLn.Close()
			adminLn.Close()
			fmt.Fprintf(stderr, "coalesce: grpc.addr: %v\n", err)
			return exitFail
		}
		grpcAddr = grpcLn.Addr().String()
		defer a.GRPC.Stop()                          // on early exits; a no-op after the graceful stop
		go func() { errc <- a.GRPC.Serve(grpcLn) }() // nil only after Shutdown, when nobody reads errc
	}
	data, admin := a.Data, a.Admin
	go func() { errc <- data.Serve(srv.Listener(dataLn)) }()
	go func() { errc <- admin.Serve(adminLn) }()

	var models []any
	for _, m := range srv.Models() {
		models = append(models, slog.Group(m.Name+"@"+m.Version, "inputs", len(m.Meta.Inputs), "outputs", len(m.Meta.Outputs), "engine", m.Meta.Info))
	}
	log.Info("coalesce started",
		"version", version, "http", dataLn.Addr().String(), "scheme", scheme, "admin", adminLn.Addr().String(), "grpc", grpcAddr,
		"auth", cfg.Auth.KeysFile != "", "ratelimit_shadow", cfg.Rate.Shadow,
		"default_model", srv.DefaultModel(), "gomaxprocs", runtime.GOMAXPROCS(0),
		"gomemlimit", memLimit, "gomemlimit_source", string(memSource), "inflight_bytes", inflight,
		slog.Group("models", models...))

	sigCtx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// SIGHUP re-reads the key file and the TLS pair (Server.Reload logs
	// the outcome; a failed reload keeps what is in force) and, with
	// models.control: poll, rescans the model repository.
	hup := make(chan os.Signal, 1) // signal.Notify drops signals when full
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
wait:
	for {
		select {
		case <-sigCtx.Done():
			break wait
		case <-hup:
			_ = srv.Reload()
			if cfg.Models.Control == "poll" {
				log.Info("SIGHUP: rescanning the model repository")
				a.Lifecycle.Rescan()
			}
		case err := <-errc:
			log.Error("server stopped", "err", err)
			return exitFail
		}
	}
	stop() // a second signal now kills the process the default way
	log.Info("shutting down: readiness is 503", "drain_delay", cfg.Shutdown.DrainDelay.String(),
		"grace_period", cfg.Shutdown.GracePeriod.String(), "idle_timeout", cfg.Shutdown.IdleTimeout.String())
	if cfg.Shutdown.DrainDelay > 0 {
		// Keep serving, telling clients to go elsewhere, while endpoints
		// propagate that we are not ready. (Without a delay Shutdown
		// does this itself, after it stopped accepting.)
		srv.SetDraining()
		if a.GRPC != nil {
			a.GRPC.SetDraining()
		}
		t := time.NewTimer(cfg.Shutdown.DrainDelay)
		<-t.C
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.GracePeriod)
	defer cancel()
	grpcDone := make(chan error, 1) // the gRPC calls in flight finish beside the HTTP ones
	if a.GRPC != nil {
		go func() { grpcDone <- a.GRPC.Shutdown(ctx) }()
	} else {
		grpcDone <- nil
	}
	if err := srv.Shutdown(ctx, data); err != nil {
		log.Error("in-flight requests did not finish within the grace period", "err", err)
		return exitFail
	}
	if err := <-grpcDone; err != nil {
		log.Error("in-flight gRPC calls did not finish within the grace period", "err", err)
		return exitFail
	}
	if err := a.Close(ctx); err != nil {
		log.Error("queued requests did not finish within the grace period", "err", err)
		return exitFail
	}
	_ = admin.ShutdownWithContext(ctx)
	log.Info("shutdown complete")
	return exitOK
}
