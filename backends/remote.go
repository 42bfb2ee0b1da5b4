package backends

import (
	"errors"
	"time"
)

// Errors of backends that call other servers (backends/upstream). The
// proxy maps them to status codes: ErrUnavailable to 503 with Retry-After,
// ErrBadGateway to 502, ErrUpstreamTimeout to 504. A failure of one
// request's own input is ErrInvalidInput (400), whatever server found it.
var (
	// ErrUnavailable: no replica may be called now (every breaker is
	// open or every replica is ejected); nothing was sent.
	ErrUnavailable = errors.New("upstream unavailable")
	// ErrBadGateway: the upstream refused the connection, reset it,
	// answered 5xx, or answered something that is not a valid response.
	ErrBadGateway = errors.New("bad gateway")
	// ErrUpstreamTimeout: the upstream did not answer within the call's
	// deadline (the request's, or the per-try timeout).
	ErrUpstreamTimeout = errors.New("upstream timeout")
)

// RetryAfter is implemented by errors that know when trying again may
// succeed (a breaker's remaining open time); the proxy turns it into the
// Retry-After header of a 503.
type RetryAfter interface {
	RetryAfter() time.Duration
}

// Remote is implemented by backends whose Infer waits on something outside
// the process (a network peer) and so may take any time: the batcher then
// never runs their batches on a submitter's goroutine, so that every
// waiting request can be answered at its own deadline.
type Remote interface {
	Remote()
}

// Gate is implemented by backends that can refuse a request before it is
// queued. The batcher calls Admit on every Submit, before queueing; a
// non-nil error (typically wrapping ErrUnavailable and implementing
// RetryAfter) is returned to the submitter at once. Admit must be cheap
// and safe for concurrent use.
type Gate interface {
	Admit() error
}

// Readier is implemented by backends that can be loaded but not yet able
// to serve (an upstream no replica of which has answered its probe).
// Backends that do not implement it are ready once loaded.
type Readier interface {
	Ready() bool
}

// Ready reports whether b can serve: its Ready method, or true.
func Ready(b Backend) bool {
	if r, ok := b.(Readier); ok {
		return r.Ready()
	}
	return true
}
