package sgemm

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coalesce-ml/coalesce/internal/idlethread"
)

// Intra-operator splitting: a matrix product with packed constant B and at
// least minRows rows (cpu's Options.SplitRows) is cut into chunks of whole row strips that
// the calling worker and idle helper goroutines compute in parallel; one
// whose B is too large for a core's cache (colSplitBytes) into chunks of
// whole column panels instead, at any number of rows. Each chunk writes
// its own part of C, so the data needs no lock.
//
// A helper that has served a task polls for the next one for spinTime
// before it parks, and a caller whose last chunk is on a helper polls for
// its completion: parking costs a thread wake-up (tens of microseconds on
// a virtual machine), more than a chunk takes at these sizes.
//
// The helpers (GOMAXPROCS-1 goroutines) belong to the Splitter's owner
// (in cpu, a Backend: started at the end of LoadBytes, stopped by Close or
// when the Backend is garbage collected without Close). Every call between
// Enter and Leave (in cpu, an Infer call) counts as one computing
// goroutine, and a call hands a chunk job to a helper only when it can
// take a token, i.e. when fewer than GOMAXPROCS goroutines of this backend
// compute (calls plus busy helpers); it never waits for one. When all
// cores serve other calls, a split product runs every chunk on its caller:
// the cost over the unsplit path is a few atomic operations.
//
// Chunks are claimed dynamically from a per-call counter, by the caller
// and by the helpers it woke, so a helper that wakes late takes whatever
// remains (possibly nothing) instead of delaying the call. The caller
// waits (on a channel of capacity 1) only when a helper finished the last
// chunk. Chunk boundaries are boundaries of the unsplit strip sequence
// (see stripRows), so that every row is computed by the same kernel body
// as without splitting: the results are bit-identical.

// defaultSplitRows is the measured default of NewSplitter's minRows (rows
// of the product, the batch size for a Gemm on a batch of vectors).
// cpu's BenchmarkMLP/split vs /nosplit on digits-mlp, AVX-512, 2 cores (µs per
// call, medians of 3): batch 16 28 vs 33, 24 36 vs 48, 32 48 vs 55,
// 48 57 vs 93, 64 77 vs 114, 256 303 vs 503. Below 16 rows an AVX-512
// product has a single 12-row strip plus a tail and nothing to share.
const defaultSplitRows = 16

// maxChunksPerProc bounds the chunks of one product per computing
// goroutine: more chunks balance a late helper better, each costs one
// driver call.
const maxChunksPerProc = 4

// colSplitBytes is the size of packed B from which a product is split by
// columns (whole panels) instead of rows, at any m up to colSplitMaxRows
// and from one row, below minRows: B then no longer stays
// in one core's L2 between calls, so each call streams it from L3 or
// memory, and a row split would make every core stream all of it. Split
// by columns, each core streams its own share once, which halves a
// weight-bound product on two cores even at one row. cpu's
// BenchmarkWideMLP/h=4096/split (84 MB of weights, AVX-512, 2 cores, ms
// per call, row split → column split): batch 1 1.77 → 1.18, 8 4.31 →
// 2.37, 32 13.7 → 7.92, 64 25.4 → 10.4, 256 50.0 → 26.9.
const colSplitBytes = 4 << 20

// Column splitting stops at colSplitMaxRows rows for a B smaller than
// colSplitAlwaysBytes, which the shared L3 still holds: there each core's
// row strips reuse B from L3, and a row split is faster. h=1024 (4 MB
// layers), ms per call, row → column split: batch 64 0.647 → 0.732, 256
// 2.49 → 2.92; batch 32 0.390 → 0.379.
const (
	colSplitMaxRows     = 64
	colSplitAlwaysBytes = 16 << 20
)

// Splitter is a pool of helper goroutines that compute chunks of large
// products (Gemm) for their callers; one per Backend in cpu. A nil
// *Splitter is valid and never splits. Its methods are safe for
// concurrent use.
type Splitter struct {
	minRows int   // split products of at least this many rows; <= 0: never
	procs   int32 // bound on computing goroutines (calls + busy helpers)
	// busy counts the calls running (enter/leave) and the helpers holding
	// a token (taken by acquire, given back by the helper).
	busy    atomic.Int32
	live    atomic.Bool    // helpers running: tasks are served
	tasks   chan splitTask // capacity procs-1: never blocks (tokens bound it)
	jobs    chan *splitJob // free list of job records
	quit    chan struct{}  // closed by stop
	stopped sync.Once      // guards close(quit)
	wg      sync.WaitGroup // helpers running, for stop
	started atomic.Bool    // start ran
	_       [0]func()      // not comparable
}

// splitTask asks a helper to join job j while its sequence number is seq.
type splitTask struct {
	j   *splitJob
	seq uint32
}

// splitJob is one split product. Its fields other than the atomics are
// written by the caller before it publishes the job (state) and read by
// the goroutines that claim chunks of it.
type splitJob struct {
	// state packs seq (bits 32-63), the chunk count (16-31) and the next
	// chunk to claim (0-15). A helper whose task's seq differs from the
	// state's is late for a finished job and leaves.
	state atomic.Uint64
	done  atomic.Int32  // chunks finished
	fin   chan struct{} // capacity 1: the helper finishing the last chunk sends
	seq   uint32
	perr  atomic.Pointer[chunkPanic] // first panic of a chunk, re-raised by the caller

	ks              *Kernels
	pb              *Packed
	a, c            []float32
	m, lda, ldc, fl int
	units, chunks   int  // boundaries: multiples of mr (rows) or nr (cols)
	cols            bool // chunks are column ranges (whole panels), not row ranges
}

// NewSplitter returns a pool that splits products of at least minRows
// rows (0: the default, 16; < 0: never) for up to concurrency concurrent
// callers; it does not start it. It returns nil when splitting is off or
// GOMAXPROCS is 1. GOMAXPROCS here and below means idlethread.Procs: the
// Ps of normal priority (a shadow's lowered worker adds one that is not).
func NewSplitter(minRows, concurrency int) *Splitter {
	procs := idlethread.Procs()
	if minRows == 0 {
		minRows = defaultSplitRows
	}
	if minRows < 0 || procs < 2 {
		return nil
	}
	return &Splitter{
		minRows: max(minRows, 1),
		procs:   int32(procs),
		tasks:   make(chan splitTask, procs-1),
		jobs:    make(chan *splitJob, concurrency+procs),
		quit:    make(chan struct{}),
	}
}

// Start starts the helpers (GOMAXPROCS-1 goroutines); Stop stops them.
// Until Start, and after Stop, Gemm computes every chunk on its caller.
// Calls after the first do nothing.
func (sp *Splitter) Start() {
	if sp == nil || !sp.started.CompareAndSwap(false, true) {
		return
	}
	for range sp.procs - 1 {
		sp.wg.Add(1)
		go sp.helper()
	}
	sp.live.Store(true)
}

// Stop stops the helpers and, when wait is set, waits until they have
// exited (a helper in a chunk finishes it first). Calls still running
// compute their chunks themselves. Stop may be called more than once.
func (sp *Splitter) Stop(wait bool) {
	if sp == nil {
		return
	}
	sp.live.Store(false)
	sp.stopped.Do(func() { close(sp.quit) })
	if wait {
		sp.wg.Wait()
	}
}

// Enter and Leave bracket a caller's computation (in cpu, an Infer call):
// it counts as one computing goroutine, so that helpers are handed work
// only while fewer than GOMAXPROCS goroutines compute.
func (sp *Splitter) Enter() {
	if sp != nil {
		sp.busy.Add(1)
	}
}

// Leave ends what Enter began.
func (sp *Splitter) Leave() {
	if sp != nil {
		sp.busy.Add(-1)
	}
}

// SplitsColumns reports whether Gemm splits products with B p at any
// number of rows (by columns below colSplitMaxRows rows, or always when
// B exceeds colSplitAlwaysBytes): one such call uses every core there are
// helpers for. False for a nil Splitter.
func (sp *Splitter) SplitsColumns(p *Packed) bool {
	return sp != nil && 4*p.k*p.n >= colSplitBytes
}

// Busy returns how many goroutines compute now: callers between Enter
// and Leave plus helpers at work. It is 0 once every caller has left and
// the helpers have given their tokens back.
func (sp *Splitter) Busy() int {
	if sp == nil {
		return 0
	}
	return int(sp.busy.Load())
}

// acquire takes a helper token if fewer than procs goroutines compute.
func (sp *Splitter) acquire() bool {
	for {
		v := sp.busy.Load()
		if v >= sp.procs {
			return false
		}
		if sp.busy.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

func (sp *Splitter) helper() {
	defer sp.wg.Done()
	for {
		select {
		case <-sp.quit:
			return
		case t := <-sp.tasks:
			t.j.work(t.seq, sp)
			sp.spin()
		}
	}
}

// spinTime is how long a helper that has just served a task keeps
// polling for the next one before it parks: the next product of the same
// call (the next layer) usually follows within microseconds, while waking
// a parked goroutine costs an OS thread wake-up, tens of microseconds on
// a virtual machine, by which time the caller has done the chunks itself.
const spinTime = 50 * time.Microsecond

// spin polls for tasks for spinTime after the last one, yielding the
// processor between polls, and stops as soon as every core of the
// backend's budget computes (calls and busy helpers).
func (sp *Splitter) spin() {
	deadline := time.Now().Add(spinTime)
	for {
		select {
		case t := <-sp.tasks:
			t.j.work(t.seq, sp)
			deadline = time.Now().Add(spinTime)
			continue
		default:
		}
		if sp.busy.Load() >= sp.procs || time.Now().After(deadline) {
			return
		}
		runtime.Gosched()
	}
}

// Gemm is ks.Gemm, split over the helpers when m is at least minRows
// and helpers are free; the result is bit-identical to ks.Gemm's. A
// panic in a chunk (a bad argument) is raised on the caller.
func (sp *Splitter) Gemm(ks *Kernels, m int, a []float32, lda int, pb *Packed, c []float32, ldc int, flags int) {
	if sp == nil || pb.k == 0 || pb.n == 0 || !sp.live.Load() {
		ks.Gemm(m, a, lda, pb, c, ldc, flags)
		return
	}
	cols := sp.SplitsColumns(pb) && (m < colSplitMaxRows || 4*pb.k*pb.n >= colSplitAlwaysBytes)
	if !cols && m < sp.minRows {
		ks.Gemm(m, a, lda, pb, c, ldc, flags)
		return
	}
	units := splitUnits(m, ks.mr)
	if cols {
		units = pb.n / ks.nr // whole panels; the last chunk takes the tail
	}
	chunks := min(units, maxChunksPerProc*int(sp.procs), 1<<15)
	if chunks < 2 {
		ks.Gemm(m, a, lda, pb, c, ldc, flags)
		return
	}
	ks.checkGemm(m, a, lda, pb, c, ldc, flags) // panics here, on the caller, never in a helper
	var j *splitJob
	select {
	case j = <-sp.jobs:
	default:
		j = &splitJob{fin: make(chan struct{}, 1)}
	}
	j.ks, j.pb, j.a, j.c = ks, pb, a, c
	j.m, j.lda, j.ldc, j.fl = m, lda, ldc, flags
	j.units, j.chunks, j.cols = units, chunks, cols
	j.seq++
	j.done.Store(0)
	j.state.Store(uint64(j.seq)<<32 | uint64(chunks)<<16)
	for range min(chunks-1, int(sp.procs)-1) {
		if !sp.acquire() {
			break
		}
		sp.tasks <- splitTask{j, j.seq}
	}
	last := false
	for {
		i, n, ok := j.claim(j.seq)
		if !ok {
			break
		}
		j.run(i)
		if j.done.Add(1) == int32(n) {
			last = true
		}
	}
	if !last {
		// A helper is finishing the last chunk: poll rather than park,
		// which would cost a thread wake-up when it sends.
		for deadline := time.Now().Add(spinTime); j.done.Load() != int32(chunks) && time.Now().Before(deadline); {
			runtime.Gosched()
		}
		<-j.fin // sent right after the last count
	}
	p := j.perr.Swap(nil)
	j.a, j.c, j.pb = nil, nil, nil
	select {
	case sp.jobs <- j:
	default:
	}
	if p != nil {
		panic(p.v)
	}
}

// splitUnits returns the number of row blocks m rows can be cut into on
// boundaries of the unsplit strip sequence: multiples u·mr with
// m-u·mr > mr/6 (stripRows halves a last mr+r rows, r <= mr/6).
func splitUnits(m, mr int) int {
	if m-mr/6-1 < 0 {
		return 1
	}
	return (m-mr/6-1)/mr + 1
}

// claim takes the next chunk of the job with sequence number seq: its
// index and the chunk count, ok false when none is left or the job has
// moved on.
func (j *splitJob) claim(seq uint32) (i, n int, ok bool) {
	for {
		s := j.state.Load()
		i, n = int(s&0xffff), int(s>>16&0xffff)
		if uint32(s>>32) != seq || i >= n {
			return 0, 0, false
		}
		if j.state.CompareAndSwap(s, s+1) {
			return i, n, true
		}
	}
}

// run computes chunk i: units [i·units/chunks, (i+1)·units/chunks), the
// last chunk up to row m (or column n). A panic is kept for the caller.
func (j *splitJob) run(i int) {
	defer func() {
		if r := recover(); r != nil {
			j.perr.CompareAndSwap(nil, &chunkPanic{r})
		}
	}()
	if j.cols {
		j.runCols(i)
		return
	}
	mr := j.ks.mr
	r0 := i * j.units / j.chunks * mr
	r1 := (i + 1) * j.units / j.chunks * mr
	if i == j.chunks-1 {
		r1 = j.m
	}
	j.ks.Gemm(r1-r0, j.a[r0*j.lda:], j.lda, j.pb, j.c[r0*j.ldc:], j.ldc, j.fl)
}

// runCols computes the columns of chunk i, whole panels, for every row:
// a view of B's panels from the chunk's first column (each panel holds
// all of K, so the view starts j0·k floats in), with the tail panel only
// in the last chunk. Every element is computed by the same kernel body,
// K blocks and row strips as unsplit: the result is bit-identical.
func (j *splitJob) runCols(i int) {
	nr, pb := j.ks.nr, j.pb
	j0 := i * j.units / j.chunks * nr
	j1 := (i + 1) * j.units / j.chunks * nr
	tw := 0
	if i == j.chunks-1 {
		j1, tw = pb.n, pb.tw
	}
	sub := Packed{k: pb.k, n: j1 - j0, nr: nr, tw: tw, data: pb.data[j0*pb.k:]}
	if j.fl&AddBias != 0 {
		sub.Bias = pb.Bias[j0:]
	}
	j.ks.Gemm(j.m, j.a, j.lda, &sub, j.c[j0:], j.ldc, j.fl)
}

// work is a helper's part of job j (task seq): claim and run chunks, then
// give the token back. The token goes back before the helper's last chunk
// is counted, so that the caller's next product finds it free; after that
// count the helper touches only j's atomic state.
func (j *splitJob) work(seq uint32, sp *Splitter) {
	i, n, ok := j.claim(seq)
	fin := j.fin // read while the job waits for a chunk this helper holds
	released := false
	for ok {
		j.run(i)
		next, _, more := j.claim(seq)
		if !more {
			sp.busy.Add(-1)
			released = true
		}
		if j.done.Add(1) == int32(n) {
			fin <- struct{}{}
		}
		i, ok = next, more
	}
	if !released {
		sp.busy.Add(-1)
	}
}

// chunkPanic holds a panic raised in a chunk.
type chunkPanic struct{ v any }
