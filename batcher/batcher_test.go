package batcher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/goleak"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/tensor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock is a manual clock: time moves only with Advance.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c      chan time.Time
	clock  *fakeClock
	at     time.Time
	active bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: make(chan time.Time, 1), clock: c, at: c.now.Add(d), active: true}
	c.timers = append(c.timers, t)
	return t
}

// Advance moves time forward and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		if t.active && !t.at.After(c.now) {
			t.active = false
			select {
			case t.c <- c.now:
			default:
			}
		}
	}
	c.mu.Unlock()
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }
func (t *fakeTimer) Reset(d time.Duration) bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	was := t.active
	t.at, t.active = t.clock.now.Add(d), true
	select { // a fired but unread tick is stale after Reset
	case <-t.c:
	default:
	}
	if d <= 0 {
		t.active = false
		t.c <- t.clock.now
	}
	return was
}
func (t *fakeTimer) Stop() bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	was := t.active
	t.active = false
	select {
	case <-t.c:
	default:
	}
	return was
}

// fakeBackend doubles its input x [rows, 1] into y. With gated set, each
// batch waits for a token on gate. Every batch's x values are sent to
// seen (buffered).
type fakeBackend struct {
	meta  backends.Metadata
	gated bool
	gate  chan struct{}
	seen  chan []float32
	fail  func(x []float32) error
}

func newFakeBackend(concurrency int, gated bool) *fakeBackend {
	return &fakeBackend{
		meta: backends.Metadata{
			Inputs:      []backends.TensorSpec{{Name: "x", DType: tensor.FP32, Shape: []int64{-1, -1}}},
			Outputs:     []backends.TensorSpec{{Name: "y", DType: tensor.FP32, Shape: []int64{-1, -1}}},
			Concurrency: concurrency,
		},
		gated: gated, gate: make(chan struct{}, 100), seen: make(chan []float32, 1000),
	}
}

func (f *fakeBackend) Metadata() *backends.Metadata { return &f.meta }
func (f *fakeBackend) Close() error                 { return nil }
func (f *fakeBackend) Infer(_ context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x := in[0].Float32s()
	f.seen <- append([]float32(nil), x...)
	if f.gated {
		<-f.gate
	}
	if f.fail != nil {
		if err := f.fail(x); err != nil {
			return nil, err
		}
	}
	y := tensor.New("y", tensor.FP32, in[0].Shape)
	for i, v := range x {
		y.Float32s()[i] = 2 * v
	}
	return []*tensor.Tensor{y}, nil
}

// harness runs a batcher on a fake clock and a fake backend, and knows
// when the scheduler is idle.
type harness struct {
	t       *testing.T
	clock   *fakeClock
	backend *fakeBackend
	bt      *Batcher
	met     *Metrics
	waits   chan struct{}
	admits  chan struct{}
}

func newHarness(t *testing.T, cfg Config, concurrency int, gated bool) *harness {
	t.Helper()
	h := &harness{t: t, clock: newFakeClock(), backend: newFakeBackend(concurrency, gated), waits: make(chan struct{}, 1000), admits: make(chan struct{}, 1000)}
	h.met = NewMetrics(metrics.NewSet(), "m", "1")
	h.bt = newBatcher(h.backend, cfg, h.met, h.clock, func() { h.waits <- struct{}{} }, func() { h.admits <- struct{}{} })
	h.settle()
	t.Cleanup(func() {
		close(h.backend.gate) // release anything still gated
		if err := h.bt.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return h
}

// settle waits until the scheduler has blocked with nothing left to do
// (a request run on the submitter's fast path never wakes it).
func (h *harness) settle() {
	h.t.Helper()
	select {
	case <-h.waits:
	case <-time.After(100 * time.Millisecond):
	}
	for { // absorb further passes caused by the same event
		select {
		case <-h.waits:
		case <-time.After(20 * time.Millisecond):
			return
		}
	}
}

// submit sends a request of the given x values (one per row) in the
// background and returns a channel with its result.
func (h *harness) submit(deadline time.Duration, priority int, xs ...float32) chan result {
	req := Request{Inputs: []*tensor.Tensor{tensor.FromFloat32s("x", []int64{int64(len(xs)), 1}, xs)},
		Deadline: h.clock.Now().Add(deadline), Priority: priority}
	ch := make(chan result, 1)
	go func() {
		out, err := h.bt.Submit(req)
		ch <- result{out, err}
	}()
	select { // admitted (queued or running) or refused, before the next step
	case <-h.admits:
	case <-time.After(5 * time.Second):
		h.t.Fatal("Submit was not admitted")
	}
	return ch
}

// batch returns the next batch the backend saw.
func (h *harness) batch() []float32 {
	h.t.Helper()
	select {
	case b := <-h.backend.seen:
		return b
	case <-time.After(5 * time.Second):
		h.t.Fatal("no batch reached the backend")
		return nil
	}
}

// noBatch checks that the backend has not received a batch.
func (h *harness) noBatch() {
	h.t.Helper()
	select {
	case b := <-h.backend.seen:
		h.t.Fatalf("unexpected batch %v", b)
	default:
	}
}

func (h *harness) released(reason string) uint64 { return h.met.released[reason].Get() }

// teach gives the cost model t(n) = 1ms + 0.1ms·n and an arrival rate of
// 100k rows/s, as if it had seen traffic.
func (h *harness) teach() {
	h.bt.mu.Lock()
	for _, n := range []int{1, 2, 4, 8, 1, 2, 4, 8} {
		h.bt.cost.observe(n, time.Millisecond+time.Duration(n)*100*time.Microsecond)
	}
	h.bt.arrivals.last = h.clock.Now()
	h.bt.arrivals.gap = 1e-5
	h.bt.mu.Unlock()
}

func wantResult(t *testing.T, ch chan result, xs ...float32) {
	t.Helper()
	var r result
	select {
	case r = <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no answer")
	}
	if r.err != nil {
		t.Fatalf("Submit(%v) error %v", xs, r.err)
	}
	got := r.out[0].Float32s()
	if len(got) != len(xs) {
		t.Fatalf("Submit(%v) = %v; want %d rows", xs, got, len(xs))
	}
	for i, x := range xs {
		if got[i] != 2*x {
			t.Errorf("Submit(%v) = %v; want each value doubled", xs, got)
		}
	}
}

func wantErr(t *testing.T, ch chan result, want error) {
	t.Helper()
	select {
	case r := <-ch:
		if !errors.Is(r.err, want) {
			t.Fatalf("Submit() error = %v; want %v", r.err, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer")
	}
}

func TestLoneRequestDispatchedAtOnce(t *testing.T) {
	h := newHarness(t, Config{Enabled: true, MaxBatchSize: 8, MaxQueueDelay: 50 * time.Millisecond}, 1, false)
	ch := h.submit(time.Second, 0, 7)
	if b := h.batch(); len(b) != 1 || b[0] != 7 {
		t.Fatalf("batch = %v; want [7] without the clock moving", b)
	}
	wantResult(t, ch, 7)
	// With a learnt cost model but low traffic (one request a second),
	// waiting still cannot pay.
	h.settle()
	h.teach()
	h.clock.Advance(time.Second)
	ch = h.submit(time.Second, 0, 8)
	if b := h.batch(); len(b) != 1 || b[0] != 8 {
		t.Fatalf("batch = %v; want [8] at once", b)
	}
	wantResult(t, ch, 8)
	if n := h.released(ReleaseIdle); n != 2 {
		t.Errorf("idle releases = %d; want 2", n)
	}
}

func TestBatchFillsUnderLoad(t *testing.T) {
	h := newHarness(t, Config{Enabled: true, MaxBatchSize: 4}, 1, true)
	first := h.submit(time.Second, 0, 1)
	if b := h.batch(); len(b) != 1 {
		t.Fatalf("first batch = %v", b)
	}
	h.settle()
	// While the only worker is busy, six single-row requests and one of
	// two rows queue up, in order.
	var chs []chan result
	for i := 2; i <= 7; i++ {
		chs = append(chs, h.submit(time.Second, 0, float32(i)))
		h.settle()
	}
	pair := h.submit(time.Second, 0, 8, 9)
	h.settle()
	h.backend.gate <- struct{}{} // the first batch finishes
	wantResult(t, first, 1)
	if b := h.batch(); fmt.Sprint(b) != "[2 3 4 5]" {
		t.Fatalf("second batch = %v; want [2 3 4 5] (full, FIFO)", b)
	}
	h.backend.gate <- struct{}{}
	if b := h.batch(); fmt.Sprint(b) != "[6 7 8 9]" {
		t.Fatalf("third batch = %v; want [6 7 8 9]: a 2-row request counts 2", b)
	}
	h.backend.gate <- struct{}{}
	for i, ch := range chs {
		wantResult(t, ch, float32(i+2))
	}
	wantResult(t, pair, 8, 9)
	if full := h.released(ReleaseFull); full != 2 {
		t.Errorf("full releases = %d; want 2", full)
	}
}

// TestCompletingRequestRunsTheBatch: the request that completes a batch
// while a worker is free runs it on its own goroutine, without a pass of
// the scheduler or a hand-off to a worker goroutine.
func TestCompletingRequestRunsTheBatch(t *testing.T) {
	h := newHarness(t, Config{Enabled: true, MaxBatchSize: 4, MaxQueueDelay: 50 * time.Millisecond}, 1, false)
	h.teach() // saturated: the target is a full batch
	var chs []chan result
	for i := 1; i <= 3; i++ {
		chs = append(chs, h.submit(time.Second, 0, float32(i)))
		h.settle()
		h.noBatch() // waiting for company
	}
	chs = append(chs, h.submit(time.Second, 0, 4))
	if b := h.batch(); fmt.Sprint(b) != "[1 2 3 4]" {
		t.Fatalf("batch = %v; want [1 2 3 4]", b)
	}
	for i, ch := range chs {
		wantResult(t, ch, float32(i+1))
	}
	select {
	case <-h.waits:
		t.Error("the scheduler ran for a batch its last request could run itself")
	case <-time.After(50 * time.Millisecond):
	}
	if n := h.released(ReleaseFull); n != 1 {
		t.Errorf("full releases = %d; want 1", n)
	}
}

// TestPreferredBatchSize: with a preferred size, batches wait for that
// many rows with nothing learnt, and a lone request waits MaxQueueDelay.
func TestPreferredBatchSize(t *testing.T) {
	h := newHarness(t, Config{Enabled: true, MaxBatchSize: 8, MaxQueueDelay: 300 * time.Microsecond, PreferredBatchSize: 3}, 1, false)
	var chs []chan result
	for i := 1; i <= 2; i++ {
		chs = append(chs, h.submit(time.Second, 0, float32(i)))
		h.settle()
		h.noBatch()
	}
	chs = append(chs, h.submit(time.Second, 0, 3))
	if b := h.batch(); fmt.Sprint(b) != "[1 2 3]" {
		t.Fatalf("batch = %v; want [1 2 3]", b)
	}
	for i, ch := range chs {
		wantResult(t, ch, float32(i+1))
	}
	h.settle()
	lone := h.submit(time.Second, 0, 4)
	h.settle()
	h.noBatch()
	h.clock.Advance(200 * time.Microsecond)
	h.settle()
	h.noBatch()
	h.clock.Advance(150 * time.Microsecond) // past MaxQueueDelay
	h.settle()
	if b := h.batch(); fmt.Sprint(b) != "[4]" {
		t.Fatalf("batch = %v; want the lone request after the delay", b)
	}
	wantResult(t, lone, 4)
	if n := h.released(ReleaseDelay); n != 1 {
		t.Errorf("delay releases = %d; want 1", n)
	}
}

func TestDelayBound(t *testing.T) {
	h := newHarness(t, Config{Enabled: true, MaxBatchSize: 8, MaxQueueDelay: 300 * time.Microsecond}, 1, false)
	h.teach()
	ch := h.submit(time.Second, 0, 1)
	h.settle()
	h.noBatch() // heavy traffic and a fixed cost: waiting for company pays
	h.clock.Advance(200 * time.Microsecond)
	h.settle()
	h.noBatch()                             // still worth waiting for (about 4 more rows expected)
	h.clock.Advance(150 * time.Microsecond) // past the oldest's 300µs
	h.settle()
	if b := h.batch(); len(b) != 1 {
		t.Fatalf("batch = %v; want the lone request after the delay", b)
	}
	wantResult(t, ch, 1)
	if n := h.released(ReleaseDelay); n != 1 {
		t.Errorf("delay releases = %d; want 1", n)
	}
}

func TestDeadlineBoundsTheWait(t *testing.T) {
	h := newHarness(t, Config{Enabled: true, MaxBatchSize: 8, MaxQueueDelay: 100 * time.Millisecond}, 1, false)
	h.teach()
	// t(8) = 1.8ms: to meet a 2ms deadline a full batch must start by
	// 0.2ms, long before the 100ms delay bound. As no company arrives the
	// expected batch, and so its start-by time, shrinks: t(2) = 1.2ms.
	ch := h.submit(2*time.Millisecond, 0, 1)
	h.settle()
	h.noBatch()
	h.clock.Advance(250 * time.Microsecond)
	h.settle()
	h.noBatch()
	h.clock.Advance(750 * time.Microsecond)
	h.settle()
	if b := h.batch(); len(b) != 1 {
		t.Fatalf("batch = %v; want the request released for its deadline", b)
	}
	wantResult(t, ch, 1)
	if n := h.released(ReleaseDeadline); n != 1 {
		t.Errorf("deadline releases = %d; want 1", n)
	}
}

func TestExpiredWhileQueued(t *testing.T) {
	h := newHarness(t, Config{Enabled: true, MaxBatchSize: 8}, 1, true)
	first := h.submit(time.Second, 0, 1)
	h.batch()
	h.settle()
	late := h.submit(5*time.Millisecond, 0, 2)
	h.settle()
	h.clock.Advance(6 * time.Millisecond)
	wantErr(t, late, ErrExpired) // answered at once, while the worker is still busy
	h.backend.gate <- struct{}{}
	wantResult(t, first, 1)
	h.settle()
	h.noBatch() // and never executed
	if n := h.met.expiredN.Get(); n != 1 {
		t.Errorf("expired = %d; want 1", n)
	}
	// A request whose deadline has already passed is refused on arrival.
	wantErr(t, h.submit(0, 0, 3), ErrExpired)
}

func TestAdmissionRefusal(t *testing.T) {
	h := newHarness(t, Config{Enabled: true, MaxBatchSize: 8}, 1, true)
	h.teach()
	busy := h.submit(time.Second, 0, 1)
	h.batch()
	h.settle()
	// 16 rows queued ahead = 2 batches of 1.8ms, behind the running one.
	var queued []chan result
	for i := 0; i < 16; i++ {
		queued = append(queued, h.submit(time.Second, 0, float32(10+i)))
		h.settle()
	}
	wantErr(t, h.submit(3*time.Millisecond, 0, 99), ErrOverloaded)
	if n := h.met.shedAdmit.Get(); n != 1 {
		t.Errorf("admission sheds = %d; want 1", n)
	}
	// A higher priority request skips the queue in the estimate too.
	h.bt.cfg.PriorityLevels = 2
	h.bt.mu.Lock()
	h.bt.queues = append([][]*call{nil}, h.bt.queues...)
	h.bt.mu.Unlock()
	urgent := h.submit(5*time.Millisecond, 1, 100)
	h.settle()
	for range 3 {
		h.backend.gate <- struct{}{}
	}
	wantResult(t, busy, 1)
	wantResult(t, urgent, 100)
	for i, ch := range queued {
		if i < 8 {
			h.backend.gate <- struct{}{}
		}
		wantResult(t, ch, float32(10+i))
	}
}

func TestPriorities(t *testing.T) {
	for _, enabled := range []bool{true, false} {
		t.Run(fmt.Sprintf("batching=%v", enabled), func(t *testing.T) {
			h := newHarness(t, Config{Enabled: enabled, MaxBatchSize: 8, PriorityLevels: 3}, 1, true)
			first := h.submit(time.Second, 0, 1)
			h.batch()
			h.settle()
			low1 := h.submit(time.Second, 3, 31)
			h.settle()
			low2 := h.submit(time.Second, 0, 32) // 0 = the default, lowest level
			h.settle()
			mid := h.submit(time.Second, 2, 21)
			h.settle()
			high := h.submit(time.Second, 1, 11)
			h.settle()
			for range 5 {
				h.backend.gate <- struct{}{}
			}
			var order []float32
			for len(order) < 4 {
				order = append(order, h.batch()...)
			}
			if fmt.Sprint(order) != "[11 21 31 32]" {
				t.Errorf("order = %v; want [11 21 31 32]: strict between levels, FIFO within", order)
			}
			wantResult(t, first, 1)
			wantResult(t, high, 11)
			wantResult(t, mid, 21)
			wantResult(t, low1, 31)
			wantResult(t, low2, 32)
			if _, err := h.bt.Submit(Request{Inputs: []*tensor.Tensor{tensor.FromFloat32s("x", []int64{1, 1}, []float32{0})},
				Deadline: h.clock.Now().Add(time.Second), Priority: 4}); !errors.Is(err, backends.ErrInvalidInput) {
				t.Errorf("priority 4 of 3 levels: error %v; want ErrInvalidInput", err)
			}
			<-h.admits
		})
	}
}

func TestQueueFullSheds(t *testing.T) {
	h := newHarness(t, Config{Enabled: true, MaxBatchSize: 2, QueueCapacity: 3}, 1, true)
	first := h.submit(time.Second, 0, 1)
	h.batch()
	h.settle()
	a := h.submit(time.Second, 0, 2, 3)
	h.settle()
	b := h.submit(time.Second, 0, 4)
	h.settle()
	wantErr(t, h.submit(time.Second, 0, 5), ErrQueueFull) // 3 rows queued: full
	if n := h.met.shedFull.Get(); n != 1 {
		t.Errorf("queue-full sheds = %d; want 1", n)
	}
	for range 3 {
		h.backend.gate <- struct{}{}
	}
	wantResult(t, first, 1)
	wantResult(t, a, 2, 3)
	wantResult(t, b, 4)
}

func TestIncompatibleShapesWait(t *testing.T) {
	h := newHarness(t, Config{Enabled: true, MaxBatchSize: 8}, 1, true)
	first := h.submit(time.Second, 0, 1)
	h.batch()
	h.settle()
	a := h.submit(time.Second, 0, 2)
	h.settle()
	wide := Request{Inputs: []*tensor.Tensor{tensor.FromFloat32s("x", []int64{1, 2}, []float32{3, 3})}, Deadline: h.clock.Now().Add(time.Second)}
	wch := make(chan result, 1)
	go func() { out, err := h.bt.Submit(wide); wch <- result{out, err} }()
	<-h.admits
	h.settle()
	c := h.submit(time.Second, 0, 4)
	h.settle()
	for range 4 {
		h.backend.gate <- struct{}{}
	}
	wantResult(t, first, 1)
	// [2] cannot share a batch with the [1,2]-shaped request behind it,
	// and [4] must not overtake that request.
	if b := h.batch(); fmt.Sprint(b) != "[2]" {
		t.Errorf("second batch = %v; want [2]", b)
	}
	if b := h.batch(); fmt.Sprint(b) != "[3 3]" {
		t.Errorf("third batch = %v; want [3 3]", b)
	}
	if b := h.batch(); fmt.Sprint(b) != "[4]" {
		t.Errorf("fourth batch = %v; want [4]", b)
	}
	wantResult(t, a, 2)
	wantResult(t, c, 4)
	if r := <-wch; r.err != nil || fmt.Sprint(r.out[0].Float32s()) != "[6 6]" {
		t.Errorf("wide request = %v, %v", r.out, r.err)
	}
}

func TestFailureFailsOnlyItsBatch(t *testing.T) {
	h := newHarness(t, Config{Enabled: true, MaxBatchSize: 8}, 1, true)
	h.backend.fail = func(x []float32) error {
		for _, v := range x {
			if v == 13 {
				return errors.New("unlucky batch")
			}
		}
		return nil
	}
	first := h.submit(time.Second, 0, 1)
	h.batch()
	h.settle()
	a := h.submit(time.Second, 0, 12)
	h.settle()
	b := h.submit(time.Second, 0, 13)
	h.settle()
	h.backend.gate <- struct{}{}
	wantResult(t, first, 1)
	h.batch() // [12 13]
	h.backend.gate <- struct{}{}
	for _, ch := range []chan result{a, b} {
		if r := <-ch; r.err == nil || r.err.Error() != "unlucky batch" {
			t.Errorf("member of the failed batch: error %v; want the batch's error", r.err)
		}
	}
	ok := h.submit(time.Second, 0, 14)
	h.batch()
	h.backend.gate <- struct{}{}
	wantResult(t, ok, 14)
}

func TestCloseFlushesAndRefuses(t *testing.T) {
	h := newHarness(t, Config{Enabled: true, MaxBatchSize: 8, MaxQueueDelay: time.Hour}, 1, false)
	h.teach()
	ch := h.submit(time.Hour, 0, 5) // would wait for company
	h.settle()
	if err := h.bt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantResult(t, ch, 5)
	if n := h.released(ReleaseClose); n != 1 {
		t.Errorf("close releases = %d; want 1", n)
	}
	wantErr(t, h.submit(time.Second, 0, 6), ErrClosed)
}

// TestCloseWaitsForInlineRun closes a batcher while a lone request's batch
// runs on its submitter's goroutine (the fast path, which no worker
// goroutine tracks): Close must return only once that backend call has,
// since the caller closes the backend next.
func TestCloseWaitsForInlineRun(t *testing.T) {
	h := newHarness(t, Config{Enabled: false}, 1, true)
	ch := h.submit(time.Hour, 0, 3)
	h.batch() // in the backend, on the submitter's goroutine
	closed := make(chan error, 1)
	go func() { closed <- h.bt.Close(context.Background()) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a batch was still in the backend", err)
	case <-time.After(50 * time.Millisecond):
	}
	h.backend.gate <- struct{}{}
	wantResult(t, ch, 3)
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return once the batch was done")
	}
}

// TestStress sends many concurrent requests through a real-clock batcher
// whose outputs identify their inputs: every answer must be its own, with
// exactly its rows.
func TestStress(t *testing.T) {
	backend := newFakeBackend(2, false)
	bt := New(backend, Config{Enabled: true, MaxBatchSize: 16, MaxQueueDelay: 200 * time.Microsecond, QueueCapacity: 1 << 16}, nil, nil)
	defer bt.Close(context.Background())
	go func() { // the fake backend's record of batches is not needed here
		for range backend.seen {
		}
	}()
	defer close(backend.seen)
	const goroutines, each = 200, 25
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				rows := 1 + (g+i)%3
				xs := make([]float32, rows)
				for r := range xs {
					xs[r] = float32(g*1000 + i*10 + r)
				}
				out, err := bt.Submit(Request{Inputs: []*tensor.Tensor{tensor.FromFloat32s("x", []int64{int64(rows), 1}, xs)},
					Deadline: time.Now().Add(10 * time.Second)})
				if err != nil {
					errs <- err
					return
				}
				got := out[0].Float32s()
				if len(got) != rows {
					errs <- fmt.Errorf("request %v got %d rows", xs, len(got))
					return
				}
				for r := range xs {
					if got[r] != 2*xs[r] {
						errs <- fmt.Errorf("request %v got %v", xs, got)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestParallelBackendWorkers checks the worker count: a backend whose one
// call uses every core (Metadata.Parallel) gets one worker when batching
// is on, so that requests arriving during a batch form the next one, and
// its declared concurrency when batching is off (the baseline).
func TestParallelBackendWorkers(t *testing.T) {
	tests := []struct {
		parallel, enabled bool
		want              int
	}{
		{false, true, 2},
		{true, true, 1},
		{true, false, 2},
		{false, false, 2},
	}
	for _, tt := range tests {
		f := newFakeBackend(2, false)
		f.meta.Parallel = tt.parallel
		bt := New(f, Config{Enabled: tt.enabled, MaxQueueDelay: time.Millisecond}, nil, nil)
		if bt.workers != tt.want {
			t.Errorf("parallel %v, enabled %v: %d workers; want %d", tt.parallel, tt.enabled, bt.workers, tt.want)
		}
		bt.Close(context.Background())
	}
}
