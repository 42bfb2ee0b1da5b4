package proxy

import (
	"bytes"
	"net/http/pprof"
	"strconv"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/bytebufferpool"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// AdminHandler returns the admin-plane handler: GET /metrics in Prometheus
// text format (the metrics of set plus process and Go runtime metrics),
// GET /v2/health/live and /v2/health/ready mirrored from the data plane,
// GET /admin/drift/{model} and POST /admin/feedback/{model} (drift.go),
// the repository API (POST /v2/repository/index, .../models/{m}/load and
// /unload; repository.go), and /debug/pprof/ when pprofOn is true. It
// never shares a port with clients. Every metric family carries # HELP and
// # TYPE: AdminHandler turns on VictoriaMetrics/metrics' ExposeMetadata, a
// switch of that package that holds for the whole process.
func (s *Server) AdminHandler(set *metrics.Set, pprofOn bool) fasthttp.RequestHandler {
	metrics.ExposeMetadata(true)
	pprofIndex := fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Index)
	pprofHandlers := map[string]fasthttp.RequestHandler{
		"/debug/pprof/cmdline": fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Cmdline),
		"/debug/pprof/profile": fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Profile),
		"/debug/pprof/symbol":  fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Symbol),
		"/debug/pprof/trace":   fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Trace),
	}
	return func(ctx *fasthttp.RequestCtx) {
		if err := s.adminAuth(ctx); err != nil { // auth.admin_plane (guard.go)
			writeError(ctx, err)
			return
		}
		path := ctx.Path()
		switch {
		case bytes.Equal(path, []byte("/metrics")):
			if !isGet(ctx) {
				writeError(ctx, methodNotAllowed(ctx, "GET"))
				return
			}
			ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
			bb := bytebufferpool.Get()
			set.WritePrometheus(bb)
			s.writeStateMetrics(bb)
			metrics.WriteProcessMetrics(bb)
			writeMetrics(ctx, bb.B)
			bytebufferpool.Put(bb)
		case bytes.Equal(path, []byte("/v2/health/live")):
			if err := s.health(ctx, true); err != nil {
				writeError(ctx, err)
			}
		case bytes.Equal(path, []byte("/v2/health/ready")):
			if err := s.health(ctx, !s.draining.Load()); err != nil {
				writeError(ctx, err)
			}
		case bytes.HasPrefix(path, []byte("/admin/drift/")): // drift.go
			if err := s.serveDrift(ctx, string(path[len("/admin/drift/"):])); err != nil {
				writeError(ctx, err)
			}
		case bytes.HasPrefix(path, []byte("/admin/feedback/")): // drift.go
			if err := s.serveFeedback(ctx, string(path[len("/admin/feedback/"):])); err != nil {
				writeError(ctx, err)
			}
		case bytes.HasPrefix(path, []byte("/v2/repository/")):
			if err := s.repositoryAuth(ctx); err != nil {
				writeError(ctx, err)
			} else if err := s.serveRepository(ctx, path[len("/v2/repository/"):]); err != nil {
				writeError(ctx, err)
			}
		case pprofOn && bytes.HasPrefix(path, []byte("/debug/pprof/")):
			if h := pprofHandlers[string(path)]; h != nil {
				h(ctx)
			} else {
				pprofIndex(ctx)
			}
		case bytes.HasPrefix(path, []byte("/debug/pprof")):
			writeError(ctx, &Error{Status: fasthttp.StatusNotFound, Msg: "pprof is off; start with --admin.pprof (admin.pprof: true) to serve /debug/pprof/"})
		default:
			writeError(ctx, &Error{Status: fasthttp.StatusNotFound, Msg: "no admin endpoint " + strconv.Quote(truncateBytes(path)) + "; want /metrics, /v2/health/live, /v2/health/ready, /v2/repository/, /admin/drift/{model} or /admin/feedback/{model}" + map[bool]string{true: " or /debug/pprof/", false: ""}[pprofOn]})
		}
	}
}
