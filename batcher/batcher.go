package batcher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/tensor"
)

// Config configures the batcher of one model version. Zero values are
// replaced by the defaults New documents.
type Config struct {
	// Enabled turns batching on; when false every request runs alone
	// (batches of one request), with the same queue, deadlines and
	// shedding, as the baseline batching is measured against.
	Enabled bool
	// MaxBatchSize is the most rows one batch holds; 0 means the
	// backend's maximum, or 64 when it declares none.
	MaxBatchSize int
	// MaxQueueDelay is the longest a request may wait in the queue for
	// more requests to join its batch; 0 means never wait.
	MaxQueueDelay time.Duration
	// PreferredBatchSize, when positive, is a batch size worth waiting
	// for at any load (capped at MaxBatchSize), within MaxQueueDelay and
	// the deadlines, whatever the learnt cost model says: for backends
	// whose batches pay in ways the batcher cannot see (a shared CPU,
	// an accelerator). 0 waits only as the cost model justifies. A lone
	// request then waits MaxQueueDelay for company.
	PreferredBatchSize int
	// QueueCapacity bounds the queue in rows; 0 means 16 × MaxBatchSize.
	QueueCapacity int
	// PriorityLevels is the number of priority levels (1 = highest);
	// 0 means 1.
	PriorityLevels int
}

// Request is one inference request submitted to a batcher.
type Request struct {
	// Inputs are in the model's input order, all with the same batch
	// size (dimension 0). The batcher does not modify them.
	Inputs []*tensor.Tensor
	// Deadline is when the answer is no longer useful; a request still
	// queued then is answered with ErrExpired and never executed.
	Deadline time.Time
	// Priority is 1 (highest) to PriorityLevels; 0 means the lowest
	// level.
	Priority int
}

// Errors of Submit. The proxy maps ErrQueueFull, ErrOverloaded and
// ErrClosed to 503 with Retry-After, and ErrExpired to 504.
var (
	ErrQueueFull  = errors.New("batcher: queue full")
	ErrOverloaded = errors.New("batcher: the request cannot be served before its deadline")
	ErrExpired    = errors.New("batcher: deadline passed before the model answered")
	ErrClosed     = errors.New("batcher: closed")
)

// Reasons a batch is released, the label values of the batches metric.
const (
	ReleaseFull     = "full"     // the batch reached MaxBatchSize rows
	ReleaseIdle     = "idle"     // a worker was free and waiting would not pay
	ReleaseDelay    = "delay"    // the oldest request waited MaxQueueDelay
	ReleaseDeadline = "deadline" // waiting longer would miss a deadline
	ReleaseClose    = "close"    // the batcher is closing and flushes its queue
)

// call is one queued request and its answer.
type call struct {
	req      Request
	rows     int
	shape    []int64 // non-batch dims of every input, flattened: the compatibility key
	enqueued time.Time
	done     chan result // capacity 1; written once per use by the batcher

	// mu guards state: the submitter, at its deadline, abandons a call
	// whose inputs are no longer read (queued, or copied into its batch),
	// and the batcher reads the inputs of a call only under mu and only
	// if it was not abandoned; see Submit.
	mu    sync.Mutex
	state callState

	// timer and timerClock: the submitter's deadline timer, made once
	// per pooled call (again when the clock differs).
	timer      Timer
	timerClock Clock

	// solo is the batch of this call alone on the fast path, and its
	// one-element slice: no allocation for a lone request.
	solo  batch
	soloC [1]*call
}

// calls recycles call structs and their channels: a call returns to the
// pool once Submit has read its answer, after which the batcher holds no
// reference it will use again.
var calls = sync.Pool{New: func() any { return &call{done: make(chan result, 1)} }}

// callState says who may still read a call's inputs.
type callState uint8

const (
	// waiting: queued, or in a batch whose inputs were copied (merged
	// or cloned): the submitter may leave at its deadline.
	waiting callState = iota
	// pinned: the backend reads the call's own tensors (a batch of this
	// call alone, not copied): the submitter waits for the answer.
	pinned
	// abandoned: the submitter left at its deadline with ErrExpired;
	// the batcher neither reads its inputs nor runs it again, and the
	// call is not returned to the pool.
	abandoned
)

type result struct {
	out []*tensor.Tensor
	err error
}

// batch is a set of calls run together.
type batch struct {
	calls  []*call
	rows   int
	reason string
	ctx    deadlineContext     // the backend call's context
	one    [1][]*tensor.Tensor // execute's result for a batch of one call
}

// Batcher coalesces concurrent requests for one backend into batches. It
// is safe for concurrent use. Create it with New and stop it with Close.
type Batcher struct {
	backend backends.Backend
	cfg     Config
	workers int
	clock   Clock
	met     *Metrics // nil: no metrics
	// remote: the backend implements backends.Remote; its batches never
	// run on a submitter's goroutine and their inputs are always copied,
	// so that every submitter can leave at its deadline.
	remote bool
	gate   backends.Gate // nil: the backend admits everything

	wake    chan struct{} // capacity 1: "state changed, look again"
	batches chan *batch   // unbuffered: scheduler → workers
	stopped chan struct{} // closed when the scheduler has exited
	wg      sync.WaitGroup

	mu       sync.Mutex // guards the fields below
	queues   [][]*call  // one FIFO per priority level, index 0 = priority 1
	rows     int        // queued rows, all levels
	requests int        // queued requests
	idle     int        // workers waiting for a batch
	armed    time.Time  // when the scheduler's timer fires; zero: not set
	closing  bool
	cost     costModel
	arrivals rateMeter

	onWait    func() // tests: called each time the scheduler is about to block
	onEnqueue func() // tests: called when a Submit has been admitted or refused
}

// New returns a running batcher for b with cfg; met may be nil. It runs
// as many batches at once as the backend's declared concurrency (at least
// 1), or one when batching is on and the backend is Parallel. clock nil
// means the real clock.
func New(b backends.Backend, cfg Config, met *Metrics, clock Clock) *Batcher {
	return newBatcher(b, cfg, met, clock, nil)
}

func newBatcher(b backends.Backend, cfg Config, met *Metrics, clock Clock, onWait func(), onEnqueue ...func()) *Batcher {
	meta := b.Metadata()
	if cfg.MaxBatchSize <= 0 {
		cfg.MaxBatchSize = meta.MaxBatchSize
		if cfg.MaxBatchSize <= 0 {
			cfg.MaxBatchSize = 64
		}
	}
	if meta.MaxBatchSize > 0 && cfg.MaxBatchSize > meta.MaxBatchSize {
		cfg.MaxBatchSize = meta.MaxBatchSize
	}
	if cfg.QueueCapacity <= 0 {
		cfg.QueueCapacity = 16 * cfg.MaxBatchSize
	}
	if cfg.PriorityLevels <= 0 {
		cfg.PriorityLevels = 1
	}
	if clock == nil {
		clock = realClock{}
	}
	workers := max(1, meta.Concurrency)
	if cfg.Enabled && meta.Parallel {
		// One batch at a time: it uses every core already, and what
		// arrives while it runs joins the next batch instead of starting
		// a call that would compete with it (see backends.Metadata).
		workers = 1
	}
	bt := &Batcher{
		backend: b, cfg: cfg, workers: workers, clock: clock, met: met,
		wake: make(chan struct{}, 1), batches: make(chan *batch), stopped: make(chan struct{}),
		queues: make([][]*call, cfg.PriorityLevels), onWait: onWait,
	}
	if len(onEnqueue) > 0 {
		bt.onEnqueue = onEnqueue[0]
	}
	_, bt.remote = b.(backends.Remote)
	bt.gate, _ = b.(backends.Gate)
	met.queueCapacity(cfg.QueueCapacity)
	bt.idle = bt.workers
	bt.wg.Add(bt.workers)
	for range bt.workers {
		go bt.worker()
	}
	go bt.schedule()
	return bt
}

// Config returns the effective configuration (defaults filled in).
func (bt *Batcher) Config() Config { return bt.cfg }

// Submit queues req and waits for its outputs, in the model's output
// order with req's rows. It returns ErrQueueFull or ErrOverloaded at once
// when the request cannot be admitted (or the backend's Gate error), the
// backend's error when its batch fails, and ErrExpired when its deadline
// passes first.
//
// Submit returns by req.Deadline whatever the backend does: a request
// still queued, or whose inputs were copied into a running batch (every
// batch of several requests, and every batch of a backends.Remote
// backend), is answered ErrExpired at its deadline even if the batch's
// backend call hangs; the batch goes on for its other members and the late
// answer is dropped. Only a request whose own tensors a backend is reading
// (an in-process backend running it alone) waits for that call, which its
// deadline bounds in the backend's context. req.Inputs are not read after
// Submit returns.
func (bt *Batcher) Submit(req Request) ([]*tensor.Tensor, error) {
	c, b, err := bt.enqueue(req)
	if bt.onEnqueue != nil {
		bt.onEnqueue()
	}
	if err != nil {
		return nil, err
	}
	var r result
	switch {
	case b != nil && !bt.remote:
		// Fast path: this goroutine runs the batch itself instead of
		// handing it to the scheduler and a worker (two goroutine
		// switches each way saved on every lone request). It starts
		// now: c.enqueued is this instant's clock reading.
		rows := b.rows
		if elapsed, ok := bt.runBatch(b, c.enqueued); bt.free(rows, elapsed, ok) {
			bt.poke()
		}
		r = <-c.done // the batcher answers every call it accepted
	default:
		if b != nil {
			// A remote backend may hang: its batch runs on a goroutine
			// of its own (counted in wg by enqueue) while this one
			// waits with its deadline.
			go bt.runDetached(b, c.enqueued)
		}
		var ok bool
		if r, ok = bt.wait(c); !ok {
			return nil, ErrExpired // c is abandoned: not pooled
		}
	}
	c.req, c.shape, c.soloC[0], c.solo = Request{}, nil, nil, batch{}
	calls.Put(c)
	return r.out, r.err
}

// wait waits for c's answer until its deadline. It returns false when the
// deadline came first and c was abandoned.
func (bt *Batcher) wait(c *call) (result, bool) {
	if c.timer == nil || c.timerClock != bt.clock {
		c.timer, c.timerClock = bt.clock.NewTimer(time.Hour), bt.clock
		c.timer.Stop()
	}
	c.timer.Reset(c.req.Deadline.Sub(bt.clock.Now()))
	select {
	case r := <-c.done:
		c.timer.Stop()
		return r, true
	case <-c.timer.C():
	}
	c.mu.Lock()
	if c.state == pinned {
		// A backend is reading this call's own tensors: they must
		// not go back to the caller before it returns.
		c.mu.Unlock()
		return <-c.done, true
	}
	c.state = abandoned
	c.mu.Unlock()
	bt.unqueue(c)
	return result{}, false
}

// unqueue removes c, abandoned, from the queue if it is still there, so
// that it stops holding queue capacity at once rather than when the
// scheduler next expires the queue.
func (bt *Batcher) unqueue(c *call) {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	for l, q := range bt.queues {
		for i, o := range q {
			if o != c {
				continue
			}
			copy(q[i:], q[i+1:])
			q[len(q)-1] = nil
			bt.queues[l] = q[:len(q)-1]
			bt.rows -= c.rows
			bt.requests--
			bt.met.expired()
			bt.met.depth(bt.rows, bt.requests)
			return
		}
	}
}

// runDetached runs b, which enqueue took for a remote backend, on this
// goroutine, and returns its worker slot.
func (bt *Batcher) runDetached(b *batch, start time.Time) {
	defer bt.wg.Done()
	rows := b.rows // b may be a call's solo batch, reused once it is answered
	elapsed, ok := bt.runBatch(b, start)
	bt.free(rows, elapsed, ok)
	bt.poke()
}

// enqueue admits req and queues it, or, on the fast path, returns the
// batch of it alone that the caller must run.
func (bt *Batcher) enqueue(req Request) (*call, *batch, error) {
	if len(req.Inputs) == 0 {
		return nil, nil, fmt.Errorf("batcher: no inputs: %w", backends.ErrInvalidInput)
	}
	rows := req.Inputs[0].BatchSize()
	if rows < 1 || rows > bt.cfg.MaxBatchSize {
		return nil, nil, fmt.Errorf("batcher: %d rows; want 1 to max_batch_size %d: %w", rows, bt.cfg.MaxBatchSize, backends.ErrInvalidInput)
	}
	level := req.Priority
	if level <= 0 || level > bt.cfg.PriorityLevels {
		if level > bt.cfg.PriorityLevels {
			return nil, nil, fmt.Errorf("batcher: priority %d; want 1 (highest) to %d, or 0 for the default: %w", level, bt.cfg.PriorityLevels, backends.ErrInvalidInput)
		}
		level = bt.cfg.PriorityLevels
	}
	if bt.gate != nil {
		if err := bt.gate.Admit(); err != nil {
			return nil, nil, err
		}
	}
	c := calls.Get().(*call)
	c.req, c.rows, c.shape, c.state = req, rows, nil, waiting
	now := bt.clock.Now()
	bt.mu.Lock()
	switch {
	case bt.closing:
		bt.mu.Unlock()
		calls.Put(c)
		return nil, nil, ErrClosed
	case !req.Deadline.After(now):
		bt.mu.Unlock()
		bt.met.expired()
		calls.Put(c)
		return nil, nil, ErrExpired
	case bt.rows+rows > bt.cfg.QueueCapacity:
		bt.mu.Unlock()
		bt.met.shed("queue_full")
		calls.Put(c)
		return nil, nil, ErrQueueFull
	}
	if est, ok := bt.waitEstimate(rows, level); ok && now.Add(est).After(req.Deadline) {
		bt.mu.Unlock()
		bt.met.shed("admission")
		calls.Put(c)
		return nil, nil, ErrOverloaded
	}
	c.enqueued = now
	bt.arrivals.arrive(now, rows)
	if bt.requests == 0 && bt.idle > 0 && (!bt.cfg.Enabled || bt.cfg.MaxQueueDelay <= 0 || float64(rows) >= bt.target(now)) {
		bt.idle--
		bt.mu.Unlock()
		reason := ReleaseIdle
		if rows >= bt.cfg.MaxBatchSize {
			reason = ReleaseFull
		}
		if bt.remote {
			bt.wg.Add(1) // runDetached; the workers hold wg above zero
		}
		c.soloC[0] = c
		c.solo = batch{calls: c.soloC[:], rows: rows, reason: reason}
		return c, &c.solo, nil
	}
	c.shape = shapeKey(req.Inputs) // only queued requests are compared
	bt.queues[level-1] = append(bt.queues[level-1], c)
	bt.rows += rows
	bt.requests++
	// With a worker free, the policy may release a batch now (this
	// request completed it): this goroutine runs it, with no hand-off to
	// the scheduler and a worker. Otherwise the scheduler is woken only
	// if its timer would fire too late for what this request changed.
	var run *batch
	wakeBy := req.Deadline
	if bt.idle > 0 {
		if run, wakeBy = bt.decide(now); run != nil {
			bt.idle--
			if bt.remote {
				bt.wg.Add(1) // runDetached
			}
		}
	}
	poke := run == nil && (bt.armed.IsZero() || bt.armed.After(wakeBy))
	bt.met.depth(bt.rows, bt.requests)
	bt.mu.Unlock()
	if poke {
		bt.poke()
	}
	return c, run, nil
}

// waitEstimate returns how long a request of rows rows at level would
// take to be answered: the batches queued ahead of it spread over the
// workers, plus its own. False when the cost model knows nothing yet.
// Called with mu held.
func (bt *Batcher) waitEstimate(rows, level int) (time.Duration, bool) {
	ahead := 0
	for l := 0; l < level; l++ {
		for _, c := range bt.queues[l] {
			ahead += c.rows
		}
	}
	total := ahead + rows
	per, ok := bt.cost.estimate(min(total, bt.cfg.MaxBatchSize))
	if !ok {
		return 0, false
	}
	batches := (total + bt.cfg.MaxBatchSize - 1) / bt.cfg.MaxBatchSize
	rounds := (batches + bt.workers - 1) / bt.workers
	if bt.idle == 0 {
		rounds++ // every worker is busy: count one batch each must finish first
	}
	return time.Duration(rounds) * per, true
}

// poke tells the scheduler that something changed.
func (bt *Batcher) poke() {
	select {
	case bt.wake <- struct{}{}:
	default:
	}
}

// shapeKey returns the non-batch dimensions of all inputs: requests with
// different keys cannot share a batch.
func shapeKey(in []*tensor.Tensor) []int64 {
	var k []int64
	for _, t := range in {
		if len(t.Shape) > 0 {
			k = append(k, t.Shape[1:]...)
		}
		k = append(k, -1) // separator
	}
	return k
}

func sameShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Close stops accepting requests, runs what is queued, waits for every
// batch in flight, and stops the batcher's goroutines. It returns ctx's
// error if that ends first (the goroutines still stop once the work is
// done).
func (bt *Batcher) Close(ctx context.Context) error {
	bt.mu.Lock()
	bt.closing = true
	bt.mu.Unlock()
	bt.poke()
	select {
	case <-bt.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runBatch executes b, starting at start, on the backend and answers its
// calls.
//
// It returns how long the backend took and whether it succeeded, for the
// cost model; the caller hands both to free.
func (bt *Batcher) runBatch(b *batch, start time.Time) (time.Duration, bool) {
	for _, c := range b.calls {
		bt.met.queueWait(start.Sub(c.enqueued))
	}
	bt.met.batch(b.rows, b.reason)
	rows := b.rows
	ok := bt.runCalls(b)
	elapsed := bt.clock.Now().Sub(start)
	bt.met.execution(rows, elapsed)
	return elapsed, ok
}

// runCalls executes b and answers its calls. When the backend refuses the
// batch's inputs (backends.ErrInvalidInput, e.g. an upstream's 400), the
// batch is split in halves that run again, down to single requests, so
// that one bad input fails only its own request (with the backend's
// message) and its neighbours still get their answers: k bad requests in n
// cost about 2k·log2(n) extra calls. It reports whether the first call
// succeeded (only then is its time a sample of the cost model).
func (bt *Batcher) runCalls(b *batch) bool {
	out, err := bt.execute(b)
	if len(b.calls) == 0 {
		return false // every call had left or expired: nothing ran
	}
	if err != nil && len(b.calls) > 1 && errors.Is(err, backends.ErrInvalidInput) {
		h := len(b.calls) / 2
		for _, part := range [][]*call{b.calls[:h], b.calls[h:]} {
			sub := &batch{calls: part, reason: b.reason}
			for _, c := range part {
				sub.rows += c.rows
			}
			bt.runCalls(sub)
		}
		return false
	}
	for i, c := range b.calls {
		if err != nil {
			c.done <- result{err: err}
			continue
		}
		c.done <- result{out: out[i]}
	}
	return err == nil
}

// claim drops from b the calls that cannot run: abandoned by their
// submitter, or past their deadline (answered ErrExpired). It leaves the
// remaining calls locked, for their inputs to be read; the caller unlocks
// them with release.
func (bt *Batcher) claim(b *batch) {
	now := bt.clock.Now()
	var live []*call // nil while every call so far is live: no allocation then
	rows := 0
	for i, c := range b.calls {
		c.mu.Lock()
		if c.state == abandoned || !c.req.Deadline.After(now) {
			c.mu.Unlock()
			c.done <- result{err: ErrExpired} // capacity 1; dropped if abandoned
			if live == nil {
				// A new array: b.calls may be a half of a shared one.
				live = append(make([]*call, 0, len(b.calls)-1), b.calls[:i]...)
			}
			continue
		}
		if live != nil {
			live = append(live, c)
		}
		rows += c.rows
	}
	if live != nil {
		b.calls = live
	}
	b.rows = rows
}

func release(calls []*call, state callState) {
	for _, c := range calls {
		c.state = state
		c.mu.Unlock()
	}
}

// free returns the worker slot of a finished batch of rows rows and, when
// it succeeded, feeds its duration to the cost model: one lock for both.
// It reports whether the scheduler has work to look at.
func (bt *Batcher) free(rows int, elapsed time.Duration, ok bool) bool {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	if ok {
		bt.cost.observe(rows, elapsed)
	}
	bt.idle++
	return bt.requests > 0 || bt.closing
}

// execute merges the calls' inputs, runs the backend, and splits the
// outputs back, one slice of rows per call, in order. Calls whose
// submitter left, or whose deadline passed, are answered ErrExpired and
// dropped from b first.
func (bt *Batcher) execute(b *batch) (out [][]*tensor.Tensor, err error) {
	bt.claim(b)
	if len(b.calls) == 0 {
		return nil, nil
	}
	locked := b.calls
	defer func() {
		if locked != nil {
			release(locked, waiting)
		}
		if r := recover(); r != nil {
			err = fmt.Errorf("batcher: internal error: backend panicked: %v", r)
		}
	}()
	var inputs []*tensor.Tensor
	switch {
	case len(b.calls) == 1 && !bt.remote:
		// The backend reads the request's own tensors: its submitter
		// must wait for the answer (pinned), which the deadline in the
		// backend's context bounds.
		inputs = b.calls[0].req.Inputs
		release(locked, pinned)
	case len(b.calls) == 1:
		inputs = make([]*tensor.Tensor, len(b.calls[0].req.Inputs))
		for i, t := range b.calls[0].req.Inputs {
			inputs[i] = t.Clone()
		}
		release(locked, waiting)
	default:
		n := len(b.calls[0].req.Inputs)
		inputs = make([]*tensor.Tensor, n)
		parts := make([]*tensor.Tensor, len(b.calls))
		for i := range n {
			for j, c := range b.calls {
				parts[j] = c.req.Inputs[i]
			}
			if inputs[i], err = tensor.Concat(parts[0].Name, parts); err != nil {
				return nil, fmt.Errorf("batcher: merging input %d: %w", i, err)
			}
		}
		release(locked, waiting)
	}
	locked = nil
	// The batch runs until its last member's deadline: no member is
	// failed by another's tighter one. Each member is still answered by
	// its own deadline (Submit), and a backend that retries (an upstream)
	// bounds each try by its own timeout.
	deadline := b.calls[0].req.Deadline
	for _, c := range b.calls[1:] {
		if c.req.Deadline.After(deadline) {
			deadline = c.req.Deadline
		}
	}
	b.ctx = deadlineContext{deadline: deadline}
	res, err := bt.backend.Infer(&b.ctx, inputs)
	b.ctx.stop()
	if err != nil {
		return nil, err
	}
	if len(b.calls) == 1 {
		b.one[0] = res
		return b.one[:], nil
	}
	out = make([][]*tensor.Tensor, len(b.calls))
	rows := make([]int, len(b.calls))
	for j, c := range b.calls {
		rows[j] = c.rows
		out[j] = make([]*tensor.Tensor, len(res))
	}
	for i, t := range res {
		if t.BatchSize() != b.rows {
			return nil, fmt.Errorf("batcher: output %q has %d rows for a batch of %d", t.Name, t.BatchSize(), b.rows)
		}
		pieces, err := tensor.Split(t, rows)
		if err != nil {
			return nil, fmt.Errorf("batcher: splitting output %q: %w", t.Name, err)
		}
		for j := range b.calls {
			out[j][i] = pieces[j]
		}
	}
	return out, nil
}

// worker runs batches until the scheduler closes the channel.
func (bt *Batcher) worker() {
	defer bt.wg.Done()
	for b := range bt.batches {
		elapsed, ok := bt.runBatch(b, bt.clock.Now())
		bt.free(b.rows, elapsed, ok)
		bt.poke() // the scheduler counts on hearing of every free worker
	}
}

// deadlineContext carries a batch's deadline to the backend without the
// allocations and timer of context.WithDeadline on every batch: its Done
// channel and timer are made only if a backend asks for Done (the CPU
// engine does so only when it has to wait for a worker). The batcher
// enforces deadlines itself; a request that expires while queued is
// answered and never run.
type deadlineContext struct {
	deadline time.Time
	once     sync.Once
	done     chan struct{}
	timer    *time.Timer
}

func (c *deadlineContext) Deadline() (time.Time, bool) { return c.deadline, true }
func (*deadlineContext) Value(any) any                 { return nil }

func (c *deadlineContext) Done() <-chan struct{} {
	c.once.Do(func() {
		c.done = make(chan struct{})
		d := time.Until(c.deadline)
		if d <= 0 {
			close(c.done)
			return
		}
		c.timer = time.AfterFunc(d, func() { close(c.done) })
	})
	return c.done
}

func (c *deadlineContext) Err() error {
	if time.Now().Before(c.deadline) {
		return nil
	}
	return context.DeadlineExceeded
}

// stop releases the timer, if Done made one.
func (c *deadlineContext) stop() {
	if c.timer != nil {
		c.timer.Stop()
	}
}
