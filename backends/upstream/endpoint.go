package upstream

import (
	"errors"
	"net"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/config"
)

// endpoint is one replica: its pooled client, its circuit breaker, its
// load and its outlier state.
type endpoint struct {
	idx  int
	url  string // as configured: the endpoint label
	addr string // host:port
	// inferURI is the absolute URI of the protocol's infer call.
	inferURI string
	hc       *fasthttp.HostClient
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]
	met      *endpointMetrics

	// openUntil is when the breaker's open state ends (Unix ns; 0: not
	// open), set by OnStateChange: gobreaker does not expose it, and
	// the admission check reads it without the breaker's lock.
	openUntil   atomic.Int64
	outstanding atomic.Int64 // calls in flight
	healthy     atomic.Bool  // the last probe (or call) reached a serving replica

	// Outlier state, guarded by Backend.mu.
	consecutive  int       // 5xx answers or timeouts in a row
	ejections    int       // times ejected so far
	ejectedUntil time.Time // zero: serving
}

// errExcluded marks a call outcome the breaker must not count: our own
// deadline expired, or no pooled connection was free (local saturation).
var errExcluded = errors.New("upstream: outcome excluded from the breaker")

// errFailed is what a failed call reports to its breaker.
var errFailed = errors.New("upstream: failed call")

func newEndpoint(idx int, raw string, pol *config.Upstream, dial fasthttp.DialFunc, met *endpointMetrics) (*endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	ep := &endpoint{idx: idx, url: raw, addr: addr, met: met}
	if dial == nil {
		timeout := pol.Client.ConnectTimeout
		dial = func(addr string) (net.Conn, error) { return fasthttp.DialTimeout(addr, timeout) }
	}
	ep.hc = &fasthttp.HostClient{
		Addr:                addr,
		Name:                "coalesce",
		MaxConns:            pol.Client.MaxConns,
		MaxIdleConnDuration: pol.Client.MaxIdleConnDuration,
		MaxResponseBodySize: pol.Client.MaxResponseBytes,
		ConnPoolStrategy:    fasthttp.LIFO,
		// Retries are ours (retry budget, another replica): fasthttp
		// must not resend a POST on its own.
		RetryIfErr: func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		Dial: func(a string) (net.Conn, error) {
			met.connects.Inc()
			c, err := dial(a)
			if err != nil {
				return nil, &dialError{err}
			}
			return c, nil
		},
	}
	b := pol.Breaker
	ep.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        raw,
		MaxRequests: uint32(b.HalfOpenProbes),
		Interval:    b.Interval,
		// A rolling window of ten buckets, so that the failure ratio
		// forgets old calls gradually instead of all at once.
		BucketPeriod: b.Interval / 10,
		Timeout:      b.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if int(c.ConsecutiveFailures) >= b.ConsecutiveFailures {
				return true
			}
			return b.FailureRatio > 0 && int(c.Requests-c.TotalExclusions) >= b.MinRequests &&
				float64(c.TotalFailures) >= b.FailureRatio*float64(c.Requests-c.TotalExclusions)
		},
		// Runs under the breaker's lock: only atomics here (calling
		// the breaker would deadlock).
		OnStateChange: func(_ string, _, to gobreaker.State) {
			switch to {
			case gobreaker.StateOpen:
				ep.openUntil.Store(time.Now().Add(b.OpenTimeout).UnixNano())
				met.breaker.Set(2)
			case gobreaker.StateHalfOpen:
				ep.openUntil.Store(0)
				met.breaker.Set(1)
			default:
				ep.openUntil.Store(0)
				met.breaker.Set(0)
			}
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errExcluded) },
	})
	return ep, nil
}

// dialError marks a failed connect (refused, unreachable, connect
// timeout): nothing was sent, so the call may go to another replica.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// open reports whether the breaker is open at now (nanoseconds) and for
// how much longer.
func (ep *endpoint) open(now int64) (bool, time.Duration) {
	until := ep.openUntil.Load()
	if until == 0 || now >= until {
		return false, 0
	}
	return true, time.Duration(until - now)
}
