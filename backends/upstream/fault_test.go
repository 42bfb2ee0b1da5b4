package upstream

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

func row(x ...float32) []*tensor.Tensor {
	return []*tensor.Tensor{tensor.FromFloat32s("x", []int64{1, int64(len(x))}, x)}
}

func infer(b *Backend, d time.Duration) ([]*tensor.Tensor, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return b.Infer(ctx, row(1, 2, 3, 4))
}

// waitFor polls cond (real time: gobreaker's clock is time.Now) for up
// to 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestFaultsOpenAndCloseTheBreaker: each fault of the upstream fails
// calls with its kind and status class, opens the replica's breaker after
// consecutive_failures, then nothing connects until the open time is
// over, and the next probe (the half-open trial) closes it once the
// replica answers again.
func TestFaultsOpenAndCloseTheBreaker(t *testing.T) {
	tests := []struct {
		name string
		mode int32
		want error
		kind string
	}{
		{"refuse", modeRefuse, backends.ErrBadGateway, kindRefused},
		{"hang", modeHang, backends.ErrUpstreamTimeout, kindTimeout},
		{"slow", modeSlow, backends.ErrUpstreamTimeout, kindTimeout},
		{"garbage", modeGarbage, backends.ErrBadGateway, kindMalformed},
		{"500", mode500, backends.ErrBadGateway, kind5xx},
		{"close mid-body", modeMidBody, backends.ErrBadGateway, kindMalformed},
	}
	ref := reference(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFaulty(t, ref)
			cfg := doubleModel(t, config.ProtoKServeV2, "http://a:1")
			cfg.Client.PerTryTimeout = 100 * time.Millisecond
			b, set := newTestBackend(t, cfg, f.Dial, nil)
			ep := b.eps[0]
			if _, err := infer(b, time.Second); err != nil {
				t.Fatalf("healthy upstream: %v", err)
			}
			f.set(tt.mode)
			ep.hc.CloseIdleConnections() // a server that goes down takes its connections
			for i := range cfg.Breaker.ConsecutiveFailures {
				_, err := infer(b, time.Second)
				var e *Error
				if !errors.Is(err, tt.want) || !errors.As(err, &e) || e.Kind != tt.kind {
					t.Fatalf("call %d under %s = %v; want %v of kind %s", i, tt.name, err, tt.want, tt.kind)
				}
			}
			if s := ep.cb.State(); s != gobreaker.StateOpen {
				t.Fatalf("breaker after %d failures = %v; want open", cfg.Breaker.ConsecutiveFailures, s)
			}
			if got := counter(set, `coalesce_upstream_failures_total{model="double",version="1",endpoint="http://a:1",kind="`+tt.kind+`"}`); got != 3 {
				t.Errorf("failures{kind=%s} = %v; want 3", tt.kind, got)
			}
			err := b.Admit()
			var ra backends.RetryAfter
			if !errors.Is(err, backends.ErrUnavailable) || !errors.As(err, &ra) || ra.RetryAfter() <= 0 || ra.RetryAfter() > cfg.Breaker.OpenTimeout {
				t.Fatalf("Admit with the breaker open = %v; want ErrUnavailable with Retry-After in (0, %v]", err, cfg.Breaker.OpenTimeout)
			}
			dials, calls := f.dials.Load(), f.calls.Load()
			if _, err := infer(b, time.Second); !errors.Is(err, backends.ErrUnavailable) {
				t.Errorf("call with the breaker open = %v; want ErrUnavailable", err)
			}
			b.probe(ep)
			if b.Ready() {
				t.Error("Ready with the only breaker open; want not ready")
			}
			if f.dials.Load() != dials || f.calls.Load() != calls {
				t.Errorf("connection attempts while open: %d dials, %d calls; want none", f.dials.Load()-dials, f.calls.Load()-calls)
			}
			// Still failing after the open time: the probe's trial reopens it.
			time.Sleep(cfg.Breaker.OpenTimeout)
			if tt.mode != modeHang {
				b.probe(ep)
				if s := ep.cb.State(); s != gobreaker.StateOpen {
					t.Fatalf("breaker after a failed half-open probe = %v; want open again", s)
				}
				time.Sleep(cfg.Breaker.OpenTimeout)
			}
			f.set(modeOK)
			if err := b.Admit(); err != nil {
				t.Fatalf("Admit after the open time = %v; want nil", err)
			}
			b.probe(ep)
			if s := ep.cb.State(); s != gobreaker.StateClosed || !b.Ready() {
				t.Fatalf("after a good half-open probe: breaker %v, ready %v; want closed and ready", s, b.Ready())
			}
			if _, err := infer(b, time.Second); err != nil {
				t.Fatalf("recovered upstream: %v", err)
			}
		})
	}
}

// TestBreakerFailureRatio: the breaker also opens on a failure ratio over
// its window, without consecutive failures.
func TestBreakerFailureRatio(t *testing.T) {
	f := newFaulty(t, reference(t))
	cfg := doubleModel(t, config.ProtoKServeV2, "http://a:1")
	cfg.Breaker.ConsecutiveFailures = 100
	cfg.Breaker.FailureRatio, cfg.Breaker.MinRequests = 0.5, 10
	b, _ := newTestBackend(t, cfg, f.Dial, nil)
	for i := range 10 { // alternate: never two failures in a row
		f.set(map[bool]int32{true: mode500, false: modeOK}[i%2 == 1])
		infer(b, time.Second) //nolint:errcheck // the outcome feeds the breaker
	}
	if s := b.eps[0].cb.State(); s != gobreaker.StateOpen {
		t.Errorf("breaker after 5 failures in 10 calls (ratio 0.5) = %v; want open", s)
	}
}

// TestOwnDeadlineIsNotAFailure: calls cut by the request's own deadline
// (shorter than the per-try timeout) do not open the breaker.
func TestOwnDeadlineIsNotAFailure(t *testing.T) {
	f := newFaulty(t, reference(t))
	cfg := doubleModel(t, config.ProtoKServeV2, "http://a:1")
	b, _ := newTestBackend(t, cfg, f.Dial, nil)
	f.set(modeHang)
	for range 5 {
		if _, err := infer(b, 20*time.Millisecond); !errors.Is(err, backends.ErrUpstreamTimeout) {
			t.Fatalf("hung call = %v; want ErrUpstreamTimeout", err)
		}
	}
	if s := b.eps[0].cb.State(); s != gobreaker.StateClosed {
		t.Errorf("breaker after 5 expiries of our own deadline = %v; want closed", s)
	}
	if c := b.eps[0].cb.Counts(); c.TotalExclusions != 5 {
		t.Errorf("breaker exclusions = %d; want 5", c.TotalExclusions)
	}
}
