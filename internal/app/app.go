// Package app wires a Coalesce process from its configuration: the model
// registry, the data-plane server and the admin plane. main, the bench
// tool's in-process target and the end-to-end tests all build their server
// here, so that they run the same thing.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/backends/cpu"
	"github.com/coalesce-ml/coalesce/backends/upstream"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/grpcserver"
	"github.com/coalesce-ml/coalesce/lifecycle"
	"github.com/coalesce-ml/coalesce/proxy"
)

// commit is the VCS revision of the build, stamped with -ldflags
// "-X github.com/coalesce-ml/coalesce/internal/app.commit=<sha>" (the
// Makefile and the Dockerfile do).
var commit string

// Commit returns the build's VCS revision: the stamped one, else the one
// the go command recorded (builds in a checkout without -buildvcs=false),
// else "unknown".
func Commit() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// App is a configured Coalesce: its server, metrics set, and the fasthttp
// servers of its two planes (not yet listening).
type App struct {
	Server  *proxy.Server
	Metrics *metrics.Set
	// Data serves the data plane (http.addr); Admin the admin plane
	// (admin.addr: /metrics, health, the repository API, pprof when
	// admin.pprof is on).
	Data, Admin *fasthttp.Server
	// GRPC serves the KServe V2 gRPC API (grpc.addr) through Server; nil
	// when grpc.addr is empty.
	GRPC *grpcserver.Server
	// Lifecycle loads and retires model versions (models.control); in
	// poll mode it watches the repository from New until Close.
	Lifecycle *lifecycle.Manager
}

// Loaders maps model file names to the backends that load them: the CPU
// engine reads ONNX (model.onnx), XGBoost JSON (model.json) and LightGBM
// text (model.txt); a version directory holding upstream.yaml is served
// by remote replicas (backends/upstream), whose metrics go to set.
func Loaders(cfg *config.Config, set *metrics.Set, log *slog.Logger) map[string]backends.Loader {
	l := cpu.Loaders(cpu.Options{Concurrency: cfg.Models.Concurrency, Kernels: cfg.Models.Kernels})
	l[upstream.File] = upstream.Loader(upstream.Options{Defaults: cfg.Upstream, Metrics: set, Log: log})
	return l
}

// New loads the model repository of cfg and builds the server. version is
// the build's version, reported by GET /v2 and coalesce_build_info. cfg
// must be valid (config.Load validates it) and is kept.
func New(cfg *config.Config, version string, log *slog.Logger) (*App, error) {
	set := metrics.NewSet()
	loaders := Loaders(cfg, set, log)
	reg, err := backends.LoadRepository(cfg.Models.Repository, loaders)
	if err != nil {
		return nil, err
	}
	srv, err := proxy.New(cfg, version, reg, set, log)
	if err != nil {
		reg.Close()
		return nil, err
	}
	lc := lifecycle.New(cfg, srv, loaders, set, log)
	srv.SetRepository(lc)
	if err := lc.Start(); err != nil {
		srv.Close(context.Background())
		return nil, fmt.Errorf("models.control: %w", err)
	}
	set.NewGauge(`coalesce_build_info{version="`+version+`",commit="`+Commit()+`",goversion="`+runtime.Version()+`"}`, func() float64 { return 1 })
	a := &App{
		Server:    srv,
		Metrics:   set,
		Lifecycle: lc,
		Data:      srv.HTTPServer(),
		Admin: &fasthttp.Server{
			Handler:         srv.AdminHandler(set, cfg.Admin.Pprof),
			Name:            "coalesce-admin",
			ReadTimeout:     cfg.HTTP.ReadTimeout,
			WriteTimeout:    time.Minute, // pprof profiles stream for up to 30s by default
			IdleTimeout:     cfg.HTTP.IdleTimeout,
			CloseOnShutdown: true,
		},
	}
	if cfg.GRPC.Addr != "" {
		a.GRPC = grpcserver.New(cfg, srv)
	}
	return a, nil
}

// Close releases what New built: the repository watcher, the batchers and
// the backends. Call it after both planes have shut down.
func (a *App) Close(ctx context.Context) error {
	a.Lifecycle.Close()
	return a.Server.Close(ctx)
}
