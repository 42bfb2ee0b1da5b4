package proxy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc/codes"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/batcher"
	"github.com/coalesce-ml/coalesce/codec"
	"github.com/coalesce-ml/coalesce/ratelimit"
)

// Error is a request failure of the HTTP layer (routing, methods) with the
// status it maps to. Everything else is mapped by StatusOf from its kind.
type Error struct {
	Status int
	Msg    string
	allow  string // for 405: the Allow header, which RFC 9110 §15.5.6 requires
}

func (e *Error) Error() string { return e.Msg }

// badRequest returns a 400 error; the message names the field and what was
// expected.
func badRequest(format string, args ...any) *Error {
	return &Error{Status: fasthttp.StatusBadRequest, Msg: fmt.Sprintf(format, args...)}
}

// errPanic marks a recovered panic (500).
var errPanic = errors.New("internal error")

// errInflight: more POST requests in flight than http.max_inflight (503).
type errInflight struct{ max int64 }

func (e errInflight) Error() string {
	return "server is overloaded: " + strconv.FormatInt(e.max, 10) + " requests in flight (http.max_inflight); retry later"
}

// errUnauthorized: no API key, or one not in the key file (401). The
// message never repeats what the client sent.
type errUnauthorized struct{ invalid bool }

func (e errUnauthorized) Error() string {
	if e.invalid {
		return "API key is not valid; send a valid key as Authorization: Bearer <key> or X-API-Key: <key>"
	}
	return "API key required; send it as Authorization: Bearer <key> or X-API-Key: <key>"
}

// errForbidden: a valid key calling a model (or the admin plane, model
// "") it may not (403). key is the key's name from the key file.
type errForbidden struct{ key, model string }

func (e errForbidden) Error() string {
	if e.model == "" {
		return fmt.Sprintf("API key %q may not call the admin plane; want a key with admin: true", e.key)
	}
	return fmt.Sprintf("API key %q may not call model %q", e.key, e.model)
}

// errLimited: a rate limit's bucket is empty (429).
type errLimited struct {
	d     ratelimit.Decision
	model string
}

func (e errLimited) Error() string {
	what := "the server's"
	switch e.d.Scope {
	case ratelimit.ScopeKey:
		what = "this API key's"
	case ratelimit.ScopeClient:
		what = "this client address's"
	case ratelimit.ScopeModel:
		what = "model " + strconv.Quote(e.model) + "'s"
	}
	return "rate limit exceeded: " + what + " limit of " + strconv.Itoa(e.d.Limit) + " requests at once is used up; retry after " + strconv.Itoa(retrySeconds(e.d.RetryAfter)) + "s"
}

// notFound is an unknown model or version (404); it quotes the names
// truncated.
type notFound struct {
	err           error // backends.ErrModelNotFound or ErrVersionNotFound
	name, version string
}

func (e notFound) Error() string {
	if errors.Is(e.err, backends.ErrVersionNotFound) {
		return fmt.Sprintf("model %q version %q: %v", e.name, e.version, e.err)
	}
	return fmt.Sprintf("model %q: %v", e.name, e.err)
}

func (e notFound) Unwrap() error { return e.err }

// modelError is a failure of a model call, with the message the client
// sees; its status follows from the wrapped error (the batcher's
// sentinels, a deadline, or a backend failure).
type modelError struct {
	err            error
	model, version string
	timeout        time.Duration // the request's deadline from arrival
}

func (e modelError) Unwrap() error { return e.err }

func (e modelError) Error() string {
	switch {
	case errors.Is(e.err, batcher.ErrExpired), errors.Is(e.err, context.DeadlineExceeded):
		return fmt.Sprintf("model %s did not answer within the request deadline (%v)", e.model, e.timeout)
	case errors.Is(e.err, batcher.ErrQueueFull):
		return fmt.Sprintf("model %s is overloaded: its queue is full; retry later", e.model)
	case errors.Is(e.err, batcher.ErrOverloaded):
		return fmt.Sprintf("model %s cannot answer within the request deadline (%v) at its current load; retry later", e.model, e.timeout)
	case errors.Is(e.err, batcher.ErrClosed):
		return "server is shutting down; retry on another instance"
	}
	return fmt.Sprintf("model %s version %s: %v", e.model, e.version, e.err)
}

// httpError turns an error of fasthttp's request parsing into an error
// for writeError. maxBody is limits.max_body_bytes.
func httpError(err error, maxBody int) error {
	var se *fasthttp.ErrSmallBuffer
	var te interface{ Timeout() bool }
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return &Error{Status: fasthttp.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("request body is larger than the limit of %d bytes (limits.max_body_bytes)", maxBody)}
	case errors.As(err, &se):
		return &Error{Status: fasthttp.StatusRequestHeaderFieldsTooLarge, Msg: "request headers are too large"}
	case errors.As(err, &te) && te.Timeout():
		return &Error{Status: fasthttp.StatusRequestTimeout, Msg: "request was not read in time"}
	}
	return badRequest("malformed HTTP request: %s", truncate(err.Error()))
}

// StatusOf maps an error to its HTTP status code. It is the one place
// where error kinds become status codes.
func StatusOf(err error) int {
	var pe *Error
	var ce *codec.Error
	switch {
	case errors.As(err, &pe):
		return pe.Status
	case errors.As(err, &ce):
		if ce.Kind == codec.TooLarge {
			return fasthttp.StatusRequestEntityTooLarge
		}
		return fasthttp.StatusBadRequest
	case errors.As(err, new(errInflight)):
		return fasthttp.StatusServiceUnavailable
	case errors.As(err, new(errUnauthorized)):
		return fasthttp.StatusUnauthorized
	case errors.As(err, new(errForbidden)):
		return fasthttp.StatusForbidden
	case errors.As(err, new(errLimited)):
		return fasthttp.StatusTooManyRequests
	case errors.Is(err, backends.ErrModelNotFound), errors.Is(err, backends.ErrVersionNotFound):
		return fasthttp.StatusNotFound
	case errors.Is(err, backends.ErrInvalidInput):
		return fasthttp.StatusBadRequest
	case errors.Is(err, backends.ErrUnavailable):
		return fasthttp.StatusServiceUnavailable
	case errors.Is(err, backends.ErrBadGateway):
		return fasthttp.StatusBadGateway
	case errors.Is(err, backends.ErrUpstreamTimeout):
		return fasthttp.StatusGatewayTimeout
	case errors.Is(err, batcher.ErrExpired), errors.Is(err, context.DeadlineExceeded):
		return fasthttp.StatusGatewayTimeout
	case errors.Is(err, batcher.ErrQueueFull), errors.Is(err, batcher.ErrOverloaded), errors.Is(err, batcher.ErrClosed):
		return fasthttp.StatusServiceUnavailable
	}
	return fasthttp.StatusInternalServerError
}

// CodeOf maps an error to its gRPC status code: the kinds of StatusOf,
// as Triton's gRPC front end maps them (InvalidArgument, NotFound,
// Unavailable, DeadlineExceeded, ...), except that shedding (a full queue,
// a deadline the model cannot meet, http.max_inflight) and rate limits are
// ResourceExhausted, the code gRPC clients back off on with RetryInfo,
// while draining, a closed batcher and an open breaker stay Unavailable.
func CodeOf(err error) codes.Code {
	switch {
	case errors.Is(err, batcher.ErrQueueFull), errors.Is(err, batcher.ErrOverloaded), errors.As(err, new(errInflight)):
		return codes.ResourceExhausted
	}
	switch StatusOf(err) {
	case fasthttp.StatusOK:
		return codes.OK
	case fasthttp.StatusBadRequest:
		return codes.InvalidArgument
	case fasthttp.StatusUnauthorized:
		return codes.Unauthenticated
	case fasthttp.StatusForbidden:
		return codes.PermissionDenied
	case fasthttp.StatusNotFound:
		return codes.NotFound
	case fasthttp.StatusMethodNotAllowed:
		return codes.Unimplemented
	case fasthttp.StatusRequestEntityTooLarge, fasthttp.StatusTooManyRequests:
		return codes.ResourceExhausted
	case fasthttp.StatusBadGateway, fasthttp.StatusServiceUnavailable:
		return codes.Unavailable
	case fasthttp.StatusRequestTimeout, fasthttp.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	}
	return codes.Internal
}

// writeError answers with {"error": msg} and the status err maps to.
// Internal errors keep their message: it is ours, not the client's data.
// It is the only writer of an error status.
func writeError(ctx *fasthttp.RequestCtx, err error) int {
	status := StatusOf(err)
	ctx.Response.Reset()
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	// The reset above drops headers set before the error, so Allow
	// travels in the error.
	var pe *Error
	if errors.As(err, &pe) && pe.allow != "" {
		ctx.Response.Header.Set("Allow", pe.allow)
	}
	switch status {
	case fasthttp.StatusServiceUnavailable:
		ctx.Response.Header.Set("Retry-After", retryAfter(err))
	case fasthttp.StatusUnauthorized:
		// RFC 9110 §11.6.1 requires the challenge; RFC 6750 §3 its
		// Bearer form, with error="invalid_token" for a key that was
		// sent but is not valid.
		var ue errUnauthorized
		if errors.As(err, &ue) && ue.invalid {
			ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="coalesce", error="invalid_token"`)
		} else {
			ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="coalesce"`)
		}
	case fasthttp.StatusTooManyRequests:
		var le errLimited
		if errors.As(err, &le) {
			// RFC 6585 §4 and RFC 9110 §10.2.3; the RateLimit-* fields
			// of draft-ietf-httpapi-ratelimit-headers (-07): the
			// refusing bucket's size, what is left of it, and seconds
			// until it holds a token again.
			secs := strconv.Itoa(retrySeconds(le.d.RetryAfter))
			ctx.Response.Header.Set("Retry-After", secs)
			ctx.Response.Header.Set("RateLimit-Limit", strconv.Itoa(le.d.Limit))
			ctx.Response.Header.Set("RateLimit-Remaining", strconv.Itoa(le.d.Remaining))
			ctx.Response.Header.Set("RateLimit-Reset", secs)
		}
	}
	msg := err.Error()
	b := make([]byte, 0, len(msg)+16)
	b = append(b, `{"error":`...)
	b = codec.AppendString(b, msg)
	b = append(b, '}')
	ctx.SetBody(b)
	return status
}

// retryAfter returns the Retry-After value (whole seconds, RFC 9110
// §10.2.3) of a 503: the error's own hint (a breaker's remaining open
// time), rounded up, or 1.
func retryAfter(err error) string {
	var ra backends.RetryAfter
	if errors.As(err, &ra) {
		if d := ra.RetryAfter(); d > time.Second {
			return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
		}
	}
	return "1"
}

// truncate and truncateBytes bound what an error repeats of the request.
func truncate(s string) string      { return codec.Truncate(s) }
func truncateBytes(b []byte) string { return codec.TruncateBytes(b) }
