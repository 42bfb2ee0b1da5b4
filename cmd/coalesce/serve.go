package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/backends/cpu"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/internal/memlimit"
	"github.com/coalesce-ml/coalesce/proxy"
)

// loaders maps model file names to the backends that load them: the CPU
// engine reads ONNX (model.onnx), XGBoost JSON (model.json) and LightGBM
// text (model.txt).
func loaders(cfg *config.Config) map[string]backends.Loader {
	return cpu.Loaders(cpu.Options{Concurrency: cfg.Models.Concurrency, Kernels: cfg.Models.Kernels})
}

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
// closed within shutdown.grace_period.
func serve(cfg *config.Config, stdout, stderr io.Writer) int {
	log := newLogger(cfg, stdout)
	memLimit, memSource := memlimit.SetDefault(memlimit.DefaultRoot)
	inflight := int64(cfg.Limits.InflightBytes)
	if inflight == 0 {
		inflight = memlimit.InflightBudget(memLimit, int64(cfg.Limits.MaxBodyBytes))
	}
	reg, err := backends.LoadRepository(cfg.Models.Repository, loaders(cfg))
	if err != nil {
		fmt.Fprintf(stderr, "coalesce: %v\n", err)
		return exitConfig
	}
	defer reg.Close()

	set := metrics.NewSet()
	srv, err := proxy.New(proxy.Config{
		DefaultModel:   cfg.Models.Default,
		RequestTimeout: cfg.HTTP.RequestTimeout,
		Version:        version,
		ReadTimeout:    cfg.HTTP.ReadTimeout,
		WriteTimeout:   cfg.HTTP.WriteTimeout,
		IdleTimeout:    cfg.HTTP.IdleTimeout,
		MaxConnections: cfg.HTTP.MaxConnections,
		MaxInflight:    cfg.HTTP.MaxInflight,
		Batching:       cfg.Batching,
		Limits: proxy.Limits{
			MaxBodyBytes:      cfg.Limits.MaxBodyBytes,
			MaxTensorElements: cfg.Limits.MaxTensorElements,
			MaxJSONDepth:      cfg.Limits.MaxJSONDepth,
			AllowNonFinite:    cfg.Limits.AllowNonFinite,
		},
	}, reg, set, log)
	if err != nil {
		fmt.Fprintf(stderr, "coalesce: %v\n", err)
		return exitConfig
	}
	defer srv.Close(context.Background()) // on early exits; a second Close is a no-op
	set.NewGauge(`coalesce_build_info{version="`+version+`",goversion="`+runtime.Version()+`"}`, func() float64 { return 1 })

	dataLn, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		fmt.Fprintf(stderr, "coalesce: http.addr: %v\n", err)
		return exitFail
	}
	adminLn, err := net.Listen("tcp", cfg.Admin.Addr)
	if err != nil {
		dataLn.Close()
		fmt.Fprintf(stderr, "coalesce: admin.addr: %v\n", err)
		return exitFail
	}
	srv.SetEdge(proxy.EdgeConfig{InflightBytes: inflight, DrainIdle: cfg.Shutdown.IdleTimeout})
	data := srv.HTTPServer()
	admin := &fasthttp.Server{
		Handler:         srv.AdminHandler(set, cfg.Admin.Pprof),
		Name:            "coalesce-admin",
		ReadTimeout:     cfg.HTTP.ReadTimeout,
		WriteTimeout:    time.Minute, // pprof profiles stream for up to 30s by default
		IdleTimeout:     cfg.HTTP.IdleTimeout,
		CloseOnShutdown: true,
	}
	errc := make(chan error, 2) // one per server; nobody closes it
	go func() { errc <- data.Serve(srv.Listener(dataLn)) }()
	go func() { errc <- admin.Serve(adminLn) }()

	var models []any
	for _, name := range reg.Names() {
		var vs []string
		for _, m := range reg.Versions(name) {
			vs = append(vs, m.Version)
		}
		m, _ := reg.Get(name, "")
		models = append(models, slog.Group(name, "versions", vs, "inputs", len(m.Meta.Inputs), "outputs", len(m.Meta.Outputs), "engine", m.Meta.Info))
	}
	log.Info("coalesce started",
		"version", version, "http", dataLn.Addr().String(), "admin", adminLn.Addr().String(),
		"default_model", srv.DefaultModel(), "gomaxprocs", runtime.GOMAXPROCS(0),
		"gomemlimit", memLimit, "gomemlimit_source", string(memSource), "inflight_bytes", inflight,
		slog.Group("models", models...))

	sigCtx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	select {
	case <-sigCtx.Done():
	case err := <-errc:
		log.Error("server stopped", "err", err)
		return exitFail
	}
	stop() // a second signal now kills the process the default way
	log.Info("shutting down: readiness is 503", "drain_delay", cfg.Shutdown.DrainDelay.String(),
		"grace_period", cfg.Shutdown.GracePeriod.String(), "idle_timeout", cfg.Shutdown.IdleTimeout.String())
	if cfg.Shutdown.DrainDelay > 0 {
		// Keep serving, telling clients to go elsewhere, while endpoints
		// propagate that we are not ready. (Without a delay Shutdown
		// does this itself, after it stopped accepting.)
		srv.SetDraining()
		t := time.NewTimer(cfg.Shutdown.DrainDelay)
		<-t.C
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.GracePeriod)
	defer cancel()
	if err := srv.Shutdown(ctx, data); err != nil {
		log.Error("in-flight requests did not finish within the grace period", "err", err)
		return exitFail
	}
	if err := srv.Close(ctx); err != nil {
		log.Error("queued requests did not finish within the grace period", "err", err)
		return exitFail
	}
	_ = admin.ShutdownWithContext(ctx)
	log.Info("shutdown complete")
	return exitOK
}
