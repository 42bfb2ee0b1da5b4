package proxy

import (
	"fmt"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/backends"
)

// openErr is an upstream failure that knows when to retry.
type openErr struct{ wait time.Duration }

func (e openErr) Error() string             { return "every breaker open" }
func (e openErr) Unwrap() error             { return backends.ErrUnavailable }
func (e openErr) RetryAfter() time.Duration { return e.wait }

// TestUpstreamStatuses: the upstream sentinels map to 502, 503 and 504,
// a bad input found by the upstream to 400, and a 503's Retry-After is
// the error's own hint rounded up to whole seconds (at least 1).
func TestUpstreamStatuses(t *testing.T) {
	f := func(err error, status int, retryAfter string) {
		t.Helper()
		wrapped := modelError{err: err, model: "m", version: "1", timeout: time.Second}
		if got := StatusOf(wrapped); got != status {
			t.Errorf("StatusOf(%v) = %d; want %d", err, got, status)
		}
		ctx := new(fasthttp.RequestCtx)
		writeError(ctx, wrapped)
		if got := string(ctx.Response.Header.Peek("Retry-After")); got != retryAfter {
			t.Errorf("Retry-After for %v = %q; want %q", err, got, retryAfter)
		}
	}
	f(fmt.Errorf("refused: %w", backends.ErrBadGateway), 502, "")
	f(fmt.Errorf("no answer: %w", backends.ErrUpstreamTimeout), 504, "")
	f(fmt.Errorf("upstream answered 400: %w", backends.ErrInvalidInput), 400, "")
	f(openErr{wait: 2500 * time.Millisecond}, 503, "3")
	f(openErr{wait: 200 * time.Millisecond}, 503, "1")
	f(fmt.Errorf("open: %w", backends.ErrUnavailable), 503, "1")
}
