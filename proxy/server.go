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
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/batcher"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

// Config holds what the proxy needs from the process configuration.
type Config struct {
	// DefaultModel is served by POST /predict without ?model=; empty
	// means the registry's first model by name.
	DefaultModel string
	// RequestTimeout is the deadline of a request from arrival when
	// neither the model nor batching.default_timeout sets one.
	RequestTimeout time.Duration
	// Batching holds the batcher defaults; each model's config.yaml
	// overrides them.
	Batching config.Batching
	Limits   Limits
	// Version is reported by GET /v2.
	Version string
	// ReadTimeout, WriteTimeout and IdleTimeout configure the data-plane
	// server; MaxConnections bounds its open connections.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	MaxConnections                         int
	// MaxInflight bounds the POST requests handled at once; more are
	// answered 503 at once. 0 means no bound.
	MaxInflight int
}

// Server serves the data plane. Create it with New; it is safe for
// concurrent use.
type Server struct {
	cfg      Config
	reg      *backends.Registry
	log      *slog.Logger
	met      *serverMetrics
	parsers  fastjson.ParserPool
	draining atomic.Bool  // set by SetDraining: readiness 503, responses close their connection
	inflight atomic.Int64 // POST requests being handled
	edge     edge         // connections, body budget, drain (edge.go)
	defModel *backends.ModelVersion
	// batchers holds one batcher per model version; read-only after New.
	batchers map[*backends.ModelVersion]*modelBatcher
}

// modelBatcher is a model version's batcher and its request deadline.
type modelBatcher struct {
	*batcher.Batcher
	timeout time.Duration // default deadline from arrival
}

// New returns a Server for the models of reg. Metrics are registered on
// set, which must not already hold Coalesce's metrics.
func New(cfg Config, reg *backends.Registry, set *metrics.Set, log *slog.Logger) (*Server, error) {
	s := &Server{cfg: cfg, reg: reg, log: log}
	name := cfg.DefaultModel
	if name == "" {
		name = reg.Names()[0]
	}
	m, err := reg.Get(name, "")
	if err != nil {
		return nil, fmt.Errorf("models.default: %w; want one of %v", err, reg.Names())
	}
	s.defModel = m
	s.met = newServerMetrics(set, reg)
	s.batchers = map[*backends.ModelVersion]*modelBatcher{}
	for _, name := range reg.Names() {
		for _, m := range reg.Versions(name) {
			bc, timeout := batcherConfig(cfg, m.Config)
			s.batchers[m] = &modelBatcher{batcher.New(m.Backend, bc, batcher.NewMetrics(set, m.Name, m.Version), nil), timeout}
		}
	}
	return s, nil
}

// batcherConfig merges the batching defaults with a model's overrides.
func batcherConfig(cfg Config, mc config.ModelConfig) (batcher.Config, time.Duration) {
	d := cfg.Batching
	bc := batcher.Config{Enabled: d.Enabled, MaxBatchSize: d.MaxBatchSize, MaxQueueDelay: d.MaxQueueDelay,
		PreferredBatchSize: d.PreferredBatchSize, QueueCapacity: d.QueueCapacity, PriorityLevels: d.PriorityLevels}
	if mc.Batching != nil {
		bc.Enabled = *mc.Batching
	}
	if mc.MaxBatchSize > 0 {
		bc.MaxBatchSize = mc.MaxBatchSize
	}
	if mc.MaxQueueDelay > 0 {
		bc.MaxQueueDelay = mc.MaxQueueDelay
	}
	if mc.PreferredBatchSize > 0 {
		bc.PreferredBatchSize = mc.PreferredBatchSize
	}
	if mc.QueueCapacity > 0 {
		bc.QueueCapacity = mc.QueueCapacity
	}
	if mc.PriorityLevels > 0 {
		bc.PriorityLevels = mc.PriorityLevels
	}
	timeout := cfg.RequestTimeout
	if d.DefaultTimeout > 0 {
		timeout = d.DefaultTimeout
	}
	if mc.DefaultTimeout > 0 {
		timeout = mc.DefaultTimeout
	}
	return bc, timeout
}

// Close stops the batchers after the queued requests ran. Call it after
// the HTTP server has shut down.
func (s *Server) Close(ctx context.Context) error {
	var errs []error
	for _, b := range s.batchers {
		errs = append(errs, b.Close(ctx))
	}
	return errors.Join(errs...)
}

// DefaultModel returns the name of the model POST /predict serves.
func (s *Server) DefaultModel() string { return s.defModel.Name }

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
		ReadTimeout:           s.cfg.ReadTimeout,
		WriteTimeout:          s.cfg.WriteTimeout,
		IdleTimeout:           s.cfg.IdleTimeout,
		MaxRequestBodySize:    s.cfg.Limits.MaxBodyBytes,
		Concurrency:           s.cfg.MaxConnections,
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
	var e *Error
	var se *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		e = &Error{Status: fasthttp.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("request body is larger than the limit of %d bytes (limits.max_body_bytes)", s.cfg.Limits.MaxBodyBytes)}
	case errors.As(err, &se):
		e = &Error{Status: fasthttp.StatusRequestHeaderFieldsTooLarge, Msg: "request headers are too large"}
	default:
		var te interface{ Timeout() bool }
		if errors.As(err, &te) && te.Timeout() {
			e = &Error{Status: fasthttp.StatusRequestTimeout, Msg: "request was not read in time"}
		} else {
			e = badRequest("malformed HTTP request: %s", err)
		}
	}
	writeError(ctx, e)
	s.met.observe("", protoOther, e.Status, time.Now())
}

// Handler is the data-plane request handler. It never panics: a panic in
// a handler is logged and answered with 500.
func (s *Server) Handler(ctx *fasthttp.RequestCtx) {
	start := ctx.Time() // when fasthttp began this request; saves a clock read
	model, proto := "", protoOther
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in request handler", "panic", fmt.Sprint(r), "path", string(ctx.Path()), "stack", string(debug.Stack()))
			writeError(ctx, &Error{Status: fasthttp.StatusInternalServerError, Msg: fmt.Sprintf("internal error: %v", r)})
		}
		if s.closeConn(ctx) {
			// Tell keep-alive clients to go elsewhere while we still
			// answer (draining, or a connection beyond
			// http.max_connections); here, after writeError's reset, so
			// that no path misses it.
			ctx.SetConnectionClose()
		}
		s.met.observe(model, proto, ctx.Response.StatusCode(), start)
	}()
	defer s.releaseHeld(ctx) // the in-flight byte budget, on every path (edge.go)
	path := ctx.Path()
	var err error
	if ctx.IsPost() {
		n := s.inflight.Add(1)
		defer s.inflight.Add(-1)
		if max := int64(s.cfg.MaxInflight); max > 0 && n > max {
			// Shed at the edge, before decoding: under overload the
			// cheapest answer is the one that does no work.
			writeError(ctx, &Error{Status: fasthttp.StatusServiceUnavailable, Msg: fmt.Sprintf("server is overloaded: %d requests in flight (http.max_inflight); retry later", max)})
			return
		}
	}
	if err := s.admit(ctx); err != nil {
		writeError(ctx, err)
		return
	}
	switch {
	case bytes.Equal(path, []byte("/predict")):
		proto = protoPredict
		model, err = s.predict(ctx)
	case bytes.HasPrefix(path, []byte("/v2")):
		proto = protoV2
		model, err = s.routeV2(ctx, path)
	case bytes.HasPrefix(path, []byte("/v1/models/")):
		proto = protoTFS
		model, err = s.routeTFS(ctx, path[len("/v1/models/"):])
	default:
		err = &Error{Status: fasthttp.StatusNotFound, Msg: fmt.Sprintf("no endpoint %q; see /v2 (KServe V2), /v1/models/{m} (TF Serving) and /predict", path)}
	}
	if err != nil {
		writeError(ctx, err)
	}
}

// methodNotAllowed answers 405 naming the allowed method.
func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) error {
	return &Error{Status: fasthttp.StatusMethodNotAllowed, Msg: fmt.Sprintf("method %s is not allowed on %s; want %s", ctx.Method(), ctx.Path(), allow), allow: allow}
}

// isGet reports whether the request is GET or HEAD.
func isGet(ctx *fasthttp.RequestCtx) bool { return ctx.IsGet() || ctx.IsHead() }

// lookup resolves a model name and version from the path or query. The
// strings it passes are views of the request's bytes, not copies:
// Registry.Get retains neither.
func (s *Server) lookup(name, version []byte) (*backends.ModelVersion, error) {
	return s.reg.Get(unsafe.String(unsafe.SliceData(name), len(name)), unsafe.String(unsafe.SliceData(version), len(version)))
}

// hints are what a client may ask of the scheduling of its request.
type hints struct {
	timeout  time.Duration // 0 = the model's default; only shortens it
	priority int           // 0 = the lowest level
}

// infer runs one decoded request on model m through its batcher and
// returns its outputs in the model's output order. inputs are in the
// model's input order; arrived is when the request arrived (its deadline
// counts from then).
func (s *Server) infer(arrived time.Time, m *backends.ModelVersion, inputs []*tensor.Tensor, h hints) ([]*tensor.Tensor, error) {
	rows := 0
	if len(inputs) > 0 {
		rows = inputs[0].BatchSize()
	}
	if rows == 0 {
		return nil, badRequest("batch of 0 rows; want at least one row (the first dimension of every input)")
	}
	b := s.batchers[m]
	if max := b.Config().MaxBatchSize; rows > max {
		return nil, badRequest("batch of %d rows is larger than model %s's max_batch_size %d", rows, m.Name, max)
	}
	timeout := b.timeout
	if h.timeout > 0 && h.timeout < timeout {
		timeout = h.timeout
	}
	start := time.Now()
	out, err := b.Submit(batcher.Request{Inputs: inputs, Deadline: arrived.Add(timeout), Priority: h.priority})
	if err != nil {
		switch {
		case errors.Is(err, batcher.ErrExpired), errors.Is(err, context.DeadlineExceeded):
			return nil, &Error{Status: fasthttp.StatusGatewayTimeout, Msg: fmt.Sprintf("model %s did not answer within the request deadline (%v)", m.Name, timeout)}
		case errors.Is(err, batcher.ErrQueueFull):
			return nil, &Error{Status: fasthttp.StatusServiceUnavailable, Msg: fmt.Sprintf("model %s is overloaded: its queue is full; retry later", m.Name)}
		case errors.Is(err, batcher.ErrOverloaded):
			return nil, &Error{Status: fasthttp.StatusServiceUnavailable, Msg: fmt.Sprintf("model %s cannot answer within the request deadline (%v) at its current load; retry later", m.Name, timeout)}
		case errors.Is(err, batcher.ErrClosed):
			return nil, &Error{Status: fasthttp.StatusServiceUnavailable, Msg: "server is shutting down; retry on another instance"}
		}
		return nil, fmt.Errorf("model %s version %s: %w", m.Name, m.Version, err)
	}
	if len(out) != len(m.Meta.Outputs) {
		return nil, fmt.Errorf("BUG: model %s returned %d outputs; declared %d", m.Name, len(out), len(m.Meta.Outputs))
	}
	for _, t := range out {
		// The encoders walk BYTES data element by element; check its
		// layout once here rather than trusting it in each of them.
		if t.DType == tensor.Bytes {
			if err := t.Validate(); err != nil {
				return nil, fmt.Errorf("model %s version %s: output: %w", m.Name, m.Version, err)
			}
		}
	}
	s.met.inference(m, rows, start)
	return out, nil
}

// headerHints reads the Coalesce-Timeout (a duration such as 250ms, or
// milliseconds) and Coalesce-Priority headers.
func headerHints(ctx *fasthttp.RequestCtx) (hints, error) {
	var h hints
	if v := ctx.Request.Header.Peek("Coalesce-Timeout"); len(v) > 0 {
		d, err := time.ParseDuration(string(v))
		if err != nil {
			ms, err2 := strconv.ParseUint(string(v), 10, 32)
			if err2 != nil {
				return h, badRequest("header Coalesce-Timeout: %q; want a duration such as 250ms or 2s, or milliseconds", v)
			}
			d = time.Duration(ms) * time.Millisecond
		}
		if d <= 0 {
			return h, badRequest("header Coalesce-Timeout: %q; want a positive duration", v)
		}
		h.timeout = d
	}
	if v := ctx.Request.Header.Peek("Coalesce-Priority"); len(v) > 0 {
		p, err := strconv.ParseUint(string(v), 10, 16)
		if err != nil {
			return h, badRequest("header Coalesce-Priority: %q; want a priority level, 1 = highest (0 = the default)", v)
		}
		h.priority = int(p)
	}
	return h, nil
}

// prepareInputs checks named input tensors against model m and returns
// them in the model's input order, converted to the declared datatypes.
// field names where the inputs came from, for error messages.
func prepareInputs(m *backends.ModelVersion, byName map[string]*tensor.Tensor, field string) ([]*tensor.Tensor, error) {
	specs := m.Meta.Inputs
	for name := range byName {
		found := false
		for _, sp := range specs {
			found = found || sp.Name == name
		}
		if !found {
			return nil, badRequest("%s: model %s has no input %q; want %s", field, m.Name, name, inputList(specs))
		}
	}
	out := make([]*tensor.Tensor, len(specs))
	batch := int64(-1)
	for i, sp := range specs {
		t := byName[sp.Name]
		if t == nil {
			return nil, badRequest("%s: input %q of model %s is missing; want %s", field, sp.Name, m.Name, inputList(specs))
		}
		ct, err := checkInput(sp, t, field, &batch)
		if err != nil {
			return nil, err
		}
		out[i] = ct
	}
	return out, nil
}

// prepareOne is prepareInputs for one tensor, without building a map: the
// common case of a single-input model.
func prepareOne(m *backends.ModelVersion, t *tensor.Tensor, field string) ([]*tensor.Tensor, error) {
	if len(m.Meta.Inputs) != 1 || m.Meta.Inputs[0].Name != t.Name {
		return prepareInputs(m, map[string]*tensor.Tensor{t.Name: t}, field)
	}
	batch := int64(-1)
	ct, err := checkInput(m.Meta.Inputs[0], t, field, &batch)
	if err != nil {
		return nil, err
	}
	return []*tensor.Tensor{ct}, nil
}

// checkInput checks t against its spec and the batch size of the inputs
// before it (*batch, -1 for none), and converts it to the declared type.
func checkInput(sp backends.TensorSpec, t *tensor.Tensor, field string, batch *int64) (*tensor.Tensor, error) {
	if len(t.Shape) != len(sp.Shape) {
		return nil, badRequest("%s: input %q has shape %v; want %d dimensions like %v (-1 = any size)", field, sp.Name, t.Shape, len(sp.Shape), sp.Shape)
	}
	for d, want := range sp.Shape {
		if want >= 0 && t.Shape[d] != want {
			return nil, badRequest("%s: input %q has shape %v; want %v (-1 = any size)", field, sp.Name, t.Shape, sp.Shape)
		}
	}
	if len(t.Shape) > 0 {
		if *batch >= 0 && t.Shape[0] != *batch {
			return nil, badRequest("%s: input %q has batch size %d but other inputs have %d; want the same first dimension for every input", field, sp.Name, t.Shape[0], *batch)
		}
		*batch = t.Shape[0]
	}
	ct, err := convertExact(t, sp.DType)
	if err != nil {
		return nil, badRequest("%s: input %q: %s; want datatype %s", field, sp.Name, err, sp.DType)
	}
	return ct, nil
}

func inputList(specs []backends.TensorSpec) string {
	var b []byte
	for i, sp := range specs {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = fmt.Appendf(b, "%q %s %s", sp.Name, sp.DType, fmtShape(sp.Shape))
	}
	return string(b)
}

// outputIndex returns the position of output name in m, or -1.
func outputIndex(m *backends.ModelVersion, name string) int {
	for i, sp := range m.Meta.Outputs {
		if sp.Name == name {
			return i
		}
	}
	return -1
}
