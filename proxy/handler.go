package proxy

import (
	"bytes"
	"fmt"
	"runtime/debug"
	"unsafe"

	"github.com/valyala/fasthttp"
)

const protoOther = "other"

// Handler is the data-plane request handler. It loads the snapshot of
// served models once, routes, and writes every error through writeError.
// It never panics: a panic in a handler is logged and answered with 500.
func (s *Server) Handler(ctx *fasthttp.RequestCtx) {
	start := arrival(ctx) // the request's first byte (edge.go)
	sn := s.snap.Load()
	var e *entry // the model version that answered, nil until one is resolved
	proto := protoOther
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in request handler", "panic", fmt.Sprint(r), "path", string(ctx.Path()), "stack", string(debug.Stack()))
			writeError(ctx, fmt.Errorf("%w: %v", errPanic, r))
		}
		if s.closeConn(ctx) {
			// Tell keep-alive clients to go elsewhere while we still
			// answer (draining, or a connection beyond
			// http.max_connections); here, after writeError's reset, so
			// that no path misses it.
			ctx.SetConnectionClose()
		}
		s.met.observe(e.requestMetrics(), proto, ctx.Response.StatusCode(), start)
		s.finishRequest(ctx, start, proto, e)             // X-Request-Id, access log
		s.observeCanary(sn, e, ctx.Response.StatusCode()) // canary rollback (canary.go)
	}()
	held := s.takeHold(ctx)                   // what headerReceived decided (edge.go)
	defer func() { s.release(ctx, held.n) }() // the in-flight byte budget, on every path
	path := ctx.Path()
	var err error
	if ctx.IsPost() {
		n := s.inflight.Add(1)
		defer s.inflight.Add(-1)
		if max := int64(s.cfg.HTTP.MaxInflight); max > 0 && n > max {
			// Shed at the edge, before decoding: under overload the
			// cheapest answer is the one that does no work.
			s.met.shedInflight.Inc()
			writeError(ctx, errInflight{max})
			return
		}
	}
	if err := s.admit(ctx); err != nil {
		writeError(ctx, err)
		return
	}
	// API key (401) before routing, so that a caller without one learns
	// nothing of the models; model access and rate limits come in
	// serveInfer, once the model is known (guard.go).
	if err := s.authenticate(ctx, path, held.id); err != nil {
		writeError(ctx, err)
		return
	}
	switch {
	case bytes.Equal(path, []byte("/predict")):
		proto = protoPredict
		e, err = s.predict(ctx, sn)
	case bytes.HasPrefix(path, []byte("/v2")):
		proto = protoV2
		e, err = s.routeV2(ctx, sn, path)
	case bytes.HasPrefix(path, []byte("/v1/models/")):
		proto = protoTFS
		e, err = s.routeTFS(ctx, sn, path[len("/v1/models/"):])
	default:
		err = &Error{Status: fasthttp.StatusNotFound, Msg: fmt.Sprintf("no endpoint %q; see /v2 (KServe V2), /v1/models/{m} (TF Serving) and /predict", truncateBytes(path))}
	}
	if e != nil && err == nil {
		// Metadata and readiness of a model the key may not call are
		// refused too; inference was refused before decoding.
		err = s.modelAccess(ctx, e.Name)
	}
	if err != nil {
		writeError(ctx, err)
	}
}

// methodNotAllowed answers 405 naming the allowed method.
func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) error {
	return &Error{Status: fasthttp.StatusMethodNotAllowed, Msg: fmt.Sprintf("method %s is not allowed on %s; want %s", truncateBytes(ctx.Method()), truncateBytes(ctx.Path()), allow), allow: allow}
}

// isGet reports whether the request is GET or HEAD.
func isGet(ctx *fasthttp.RequestCtx) bool { return ctx.IsGet() || ctx.IsHead() }

// lookup resolves a model name and version from the path or query. The
// strings it passes are views of the request's bytes, not copies:
// Registry.Get retains neither, and its errors quote them truncated.
func lookup(sn *snapshot, name, version []byte) (*entry, error) {
	e, err := sn.get(unsafe.String(unsafe.SliceData(name), len(name)), unsafe.String(unsafe.SliceData(version), len(version)))
	if err != nil {
		return nil, notFound{err: err, name: truncateBytes(name), version: truncateBytes(version)}
	}
	return e, nil
}
