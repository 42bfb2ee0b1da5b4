package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/coalesce-ml/coalesce/auth"
	"github.com/valyala/fasthttp"
)

// DefaultDrainIdle is the drain idle time when shutdown.idle_timeout is 0.
const DefaultDrainIdle = time.Second

// edge is a Server's connection table, body budget and drain settings.
type edge struct {
	once      sync.Once
	conns     *connTable
	budget    budget
	holds     holds
	drainIdle time.Duration
}

func (s *Server) edgeInit() *edge {
	s.edge.once.Do(func() {
		s.edge.conns = newConnTable(s.cfg.HTTP.MaxConnections, &s.edge.budget)
		if s.edge.drainIdle <= 0 {
			s.edge.drainIdle = DefaultDrainIdle
		}
	})
	return &s.edge
}

// edgeServer sets the fasthttp features the edge relies on in hs, the
// data-plane server HTTPServer builds.
//
// Admission happens in HeaderReceived, which fasthttp calls once a
// request's headers are in and before it reads the body. Its
// StreamRequestBody, which would let the handler itself decide before the
// body, keeps each keep-alive connection's 4 KiB read buffer and its
// RequestCtx while the connection idles even with ReduceMemoryUsage (it
// releases them only if !StreamRequestBody: serveConn in fasthttp's
// server.go), about 6 KiB more per idle connection than without.
func (s *Server) edgeServer(hs *fasthttp.Server) {
	e := s.edgeInit()
	hs.HeaderReceived = s.headerReceived
	// Expect: 100-continue gets our final answer instead of 100 when the
	// body would be refused anyway (RFC 9110 §10.1.1).
	hs.ExpectHandler = s.expect
	inner := hs.ErrorHandler
	hs.ErrorHandler = func(ctx *fasthttp.RequestCtx, err error) {
		if s.releaseHeld(ctx) == 0 && errors.Is(err, fasthttp.ErrBodyTooLarge) &&
			ctx.Request.Header.ContentLength() <= int(s.cfg.Limits.MaxBodyBytes) {
			// headerReceived refused the body (MaxRequestBodySize 1):
			// fasthttp did not read it and closes the connection.
			var e error
			if _, kerr := s.bodyKey(ctx); kerr != nil {
				e = kerr
			} else if s.edge.budget.max > 0 {
				e = s.overBudget()
			}
			if e != nil {
				writeError(ctx, e)
				s.met.observe(nil, protoOther, ctx.Response.StatusCode(), time.Now())
				return
			}
		}
		inner(ctx, err)
	}
	hs.ConnState = e.conns.setState
	// Between requests fasthttp returns a keep-alive connection's read
	// and write buffers (4 KiB each) and its RequestCtx to pools, so that
	// an idle connection costs its goroutine and little else
	// (TestIdleConnMemory); the price is a pool round trip per request
	// (BenchmarkHandlerConn).
	hs.ReduceMemoryUsage = true
	// fasthttp keeps the goroutine that served a closed connection, with
	// its stack, for the next connection until it has been idle for
	// MaxIdleWorkerDuration (default 10s, checked as often: up to 20s).
	// A sidecar's clients keep their connections; after many close at
	// once, their goroutines should go within seconds.
	hs.MaxIdleWorkerDuration = time.Second
	if s.cfg.HTTP.MaxConnections > 0 {
		// The table keeps connections at MaxConnections by closing idle
		// ones and admits a reserve beyond it when none is idle;
		// fasthttp's limit, which answers 503 to every new connection,
		// is only the hard stop behind both.
		hs.Concurrency = s.cfg.HTTP.MaxConnections + overflowReserve(s.cfg.HTTP.MaxConnections)
	}
}

// budget bounds bytes in flight. The zero value has no bound.
type budget struct {
	max  int64 // 0 = no bound; set before serving
	used atomic.Int64
}

// acquire takes n bytes and reports whether they fit.
func (b *budget) acquire(n int64) bool {
	if b.max <= 0 {
		return true
	}
	for {
		u := b.used.Load()
		if u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (b *budget) release(n int64) {
	if b.max > 0 && n > 0 {
		b.used.Add(-n)
	}
}

// holds records what HeaderReceived decided for requests whose body is
// being read (the budget bytes they hold, the identity of their key),
// keyed by the request's header: HeaderReceived sees nothing else
// of the request, and the header keeps its address for the request's
// lifetime, also through the Request.Reset that a failed body read does
// before ErrorHandler runs. Sharded so that requests rarely contend.
type holds struct {
	shards [16]holdShard
}

type holdShard struct {
	mu sync.Mutex // guards m
	m  map[*fasthttp.RequestHeader]hold
}

// hold is what HeaderReceived decided for one request.
type hold struct {
	n  int64          // budget bytes held
	id *auth.Identity // the key's identity, checked; nil with keys off
}

func (h *holds) shard(k *fasthttp.RequestHeader) *holdShard {
	// Fibonacci hashing of the address; RequestCtx values are kilobytes
	// apart, so the high bits of the product spread them.
	return &h.shards[(uint64(uintptr(unsafe.Pointer(k)))*0x9E3779B97F4A7C15)>>60]
}

func (h *holds) put(k *fasthttp.RequestHeader, v hold) {
	sh := h.shard(k)
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = map[*fasthttp.RequestHeader]hold{}
	}
	sh.m[k] = v
	sh.mu.Unlock()
}

func (h *holds) take(k *fasthttp.RequestHeader) hold {
	sh := h.shard(k)
	sh.mu.Lock()
	v, ok := sh.m[k]
	if ok {
		delete(sh.m, k)
	}
	sh.mu.Unlock()
	return v
}

// charge returns the budget bytes a request with these headers holds
// while its body is read and decoded: its Content-Length, or
// limits.max_body_bytes for a chunked body, whose length is known only at
// its end; 0 when it has no body or fasthttp refuses it as too large
// before reading it.
func (s *Server) charge(h *fasthttp.RequestHeader) int64 {
	n := h.ContentLength()
	switch {
	case n == -1:
		return int64(int(s.cfg.Limits.MaxBodyBytes))
	case n <= 0 || n > int(s.cfg.Limits.MaxBodyBytes):
		return 0
	}
	return int64(n)
}

// headerReceived is the fasthttp.Server.HeaderReceived hook: it takes the
// request's charge from the budget before fasthttp reads the body, or,
// when the budget has no room, makes fasthttp refuse the body unread
// (a MaxRequestBodySize below its Content-Length gives ErrBodyTooLarge
// before any of it is read, and the ErrorHandler answers 503 and closes
// the connection, so nothing of the body is left to desynchronise it).
// A request with Expect: 100-continue is left to expect.
//
// With API keys on, a request whose key is missing or not valid is
// refused the same way, before its body is read or charged: a caller
// without a key can neither fill the budget nor make the server read
// bodies it will answer 401 anyway (the ErrorHandler writes the 401).
func (s *Server) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if s.edge.budget.max <= 0 && s.guard.keys == nil {
		return fasthttp.RequestConfig{}
	}
	n := s.charge(h)
	if n == 0 || expectsContinue(h) {
		return fasthttp.RequestConfig{}
	}
	var id *auth.Identity
	if s.guard.keys != nil && !isHealth(uriPath(h.RequestURI())) {
		var err error
		id, err = s.guard.keys.Check(auth.FromHeaders(h.Peek(fasthttp.HeaderAuthorization), h.Peek("X-API-Key")))
		if err != nil {
			return fasthttp.RequestConfig{MaxRequestBodySize: 1}
		}
	}
	if s.edge.budget.max > 0 {
		if !s.edge.budget.acquire(n) {
			return fasthttp.RequestConfig{MaxRequestBodySize: 1}
		}
	} else {
		n = 0
	}
	// The identity travels to Handler, which does not check the key a
	// second time (a SHA-256 per request).
	s.edge.holds.put(h, hold{n: n, id: id})
	return fasthttp.RequestConfig{}
}

// uriPath is the path of a request URI: up to its query or fragment.
func uriPath(uri []byte) []byte {
	if i := bytes.IndexAny(uri, "?#"); i >= 0 {
		return uri[:i]
	}
	return uri
}

// expectsContinue reports whether fasthttp will call ExpectHandler for the
// request (Request.MayContinue: HTTP/1.1 and Expect: 100-continue).
func expectsContinue(h *fasthttp.RequestHeader) bool {
	return h.IsHTTP11() && strings.EqualFold(string(h.Peek(fasthttp.HeaderExpect)), "100-continue")
}

// takeHold removes and returns what headerReceived recorded for the
// request (nothing when it recorded nothing).
func (s *Server) takeHold(ctx *fasthttp.RequestCtx) hold {
	if s.edge.budget.max <= 0 && s.guard.keys == nil {
		return hold{}
	}
	return s.edge.holds.take(&ctx.Request.Header)
}

// release returns n budget bytes and those held on the request's
// connection (an Expect: 100-continue admission), and reports how many.
func (s *Server) release(ctx *fasthttp.RequestCtx, n int64) int64 {
	if s.edge.budget.max <= 0 {
		return 0
	}
	if c, ok := ctx.Conn().(*trackedConn); ok {
		n += c.held.Swap(0)
	}
	s.edge.budget.release(n)
	return n
}

// releaseHeld returns the budget the request holds and reports how much;
// the ErrorHandler calls it when the body could not be read.
func (s *Server) releaseHeld(ctx *fasthttp.RequestCtx) int64 {
	return s.release(ctx, s.takeHold(ctx).n)
}

// admit decides from the headers whether the request may go on: on a
// connection admitted beyond http.max_connections only GET requests
// (health probes, metadata) are served.
func (s *Server) admit(ctx *fasthttp.RequestCtx) error {
	if c, ok := ctx.Conn().(*trackedConn); ok && c.overflow && !isGet(ctx) {
		return &Error{Status: fasthttp.StatusServiceUnavailable, Msg: fmt.Sprintf("server has its maximum of %d connections open (http.max_connections), all busy; retry later", s.cfg.HTTP.MaxConnections)}
	}
	return nil
}

func (s *Server) tooLarge() *Error {
	return &Error{Status: fasthttp.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("request body is larger than the limit of %d bytes (limits.max_body_bytes)", int(s.cfg.Limits.MaxBodyBytes))}
}

// ReserveBytes takes n bytes of the in-flight byte budget
// (limits.inflight_bytes) for a message a front end is about to read,
// as the data plane does for an HTTP body by its Content-Length: the gRPC
// transport, once a message's length prefix has come. The error, when
// they do not fit, is the HTTP 503's (GRPCStatus: Unavailable). A call
// whose bytes were reserved runs with Call.Bytes 0; ReleaseBytes gives
// them back when it ends.
func (s *Server) ReserveBytes(n int64) error {
	if !s.edge.budget.acquire(n) {
		return s.overBudget()
	}
	return nil
}

// ReleaseBytes gives back what ReserveBytes took.
func (s *Server) ReleaseBytes(n int64) { s.edge.budget.release(n) }

func (s *Server) overBudget() *Error {
	return &Error{Status: fasthttp.StatusServiceUnavailable, Msg: fmt.Sprintf("server is at its budget of %d request body bytes in flight (limits.inflight_bytes); retry later", s.edge.budget.max)}
}

// expect is the fasthttp.Server.ExpectHandler, called for a request with
// Expect: 100-continue before its body is sent: one whose body would be
// refused (too large, or no room in the budget) gets the final answer
// instead of 100 Continue, so the client does not send the body at all;
// fasthttp then closes the connection, since the client may have started
// sending anyway. An admitted request's charge is held on its connection,
// so that it is returned even if the client goes away before the body
// (trackedConn.Close).
//
// fasthttp's documentation says the handler "must not modify the
// response"; it sets the returned status on the response and writes it
// without calling the request handler, so the JSON body and Retry-After
// written here reach the client. TestBudgetAdmission pins that down.
func (s *Server) expect(ctx *fasthttp.RequestCtx) int {
	var e error
	if _, kerr := s.bodyKey(ctx); kerr != nil {
		e = kerr // no body from a caller without a valid key
	} else if ctx.Request.Header.ContentLength() > int(s.cfg.Limits.MaxBodyBytes) {
		e = s.tooLarge()
	} else if n := s.charge(&ctx.Request.Header); n > 0 && s.edge.budget.max > 0 {
		if !s.edge.budget.acquire(n) {
			e = s.overBudget()
		} else if c, ok := ctx.Conn().(*trackedConn); ok {
			c.held.Add(n)
		} else {
			s.edge.holds.put(&ctx.Request.Header, hold{n: n})
		}
	}
	if e == nil {
		return fasthttp.StatusContinue
	}
	status := writeError(ctx, e)
	s.met.observe(nil, protoOther, status, time.Now())
	return status
}

// bodyKey is the API key check of a request refused before its body:
// the identity of its key, or the errUnauthorized (counted) that
// Handler's authenticate would return; nil, nil with keys off or on a
// health path.
func (s *Server) bodyKey(ctx *fasthttp.RequestCtx) (*auth.Identity, error) {
	if s.guard.keys == nil || isHealth(ctx.Path()) {
		return nil, nil
	}
	return s.identify(ctx)
}

// arrival returns when the request's first byte arrived on its
// connection (the StateActive hook), which is when its deadline starts,
// so that a request that waited in the server too long is shed, not run
// late. fasthttp's ctx.Time() is when the handler was called ("RequestHandler
// call time"): after the whole body was read (with StreamRequestBody,
// after up to 8 KiB of it), so a request whose body took long to arrive
// would get its whole timeout again. Outside a tracked connection
// (Server.Listener) it is ctx.Time().
func arrival(ctx *fasthttp.RequestCtx) time.Time {
	if c, ok := ctx.Conn().(*trackedConn); ok && !c.arrived.IsZero() {
		return c.arrived
	}
	return ctx.Time()
}

// closeConn reports whether the response must close its connection: the
// server is draining, or the connection was admitted beyond
// http.max_connections or chosen for eviction.
func (s *Server) closeConn(ctx *fasthttp.RequestCtx) bool {
	if s.draining.Load() {
		return true
	}
	c, ok := ctx.Conn().(*trackedConn)
	return ok && c.closeAfter.Load()
}

// Shutdown stops the data plane hs (built by HTTPServer and serving
// Listener) without losing a request: it stops accepting connections
// (after handing the server those the kernel already accepted);
// marks the server draining, so that readiness answers 503 and every
// response carries Connection: close; closes each keep-alive connection
// only once it has waited DrainIdle for a request; and returns when the
// last connection has closed, which is after the last request in flight
// was answered. If ctx ends first it returns ctx's error and leaves the
// rest open.
//
// The listeners close before responses start to carry Connection: close,
// so that a client told to close gets its new connection refused rather
// than accepted by the kernel into a listener about to close, which
// resets it after the client may have sent a request on it.
//
// fasthttp's own ShutdownWithContext closes idle connections at once, so
// that a request a client sends just then meets a closed connection; it
// runs here only once no connection is left.
func (s *Server) Shutdown(ctx context.Context, hs *fasthttp.Server) error {
	e := s.edgeInit()
	e.conns.closeListeners()
	s.SetDraining()
	select {
	case <-e.conns.drain(e.drainIdle):
	case <-ctx.Done():
		return fmt.Errorf("%d connections still open: %w", e.conns.count(), ctx.Err())
	}
	return hs.ShutdownWithContext(ctx)
}
