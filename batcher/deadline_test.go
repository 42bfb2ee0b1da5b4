package batcher

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/tensor"
)

// remoteBackend is fakeBackend declared backends.Remote, with an optional
// backends.Gate.
type remoteBackend struct {
	*fakeBackend
	admit func() error
}

func (remoteBackend) Remote() {}

func (r remoteBackend) Admit() error {
	if r.admit != nil {
		return r.admit()
	}
	return nil
}

// newHarnessFor is newHarness on a backend of the test's choosing built
// around h.backend.
func newHarnessFor(t *testing.T, cfg Config, concurrency int, gated bool, wrap func(*fakeBackend) backends.Backend) *harness {
	t.Helper()
	h := &harness{t: t, clock: newFakeClock(), backend: newFakeBackend(concurrency, gated), waits: make(chan struct{}, 1000), admits: make(chan struct{}, 1000)}
	h.met = NewMetrics(metrics.NewSet(), "m", "1")
	h.bt = newBatcher(wrap(h.backend), cfg, h.met, h.clock, func() { h.waits <- struct{}{} }, func() { h.admits <- struct{}{} })
	h.settle()
	t.Cleanup(func() {
		close(h.backend.gate)
		if err := h.bt.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return h
}

func remote(f *fakeBackend) backends.Backend { return remoteBackend{fakeBackend: f} }

// answered returns the result on ch if there is one within a short real
// time (the fake clock does not move by itself).
func answered(ch chan result) (result, bool) {
	select {
	case r := <-ch:
		return r, true
	case <-time.After(200 * time.Millisecond):
		return result{}, false
	}
}

// TestHungRemoteBackendAnswersAtDeadline: a remote backend that never
// returns holds neither a lone request nor the members of a batch past
// their own deadlines, each answered ErrExpired when its deadline comes,
// earliest first, while the batch is still running.
func TestHungRemoteBackendAnswersAtDeadline(t *testing.T) {
	h := newHarnessFor(t, Config{Enabled: true, MaxBatchSize: 4}, 1, true, remote)
	lone := h.submit(10*time.Millisecond, 0, 1)
	h.batch() // running, gated: the backend hangs
	h.settle()
	a := h.submit(20*time.Millisecond, 0, 2) // queued behind the hung batch
	b := h.submit(40*time.Millisecond, 0, 3)
	h.settle()

	if _, ok := answered(lone); ok {
		t.Fatal("lone request answered before its deadline")
	}
	h.clock.Advance(10 * time.Millisecond)
	if r, ok := answered(lone); !ok || !errors.Is(r.err, ErrExpired) {
		t.Fatalf("lone request at its deadline = %v, answered %v; want ErrExpired", r.err, ok)
	}
	h.clock.Advance(10 * time.Millisecond)
	if r, ok := answered(a); !ok || !errors.Is(r.err, ErrExpired) {
		t.Fatalf("queued request at its deadline = %v, answered %v; want ErrExpired", r.err, ok)
	}
	if _, ok := answered(b); ok {
		t.Fatal("request with the later deadline answered early")
	}
	h.clock.Advance(20 * time.Millisecond)
	if r, ok := answered(b); !ok || !errors.Is(r.err, ErrExpired) {
		t.Fatalf("last request at its deadline = %v, answered %v; want ErrExpired", r.err, ok)
	}
	h.backend.gate <- struct{}{} // the hung call finally returns: its answer is dropped
}

// TestHungBatchAnswersEachMemberAtItsDeadline: the members of one running
// batch (inputs merged) leave at their own deadlines, not the batch's.
func TestHungBatchAnswersEachMemberAtItsDeadline(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(*fakeBackend) backends.Backend
	}{
		{"in-process", func(f *fakeBackend) backends.Backend { return f }},
		{"remote", remote},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarnessFor(t, Config{Enabled: true, MaxBatchSize: 3}, 1, true, tc.wrap)
			first := h.submit(time.Second, 0, 1)
			h.batch()
			h.settle()
			early := h.submit(30*time.Millisecond, 0, 2)
			late := h.submit(time.Second, 0, 3)
			h.settle()
			h.backend.gate <- struct{}{} // the first batch ends; [2 3] starts and hangs
			wantResult(t, first, 1)
			if b := h.batch(); fmt.Sprint(b) != "[2 3]" {
				t.Fatalf("batch = %v; want [2 3]", b)
			}
			h.clock.Advance(30 * time.Millisecond)
			if r, ok := answered(early); !ok || !errors.Is(r.err, ErrExpired) {
				t.Fatalf("early member = %v, answered %v; want ErrExpired at its deadline", r.err, ok)
			}
			if _, ok := answered(late); ok {
				t.Fatal("late member answered before the batch ended")
			}
			h.backend.gate <- struct{}{}
			wantResult(t, late, 3)
		})
	}
}

// TestAbandonedInputsAreNotRead: once Submit has returned, the batcher
// does not read the request's tensors (the proxy reuses them at once):
// the race detector sees the writes below against any later read.
func TestAbandonedInputsAreNotRead(t *testing.T) {
	h := newHarnessFor(t, Config{Enabled: true, MaxBatchSize: 4}, 1, true, remote)
	first := h.submit(time.Second, 0, 1)
	h.batch()
	h.settle()
	x := tensor.FromFloat32s("x", []int64{1, 1}, []float32{5})
	ch := make(chan result, 1)
	go func() {
		out, err := h.bt.Submit(Request{Inputs: []*tensor.Tensor{x}, Deadline: h.clock.Now().Add(10 * time.Millisecond)})
		ch <- result{out, err}
	}()
	<-h.admits
	h.settle()
	h.clock.Advance(10 * time.Millisecond)
	if r, ok := answered(ch); !ok || !errors.Is(r.err, ErrExpired) {
		t.Fatalf("Submit = %v, answered %v; want ErrExpired", r.err, ok)
	}
	x.Float32s()[0] = -1 // the caller owns x again
	h.backend.gate <- struct{}{}
	wantResult(t, first, 1)
	h.settle()
	select {
	case b := <-h.backend.seen:
		t.Fatalf("the abandoned request ran: batch %v", b)
	default:
	}
}

// TestBadInputFailsOnlyItsRequest: a batch refused with
// backends.ErrInvalidInput is split until the bad request runs alone; it
// gets the backend's error and its neighbours their outputs.
func TestBadInputFailsOnlyItsRequest(t *testing.T) {
	h := newHarnessFor(t, Config{Enabled: true, MaxBatchSize: 16}, 1, true, remote)
	var calls atomic.Int64
	h.backend.fail = func(x []float32) error {
		calls.Add(1)
		for _, v := range x {
			if v < 0 {
				return fmt.Errorf("upstream: row %v: %w", v, backends.ErrInvalidInput)
			}
		}
		return nil
	}
	first := h.submit(time.Second, 0, 100)
	h.batch()
	h.settle()
	var chs []chan result
	for i := range 16 {
		x := float32(i + 1)
		if i == 11 {
			x = -12
		}
		chs = append(chs, h.submit(time.Second, 0, x))
		h.settle()
	}
	for range 10 { // let every call through
		h.backend.gate <- struct{}{}
	}
	wantResult(t, first, 100)
	for i, ch := range chs {
		if i == 11 {
			wantErr(t, ch, backends.ErrInvalidInput)
			continue
		}
		wantResult(t, ch, float32(i+1))
	}
	// 1 + the batch of 16 + 2 halves + 2 quarters + 2 eighths + 2 pairs.
	if n := calls.Load(); n != 10 {
		t.Errorf("backend calls = %d; want 10 (bisection, not one call per request)", n)
	}
}

// TestGateRefusesBeforeQueueing: a backend's Gate error is returned at
// once and nothing is queued or run.
func TestGateRefusesBeforeQueueing(t *testing.T) {
	errOpen := fmt.Errorf("all open: %w", backends.ErrUnavailable)
	h := newHarnessFor(t, Config{Enabled: true, MaxBatchSize: 4}, 1, false, func(f *fakeBackend) backends.Backend {
		return remoteBackend{fakeBackend: f, admit: func() error { return errOpen }}
	})
	ch := h.submit(time.Second, 0, 1)
	wantErr(t, ch, backends.ErrUnavailable)
	h.noBatch()
	h.bt.mu.Lock()
	defer h.bt.mu.Unlock()
	if h.bt.requests != 0 {
		t.Errorf("queued requests = %d; want 0", h.bt.requests)
	}
}

// TestRemoteRunsOffTheSubmitter: a lone request to a remote backend is
// answered normally (through its own goroutine) and Close waits for it.
func TestRemoteRunsOffTheSubmitter(t *testing.T) {
	h := newHarnessFor(t, Config{Enabled: true, MaxBatchSize: 4}, 2, false, remote)
	for i := range 5 {
		wantResult(t, h.submit(time.Second, 0, float32(i)), float32(i))
	}
}
