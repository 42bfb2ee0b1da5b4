// Package proxy is Coalesce's HTTP front end: the fasthttp servers of the
// data plane and the admin plane, routing, the protocol codecs (the seed's
// POST /predict, KServe V2 with binary tensors, TF Serving REST), and the
// one place where errors become status codes (StatusOf).
//
// Nothing below this package sees a *fasthttp.RequestCtx: handlers decode
// the request into tensors they own, call the backend, and encode the
// answer before they return.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
)

// Server serves the data plane. Create it with New; it is safe for
// concurrent use.
type Server struct {
	cfg      *config.Config
	version  string // reported by GET /v2
	log      *slog.Logger
	set      *metrics.Set
	met      *serverMetrics
	snap     atomic.Pointer[snapshot] // the served models; see Update
	draining atomic.Bool              // set by SetDraining: readiness 503, responses close their connection
	inflight atomic.Int64             // POST requests being handled
	retiring sync.WaitGroup           // retire goroutines and shadow workers started by Update
	edge     edge                     // connections, body budget, drain (edge.go)
	guard    guard                    // API keys, rate limits, TLS pair (guard.go)
	repo     Repository               // the repository API's model manager; nil: none (repository.go)

	mu       sync.Mutex         // serializes Update and Close; guards gen, closed, series, retired, onRetired, canaries, shadows and shadowSeries
	gen      uint64             // the last load generation given out
	closed   bool               // Close ran
	canaries map[string]*canary // by model name, kept across Updates (canary.go)
	shadows  map[string]*shadow // by model name, kept across Updates (shadow.go)
	// series counts the served entries, retiring ones included, that
	// record on each model version's batcher and request series
	// ({model,version}): a new load of a version shares its
	// predecessor's series (GetOrCreate), so the last of them to retire
	// removes them.
	series map[string]int
	// retired counts the retired entries of each model version
	// (seriesKey) whose queues are still draining (Retiring).
	retired map[string]int
	// onRetired is told when a version's count in retired drops to 0
	// (OnRetired); nil: nobody listens.
	onRetired func(name, version string)
	// shadowSeries counts the shadow workers of each {model,version}
	// series (shadow.key): a worker replaced by one of a new configuration
	// for the same version shares its series, which the last to stop
	// removes.
	shadowSeries map[string]int
}

// New returns a Server for the model versions of reg, configured by cfg
// (which it keeps and must not change afterwards); version is reported by
// GET /v2. Metrics are created on set. The server owns reg's backends from
// now on: Close closes them.
func New(cfg *config.Config, version string, reg *backends.Registry, set *metrics.Set, log *slog.Logger) (*Server, error) {
	s := &Server{cfg: cfg, version: version, log: log, set: set}
	s.met = newServerMetrics(set)
	s.edge.budget.max = int64(cfg.Limits.InflightBytes)
	s.edge.drainIdle = cfg.Shutdown.IdleTimeout
	s.edgeInit()
	if err := s.newGuard(cfg); err != nil {
		return nil, err
	}
	if err := s.Update(reg); err != nil {
		s.guard.watch.Close()
		return nil, err
	}
	return s, nil
}

// Close stops the batchers after the queued requests ran, waits for
// retired versions to drain, and closes every backend. Call it after the
// HTTP server has shut down; a second call does nothing.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true // no Update after this: the snapshot below is the last
	shadows := s.shadows
	s.mu.Unlock() // retire takes s.mu to release its series
	for _, sh := range shadows {
		sh.stop()
	}
	s.guard.watch.Close()
	sn := s.snap.Load()
	var errs []error
	for _, e := range sn.entries {
		errs = append(errs, e.b.Close(ctx))
	}
	done := make(chan struct{})
	go func() { s.retiring.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("retired model versions: %w", ctx.Err()))
	}
	for _, e := range sn.entries {
		errs = append(errs, e.Backend.Close())
		e.drift.Close()
	}
	return errors.Join(errs...)
}

// DefaultModel returns the name of the model POST /predict serves.
func (s *Server) DefaultModel() string { return s.snap.Load().def }

// SetDraining marks the server as shutting down: readiness answers 503
// at once, so that load balancers stop sending, and every response closes
// its connection; requests keep being served until the listener closes.
func (s *Server) SetDraining() { s.draining.Store(true) }

// HTTPServer returns a fasthttp server for the data plane with the
// configured limits and timeouts.
func (s *Server) HTTPServer() *fasthttp.Server {
	hs := &fasthttp.Server{
		Handler:               s.Handler,
		Name:                  "coalesce",
		ReadTimeout:           s.cfg.HTTP.ReadTimeout,
		WriteTimeout:          s.cfg.HTTP.WriteTimeout,
		IdleTimeout:           s.cfg.HTTP.IdleTimeout,
		MaxRequestBodySize:    int(s.cfg.Limits.MaxBodyBytes),
		Concurrency:           s.cfg.HTTP.MaxConnections,
		CloseOnShutdown:       true,
		NoDefaultServerHeader: false,
		ErrorHandler:          s.errorHandler,
		Logger:                fasthttpLogger{s.log},
	}
	s.edgeServer(hs)
	return hs
}

// fasthttpLogger sends fasthttp's own messages (connection errors that
// ErrorHandler already answered) to the structured log at debug level.
type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "source", "fasthttp")
}

// errorHandler answers requests fasthttp could not parse, in JSON.
func (s *Server) errorHandler(ctx *fasthttp.RequestCtx, err error) {
	writeError(ctx, httpError(err, int(s.cfg.Limits.MaxBodyBytes)))
	s.met.observe(nil, protoOther, ctx.Response.StatusCode(), time.Now())
}
