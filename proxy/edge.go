package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// EdgeConfig configures the data plane's edge: how request bodies are
// admitted and how connections drain on shutdown.
type EdgeConfig struct {
	// InflightBytes bounds the request body bytes being read and decoded
	// at once (limits.inflight_bytes); a request whose Content-Length does
	// not fit is answered 503 before its body is read. 0 means no bound.
	InflightBytes int64
	// DrainIdle is how long, during Shutdown, a keep-alive connection may
	// wait idle for its next request before the server closes it
	// (shutdown.idle_timeout); 0 means DefaultDrainIdle.
	DrainIdle time.Duration
}

// DefaultDrainIdle is EdgeConfig.DrainIdle's default.
const DefaultDrainIdle = time.Second

// edge is a Server's connection table, body budget and drain settings.
type edge struct {
	once      sync.Once
	conns     *connTable
	budget    budget
	drainIdle time.Duration
}

func (s *Server) edgeInit() *edge {
	s.edge.once.Do(func() {
		s.edge.conns = newConnTable(s.cfg.MaxConnections)
		if s.edge.drainIdle <= 0 {
			s.edge.drainIdle = DefaultDrainIdle
		}
	})
	return &s.edge
}

// SetEdge configures the edge. Call it once, before HTTPServer and
// Listener, and not while serving.
func (s *Server) SetEdge(c EdgeConfig) {
	s.edge.budget.max = c.InflightBytes
	s.edge.drainIdle = c.DrainIdle
	s.edgeInit()
}

// edgeServer sets the fasthttp features the edge relies on in hs, the
// data-plane server HTTPServer builds.
func (s *Server) edgeServer(hs *fasthttp.Server) {
	e := s.edgeInit()
	// The handler runs once the headers are in, with the body still on
	// the connection (fasthttp prefetches at most 8 KiB of it:
	// readBodyWithStreaming), so that admit can refuse a body the budget
	// has no room for without reading it. admit reads an admitted body
	// whole, so the codecs' ctx.PostBody() works as before. fasthttp
	// discards up to 256 KiB of a body the handler left unread, so that
	// the next request on the connection parses, and closes the
	// connection (with Connection: close on the response) when more is
	// left (maxUnreadStreamBodySize in fasthttp's server.go).
	hs.StreamRequestBody = true
	// Expect: 100-continue gets our final answer instead of 100 when the
	// body would be refused anyway (RFC 9110 §10.1.1).
	hs.ExpectHandler = s.expect
	hs.ConnState = e.conns.setState
	// Between requests fasthttp returns a keep-alive connection's read
	// and write buffers (4 KiB each) and its RequestCtx to pools, so that
	// an idle connection costs its goroutine and little else; the price
	// is a pool round trip per request (BenchmarkHandlerConn).
	hs.ReduceMemoryUsage = true
	if s.cfg.MaxConnections > 0 {
		// The table keeps connections at MaxConnections by closing idle
		// ones and admits a reserve beyond it when none is idle;
		// fasthttp's limit, which answers 503 to every new connection,
		// is only the hard stop behind both.
		hs.Concurrency = s.cfg.MaxConnections + overflowReserve(s.cfg.MaxConnections)
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

// fits reports whether n bytes would fit now.
func (b *budget) fits(n int64) bool { return b.max <= 0 || b.used.Load()+n <= b.max }

func (b *budget) release(n int64) {
	if b.max > 0 {
		b.used.Add(-n)
	}
}

// admission is what admit took for a request: budget bytes and the
// buffer its body was read into. The zero value took nothing.
type admission struct {
	held  int64
	buf   *bodyBuf
	close bool // the body was left partly read: close the connection
}

// bodyBufs pools body buffers up to maxPooledBody bytes; larger ones are
// left to the GC so that one large request does not pin its memory.
var bodyBufs sync.Pool

const maxPooledBody = 1 << 20

type bodyBuf struct{ b []byte }

func getBodyBuf(n int) *bodyBuf {
	bb, _ := bodyBufs.Get().(*bodyBuf)
	if bb == nil {
		bb = &bodyBuf{}
	}
	if cap(bb.b) < n {
		bb.b = make([]byte, n)
	}
	bb.b = bb.b[:n]
	return bb
}

func putBodyBuf(bb *bodyBuf) {
	if cap(bb.b) <= maxPooledBody {
		bodyBufs.Put(bb)
	}
}

// Steps in which admit charges a body of unknown length (chunked) to the
// budget before reading it.
const (
	firstChunkStep = 4 << 10
	chunkStep      = 64 << 10
)

// admit decides, from the headers alone, whether the request may go on,
// and reads an admitted body. A request on a connection admitted beyond
// http.max_connections is served only if it is a GET (health probes,
// metadata). A body larger than limits.max_body_bytes gets 413 and one
// that does not fit the in-flight byte budget 503, both before it is
// read. Call release with the result when the request has been answered.
func (s *Server) admit(ctx *fasthttp.RequestCtx) (admission, error) {
	var a admission
	if c, ok := ctx.Conn().(*trackedConn); ok && c.overflow && !isGet(ctx) {
		return a, &Error{Status: fasthttp.StatusServiceUnavailable, Msg: fmt.Sprintf("server has its maximum of %d connections open (http.max_connections), all busy; retry later", s.cfg.MaxConnections)}
	}
	if !ctx.Request.IsBodyStream() {
		return a, nil
	}
	r := ctx.RequestBodyStream()
	cl := ctx.Request.Header.ContentLength()
	if cl > s.cfg.Limits.MaxBodyBytes {
		// With StreamRequestBody fasthttp does not enforce
		// MaxRequestBodySize on a known length; it leaves it to the
		// handler (ContinueReadBodyStream).
		return a, s.tooLarge()
	}
	if cl >= 0 {
		if !s.edge.budget.acquire(int64(cl)) {
			return a, s.overBudget()
		}
		a.held = int64(cl)
		if cl == 0 {
			return a, nil
		}
		a.buf = getBodyBuf(cl)
		if n, err := io.ReadFull(r, a.buf.b); err != nil {
			return a, bodyReadError(err, n, cl)
		}
		ctx.Request.SetBodyRaw(a.buf.b)
		return a, nil
	}
	// Chunked: the length is known only at the end, so charge the budget
	// a step at a time before reading into it, doubling from
	// firstChunkStep up to chunkStep: at most twice what was read.
	a.buf = getBodyBuf(0)
	for step := int64(firstChunkStep); ; step = min(2*step, chunkStep) {
		if !s.edge.budget.acquire(step) {
			a.close = true
			return a, s.overBudget()
		}
		a.held += step
		a.buf.b = slices.Grow(a.buf.b, int(step))
		for int64(len(a.buf.b)) < a.held {
			n, err := r.Read(a.buf.b[len(a.buf.b):a.held])
			a.buf.b = a.buf.b[:len(a.buf.b)+n]
			if len(a.buf.b) > s.cfg.Limits.MaxBodyBytes {
				a.close = true
				return a, s.tooLarge()
			}
			if errors.Is(err, io.EOF) {
				ctx.Request.SetBodyRaw(a.buf.b)
				return a, nil
			}
			if err != nil {
				return a, bodyReadError(err, len(a.buf.b), -1)
			}
		}
	}
}

// release returns what admit took. It runs after the handler wrote its
// response.
func (s *Server) release(ctx *fasthttp.RequestCtx, a admission) {
	if a.close {
		// After writeError, which resets the response's headers.
		ctx.SetConnectionClose()
	}
	s.edge.budget.release(a.held)
	if a.buf != nil {
		ctx.Request.SetBodyRaw(nil) // the pool gets the buffer back
		putBodyBuf(a.buf)
	}
}

func (s *Server) tooLarge() *Error {
	return &Error{Status: fasthttp.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("request body is larger than the limit of %d bytes (limits.max_body_bytes)", s.cfg.Limits.MaxBodyBytes)}
}

func (s *Server) overBudget() *Error {
	return &Error{Status: fasthttp.StatusServiceUnavailable, Msg: fmt.Sprintf("server is at its budget of %d request body bytes in flight (limits.inflight_bytes); retry later", s.edge.budget.max)}
}

// bodyReadError maps a failure to read a body of want bytes (-1:
// chunked) after got bytes. fasthttp closes the connection after it: the
// stream is at an unknown point of the body.
func bodyReadError(err error, got, want int) *Error {
	var te interface{ Timeout() bool }
	switch {
	case errors.As(err, &te) && te.Timeout():
		return &Error{Status: fasthttp.StatusRequestTimeout, Msg: fmt.Sprintf("request body was not read in time (http.read_timeout): %d bytes arrived", got)}
	case want >= 0:
		return badRequest("request body ended after %d of its %d bytes (Content-Length): %v", got, want, err)
	}
	return badRequest("malformed chunked request body after %d bytes: %v", got, err)
}

// expect is the fasthttp.Server.ExpectHandler: a request with
// Expect: 100-continue whose body would be refused (too large, or no room
// in the budget) gets the final answer instead of 100 Continue, so the
// client does not send the body at all; fasthttp then closes the
// connection, since the client may have started sending anyway. The
// budget is only checked here; admit takes it once the body comes.
//
// fasthttp's documentation says the handler "must not modify the
// response"; it sets the returned status on the response and writes it
// without calling the request handler, so the JSON body and Retry-After
// written here reach the client. TestExpectContinue pins that down.
func (s *Server) expect(ctx *fasthttp.RequestCtx) int {
	cl := ctx.Request.Header.ContentLength()
	var e *Error
	switch {
	case cl > s.cfg.Limits.MaxBodyBytes:
		e = s.tooLarge()
	case cl > 0 && !s.edge.budget.fits(int64(cl)):
		e = s.overBudget()
	default:
		return fasthttp.StatusContinue
	}
	writeError(ctx, e)
	s.met.observe("", protoOther, e.Status, time.Now())
	return e.Status
}

// arrival returns when the request's first byte arrived on its
// connection, which is when its deadline starts. fasthttp's ctx.Time() is
// when the handler was called: after the body was read, or with
// StreamRequestBody after up to 8 KiB of it, so a slow client would
// spend the request's time budget before the clock starts. Outside a
// tracked connection (Server.Listener) it is ctx.Time().
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
// Listener) without losing a request: it stops accepting connections;
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
		return fmt.Errorf("%d connections still open: %w", e.conns.len(), ctx.Err())
	}
	return hs.ShutdownWithContext(ctx)
}
