package proxy

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/valyala/fasthttp"
)

// Request ids, W3C trace context and the access log.
//
// Every data-plane answer carries an X-Request-Id: the client's, when it
// sent a valid one, else one Coalesce made up. The id lives in the request's
// own header (requestID stores a generated one there), so that whatever
// reads the request later, such as a call to an upstream model server or
// the access log, sees the same id the client gets back. A W3C traceparent
// is passed through unchanged when valid (traceParent) and dropped when
// not: Coalesce takes no part in the trace, it only must not break it.

const (
	headerRequestID   = "X-Request-Id"
	headerTraceParent = "traceparent" // W3C Trace Context §3.2
	headerTraceState  = "tracestate"  // W3C Trace Context §3.3

	// maxRequestIDLen bounds an accepted X-Request-Id: ids are echoed
	// and logged, so a client must not make them large.
	maxRequestIDLen = 128
)

// validRequestID reports whether id may be echoed and logged as it is:
// 1 to maxRequestIDLen characters of letters, digits and "-_.:+/=@"
// (UUIDs, base64 and the ids of common proxies); anything else, such as
// quotes, spaces or control characters, could break a log line or a
// header.
func validRequestID(id []byte) bool {
	if len(id) == 0 || len(id) > maxRequestIDLen {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '_', c == '.', c == ':', c == '+', c == '/', c == '=', c == '@':
		default:
			return false
		}
	}
	return true
}

// requestID returns the request's id: its X-Request-Id when valid, else a
// new random one (32 lower-case hex digits), which it stores as the
// request's X-Request-Id so that later calls return the same id. The
// returned slice is valid until the handler returns.
func requestID(ctx *fasthttp.RequestCtx) []byte {
	h := &ctx.Request.Header
	if id := h.Peek(headerRequestID); validRequestID(id) {
		return id
	}
	var b [32]byte
	putHex(b[:16], rand.Uint64())
	putHex(b[16:], rand.Uint64())
	h.SetBytesV(headerRequestID, b[:])
	return h.Peek(headerRequestID)
}

func putHex(dst []byte, v uint64) {
	const digits = "0123456789abcdef"
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = digits[v&0xf]
		v >>= 4
	}
}

// traceParent returns the request's W3C traceparent header when it is
// valid, for an upstream call to pass on with tracestate. An invalid one
// is deleted from the request together with tracestate, as Trace Context
// §3.2 and §3.3 ask of a vendor that cannot parse it, and traceParent
// returns nil. The returned slice is valid until the handler returns.
func traceParent(ctx *fasthttp.RequestCtx) []byte {
	h := &ctx.Request.Header
	tp := h.Peek(headerTraceParent)
	if tp == nil {
		return nil
	}
	if !validTraceParent(tp) {
		h.Del(headerTraceParent)
		h.Del(headerTraceState)
		return nil
	}
	return tp
}

// validTraceParent checks the traceparent format of W3C Trace Context
// §3.2.2: version "-" trace-id "-" parent-id "-" trace-flags in lower-case
// hex (2, 32, 16 and 2 digits), version ff forbidden, all-zero ids
// forbidden; version 00 has exactly these 55 characters, a later version
// may append "-" and more (§3.2.4).
func validTraceParent(tp []byte) bool {
	if len(tp) < 55 || (len(tp) > 55 && (tp[0] == '0' && tp[1] == '0' || tp[55] != '-')) {
		return false
	}
	if tp[2] != '-' || tp[35] != '-' || tp[52] != '-' {
		return false
	}
	if !lowerHex(tp[0:2]) || !lowerHex(tp[3:35]) || !lowerHex(tp[36:52]) || !lowerHex(tp[53:55]) {
		return false
	}
	return string(tp[0:2]) != "ff" && !allZero(tp[3:35]) && !allZero(tp[36:52])
}

func lowerHex(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != '0' {
			return false
		}
	}
	return true
}

// finishRequest runs when Handler has answered: it echoes the request id
// on the response (after writeError, whose reset would drop it) and, for
// a sampled share log.access_sample of requests, writes the access log
// line. e is the model version the request was routed to, nil if none.
// With the access log off it costs one header write and no allocation.
func (s *Server) finishRequest(ctx *fasthttp.RequestCtx, start time.Time, proto string, e *entry) {
	id := requestID(ctx)
	ctx.Response.Header.SetBytesV(headerRequestID, id)
	if p := s.cfg.Log.AccessSample; p > 0 && (p >= 1 || rand.Float64() < p) {
		s.logAccess(ctx, id, start, proto, e)
	}
}

// logAccess writes one "access" record: request id, trace id, method,
// path, protocol, model, version, status, latency and body sizes. Never
// the bodies: they are the client's data.
func (s *Server) logAccess(ctx *fasthttp.RequestCtx, id []byte, start time.Time, proto string, e *entry) {
	attrs := make([]slog.Attr, 0, 11)
	attrs = append(attrs,
		slog.String("request_id", string(id)),
		slog.String("method", string(ctx.Method())),
		slog.String("path", truncateBytes(ctx.Path())),
		slog.String("protocol", proto),
	)
	if tp := traceParent(ctx); tp != nil {
		attrs = append(attrs, slog.String("trace_id", string(tp[3:35])))
	}
	if e != nil {
		attrs = append(attrs, slog.String("model", e.Name), slog.String("version", e.Version))
	}
	attrs = append(attrs,
		slog.Int("status", ctx.Response.StatusCode()),
		slog.Float64("latency_seconds", time.Since(start).Seconds()),
		slog.Int("request_bytes", len(ctx.Request.Body())),
		slog.Int("response_bytes", len(ctx.Response.Body())),
	)
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "access", attrs...)
}
