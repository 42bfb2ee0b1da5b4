package proxy

import (
	"bytes"
	"cmp"
	"errors"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/batcher"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/internal/idlethread"
	"github.com/coalesce-ml/coalesce/tensor"
)

// A model's shadow (config.yaml shadow:) receives a copy of shadow.share
// of the requests its other versions answered, after they answered: the
// copy (inputs and the primary's outputs, cloned) goes into a queue of
// shadow.queue entries and is dropped when the queue is full, so that a
// slow shadow never adds latency to an answer or memory with load. One
// goroutine per shadow takes the queued copies every shadow.interval (see
// shadowWait), runs them through the shadow version's batcher at the
// lowest priority (copies that queued up together merged, in slices of a
// few rows in the server's idle moments: see shadowSliceRows) and
// compares the outputs:
//
//	coalesce_shadow_rows_total{model,version}          rows compared
//	coalesce_shadow_agreeing_rows_total{model,version} rows whose labels (integer and string outputs, argmax of float rows) all match
//	coalesce_shadow_max_abs_diff{model,version}        per copy, the largest absolute difference of float outputs
//	coalesce_shadow_dropped_total{model,version}       copies dropped: queue full
//	coalesce_shadow_errors_total{model,version}        copies the shadow failed
//
// When the shadow version is also the canary, agreement feeds the
// canary's rollback (canary.rollback.min_agreement).

// The shadow's worker is woken by its clock, not by the request path: a
// send to a channel a goroutine waits on readies that goroutine (and may
// wake a thread to run it, a futex call) on the request's own path before
// its answer is written. Measured out of process, that wake-up per copy
// (the worker waited on the queue after each empty poll) was most of what
// a shadow cost the primary: share 0.1 cost about as much as share 1. A
// worker that only polls left the server's own tail where it was without
// a shadow at share 0.1 and grew it a third as much as before at share 1
// (bench/RESULTS.md, "The worker on its own clock"). So the worker takes
// the queued copies every shadow.interval, backing off to
// shadowIdleBackoff intervals while the queue stays empty; a copy that
// fills three quarters of the queue kicks it awake (once per wait), so
// that a burst is not dropped while it sleeps: with the default queue of
// 64 and interval of 10 ms that is rare below ~4,000 copies/s (48 copies
// in 10 ms), and at higher rates a kick comes at most once per 48 copies.
// A kick at half the queue fired on most looks at 4,000 copies/s.
const (
	defaultShadowInterval = 10 * time.Millisecond
	shadowIdleBackoff     = 8 // the longest wait, in intervals, of an idle worker
)

// The shadow's runs take the server's idle moments, in small slices: its
// inference is CPU the answers would otherwise have. A run of many rows
// holds a core (and with 16 rows or more in the CPU engine, both: it
// splits large products over its helpers) for hundreds of microseconds,
// and every request that arrives meanwhile shares the cores with it. So
// a run has at most shadowSliceRows rows (fewer than the engine splits),
// and before each one the worker waits until no request is being handled
// (Server.inflight is 0): it yields its thread (runtime.Gosched)
// shadowSpins times, then naps shadowNap at a time. A look at the queue
// waits so at most one interval in all; its remaining runs then go
// without waiting, so that a server busy without a pause still compares
// copies (and drops what its queue cannot hold) instead of starving the
// shadow. Slices are for a
// shadow whose runs are short: one whose runs took half an interval or
// more at the last look that found copies (a remote model, a large one)
// would keep up with fewer rows per call than before, so its next look
// runs full batches (up to max_batch_size rows) at once, as a slow
// shadow's rows are bounded by its calls, not its CPU.
//
// Measured by switchback (bench/RESULTS.md, "Slices in idle moments"),
// with the server and its load on two shared cores, this took share 1's
// addition to the primary's p99 from +14 % to +10 % and share 0.1's from
// +4 % to +3 %. With the server alone on one core it did not help (+23 to
// +28 % at share 1): the gate sees only the requests Go has read.
//
// So the worker also runs on a thread of its own in the kernel's idle
// scheduling class (internal/idlethread: SCHED_IDLE, with one P added to
// the runtime for it, so that a starved worker holding a P takes none
// from the answers). An in-process shadow's inference runs on that
// thread (the batcher's fast path runs a lone batch on the goroutine that
// submits it), which the kernel runs only on a CPU no other thread wants
// and preempts as soon as an answer's thread wakes: the kernel sees every
// thread, arrived requests included. A remote shadow's calls, and the
// batches of a shadow version that also takes traffic while its batcher
// is busy, run on the batcher's goroutines at normal priority. Where the
// class cannot be set (not Linux; a seccomp profile refusing
// sched_setattr) the worker logs a warning and runs as before; in a
// process that may run on one CPU only it runs as before too
// (idlethread.ErrOneCPU: the added P would share that CPU with the
// answers). Measured by switchback (bench/RESULTS.md, "The shadow's
// thread in the idle class") with the server and its load on two shared
// cores, share 1's addition to the primary's p99 went from +10 % to +3 %
// within one server, and from +8 % to none against a server without any
// shadow.
const (
	shadowSliceRows = 8
	shadowSpins     = 4
	shadowNap       = 50 * time.Microsecond
)

// shadowRoute is one snapshot's shadow of a model.
type shadowRoute struct {
	sh     *shadow
	target *entry
}

// shadow is one model's shadow worker; it lives while the model's shadow
// configuration is unchanged.
type shadow struct {
	model   string
	cfg     config.Shadow
	q       chan *shadowJob // capacity cfg.Queue; never closed (senders never block)
	kick    chan struct{}   // capacity 1: a copy filled 3/4 of q (offerShadow)
	quit    chan struct{}   // closed by stop
	stopped atomic.Bool
	draws   atomic.Uint64
	canary  atomic.Pointer[canary] // the canary the shadow version is, or nil: agreement feeds its rollback

	rows, agreeing, dropped, errors *metrics.Counter
	maxDiff                         *metrics.Histogram

	// Owned by the worker (runShadow), reused from one run to the next so
	// that a run allocates nothing of its own.
	merged shadowJob // the copies of a run, merged
	agree  []bool    // compare's per-row flags
}

// shadowJob is one copy for a shadow (or several, merged). A copy taken
// on the request path comes from shadowJobs and goes back there once run,
// so that taking it allocates nothing once the pool is warm.
type shadowJob struct {
	target  *entry
	inputs  []*tensor.Tensor
	primary []*tensor.Tensor
	outputs []backends.TensorSpec // the primary's outputs (their names); shared

	// The memory of a pooled copy: the tensors, their shapes and data.
	ts     []tensor.Tensor
	ptrs   []*tensor.Tensor
	shapes []int64
	data   []byte // 8-byte aligned (tensor.Alloc), each tensor's at a multiple of 8
}

var shadowJobs = sync.Pool{New: func() any { return new(shadowJob) }}

// copyJob takes a pooled copy of a request's inputs and the primary's
// outputs for target.
func copyJob(target *entry, outputs []backends.TensorSpec, inputs, out []*tensor.Tensor) *shadowJob {
	j := shadowJobs.Get().(*shadowJob)
	j.target, j.outputs = target, outputs
	n, dims, size := len(inputs)+len(out), 0, 0
	for _, ts := range [2][]*tensor.Tensor{inputs, out} {
		for _, t := range ts {
			dims += len(t.Shape)
			size += (len(t.Data) + 7) &^ 7
		}
	}
	j.grow(n, dims, size)
	i, d, b := 0, 0, 0
	for _, ts := range [2][]*tensor.Tensor{inputs, out} {
		for _, t := range ts {
			sh := j.shapes[d : d+len(t.Shape) : d+len(t.Shape)]
			copy(sh, t.Shape)
			data := j.data[b : b+len(t.Data) : b+len(t.Data)]
			copy(data, t.Data)
			j.ts[i] = tensor.Tensor{Name: t.Name, DType: t.DType, Shape: sh, Data: data}
			j.ptrs[i] = &j.ts[i]
			i, d, b = i+1, d+len(t.Shape), b+(len(t.Data)+7)&^7
		}
	}
	j.inputs, j.primary = j.ptrs[:len(inputs)], j.ptrs[len(inputs):]
	return j
}

// grow sizes j's memory for n tensors of dims dimensions and size bytes
// in all (each tensor's data rounded up to 8), reusing what it has.
func (j *shadowJob) grow(n, dims, size int) {
	if cap(j.ts) < n {
		j.ts, j.ptrs = make([]tensor.Tensor, n), make([]*tensor.Tensor, n)
	}
	if cap(j.shapes) < dims {
		j.shapes = make([]int64, dims)
	}
	if cap(j.data) < size {
		j.data = tensor.Alloc(size)
	}
	j.ts, j.ptrs, j.shapes, j.data = j.ts[:n], j.ptrs[:n], j.shapes[:dims], j.data[:size]
}

// reset drops j's references, keeping its memory.
func (j *shadowJob) reset() {
	clear(j.ts) // no names or data of a request stay reachable...
	clear(j.ptrs)
	j.target, j.outputs, j.inputs, j.primary = nil, nil, nil, nil // ...nor a retired entry
}

// release returns a copy taken by copyJob to the pool.
func (j *shadowJob) release() {
	j.reset()
	shadowJobs.Put(j)
}

// newShadow starts the worker of model's shadow, configured by cfg. s.mu
// is held.
func (s *Server) newShadow(model string, cfg config.Shadow) *shadow {
	sh := &shadow{model: model, cfg: cfg, q: make(chan *shadowJob, max(cfg.Queue, 1)), kick: make(chan struct{}, 1), quit: make(chan struct{})}
	sh.rows = s.set.GetOrCreateCounter(sh.series("coalesce_shadow_rows_total"))
	sh.agreeing = s.set.GetOrCreateCounter(sh.series("coalesce_shadow_agreeing_rows_total"))
	sh.dropped = s.set.GetOrCreateCounter(sh.series("coalesce_shadow_dropped_total"))
	sh.errors = s.set.GetOrCreateCounter(sh.series("coalesce_shadow_errors_total"))
	sh.maxDiff = s.set.GetOrCreateHistogram(sh.series("coalesce_shadow_max_abs_diff"))
	if s.shadowSeries == nil {
		s.shadowSeries = map[string]int{}
	}
	s.shadowSeries[sh.key()]++
	s.retiring.Add(1)
	go s.runShadow(sh)
	return sh
}

// key names sh's series among the Server's shadowSeries.
func (sh *shadow) key() string { return versionKey(sh.model, sh.cfg.Version) }

func (sh *shadow) series(name string) string {
	return name + `{model="` + sh.model + `",version="` + sh.cfg.Version + `"}`
}

// stop ends the worker (copies still queued are dropped) and removes the
// shadow's series; it does not wait.
func (sh *shadow) stop() {
	if sh.stopped.CompareAndSwap(false, true) {
		close(sh.quit)
	}
}

func (s *Server) runShadow(sh *shadow) {
	defer s.retiring.Done()
	release, err := idlethread.Lower()
	defer release()
	switch {
	case errors.Is(err, idlethread.ErrOneCPU):
		s.log.Info("shadow runs at normal priority", "model", sh.model, "version", sh.cfg.Version, "reason", err)
	case err != nil:
		s.log.Warn("shadow runs at normal priority", "model", sh.model, "version", sh.cfg.Version, "error", err)
	}
	defer func() {
		// Under s.mu, so that a worker Update starts meanwhile for the
		// same series either counts before this one's decrement or
		// registers them again after their removal.
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.shadowSeries[sh.key()]--; s.shadowSeries[sh.key()] > 0 {
			return // a newer worker of the same version counts on them
		}
		delete(s.shadowSeries, sh.key())
		for _, n := range []string{"coalesce_shadow_rows_total", "coalesce_shadow_agreeing_rows_total", "coalesce_shadow_dropped_total", "coalesce_shadow_errors_total", "coalesce_shadow_max_abs_diff"} {
			s.set.UnregisterMetric(sh.series(n))
		}
	}()
	interval := cmp.Or(sh.cfg.Interval, defaultShadowInterval)
	wait := shadowWait(interval)
	clock := time.NewTimer(wait(true))
	defer clock.Stop()
	var batch []*shadowJob // copies for one target that fit one run
	rows := 0
	var until time.Time     // the end of this look's wait for idle moments
	var spent time.Duration // this look's time in runs
	sliced := true          // whether this look runs slices in idle moments
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if sliced {
			s.awaitIdle(sh, until)
		}
		start := time.Now()
		s.shadowBatch(sh, batch)
		spent += time.Since(start)
		clear(batch)
		batch, rows = batch[:0], 0
	}
	add := func(j *shadowJob) {
		limit := j.target.b.Config().MaxBatchSize
		if sliced {
			limit = min(limit, shadowSliceRows)
		}
		if len(batch) > 0 && (j.target != batch[0].target || rows+j.rows() > limit ||
			!slices.EqualFunc(j.outputs, batch[0].outputs, sameName)) {
			flush()
		}
		batch, rows = append(batch, j), rows+j.rows()
	}
	for {
		select {
		case <-sh.quit:
			return // copies still queued are dropped
		case <-clock.C:
		case <-sh.kick:
		}
		// The copies that queued since the last look run as slices of
		// up to shadowSliceRows rows (fewer if the shadow's
		// max_batch_size is smaller), each in an idle moment (awaitIdle):
		// a shadow that keeps up costs the CPU its batched rows, not one
		// call per copy, and not while an answer is being computed.
		found := len(sh.q)
		until = time.Now().Add(interval)
		if found > 0 {
			sliced, spent = spent < interval/2, 0
		}
		for range found {
			if sh.stopped.Load() {
				return
			}
			add(<-sh.q)
		}
		flush()
		clock.Reset(wait(found > 0))
	}
}

// awaitIdle waits until no request is being handled or until the time
// until, whichever comes first, or until sh stops.
func (s *Server) awaitIdle(sh *shadow, until time.Time) {
	for spins := 0; s.inflight.Load() > 0 && !sh.stopped.Load(); spins++ {
		if spins < shadowSpins {
			runtime.Gosched()
			continue
		}
		if !time.Now().Before(until) {
			return
		}
		time.Sleep(shadowNap)
	}
}

// shadowWait returns the worker's schedule: wait(busy) is how long to
// sleep after a look at the queue, interval after one that found copies,
// and twice the last wait after one that found none, up to
// shadowIdleBackoff intervals.
func shadowWait(interval time.Duration) func(busy bool) time.Duration {
	d := interval
	return func(busy bool) time.Duration {
		if busy {
			d = interval
		} else {
			d = min(2*d, shadowIdleBackoff*interval)
		}
		return d
	}
}

func sameName(a, b backends.TensorSpec) bool { return a.Name == b.Name }

func (j *shadowJob) rows() int { return j.inputs[0].BatchSize() }

// shadowBatch runs batch, copies for one target that fit one batch, as
// one run when they merge (each alone otherwise), and returns them to the
// pool.
func (s *Server) shadowBatch(sh *shadow, batch []*shadowJob) {
	switch {
	case len(batch) == 1:
		s.shadowRun(sh, batch[0])
	case merge(&sh.merged, batch):
		s.shadowRun(sh, &sh.merged)
		sh.merged.reset()
	default:
		for _, j := range batch {
			s.shadowRun(sh, j)
		}
	}
	for _, j := range batch {
		j.release()
	}
}

// merge joins jobs, copies taken by copyJob for one target, into m,
// reusing m's memory: inputs and the primary's outputs concatenated along
// the batch dimension. It reports false when their shapes do not allow
// it.
func merge(m *shadowJob, jobs []*shadowJob) bool {
	first := jobs[0]
	n, dims, size := len(first.ptrs), 0, 0
	for _, j := range jobs {
		if len(j.ptrs) != n || len(j.inputs) != len(first.inputs) {
			return false
		}
	}
	for i, t0 := range first.ptrs {
		b := 0
		for _, j := range jobs {
			t := j.ptrs[i]
			if t.DType != t0.DType || len(t.Shape) == 0 || len(t.Shape) != len(t0.Shape) || !slices.Equal(t.Shape[1:], t0.Shape[1:]) {
				return false
			}
			b += len(t.Data)
		}
		dims += len(t0.Shape)
		size += (b + 7) &^ 7
	}
	m.grow(n, dims, size)
	d, b := 0, 0
	for i, t0 := range first.ptrs {
		sh := m.shapes[d : d+len(t0.Shape) : d+len(t0.Shape)]
		copy(sh, t0.Shape)
		sh[0] = 0
		start := b
		for _, j := range jobs {
			t := j.ptrs[i]
			sh[0] += t.Shape[0]
			b += copy(m.data[b:], t.Data)
		}
		m.ts[i] = tensor.Tensor{Name: t0.Name, DType: t0.DType, Shape: sh, Data: m.data[start:b:b]}
		m.ptrs[i] = &m.ts[i]
		d, b = d+len(t0.Shape), (b+7)&^7
	}
	m.target, m.outputs = first.target, first.outputs
	m.inputs, m.primary = m.ptrs[:len(first.inputs)], m.ptrs[len(first.inputs):]
	return true
}

// shadowRun runs one (possibly merged) copy on the shadow and compares.
func (s *Server) shadowRun(sh *shadow, j *shadowJob) {
	out, err := j.target.b.Submit(batcher.Request{Inputs: j.inputs, Deadline: time.Now().Add(j.target.timeout)})
	if err != nil || len(out) != len(j.target.Meta.Outputs) {
		sh.errors.Inc()
		return
	}
	rows, agreed, diff := compare(&sh.agree, j.outputs, j.primary, j.target, out)
	sh.rows.Add(rows)
	sh.agreeing.Add(agreed)
	if !math.IsNaN(diff) {
		sh.maxDiff.Update(diff)
	}
	if c := sh.canary.Load(); c != nil {
		s.logRollback(c, c.agree(rows, agreed))
	}
}

// offerShadow hands a copy of a request that ran on ran to its model's
// shadow, if it has one and the draw says so; it never blocks, and copies
// nothing when the queue is full.
func (s *Server) offerShadow(sn *snapshot, ran *entry, inputs, out []*tensor.Tensor) {
	if len(sn.shadows) == 0 {
		return
	}
	r := sn.shadows[ran.Name]
	if r == nil || r.target == ran || !toCanary(r.sh.draws.Add(1), r.sh.cfg.Share) {
		return
	}
	if len(r.sh.q) == cap(r.sh.q) {
		r.sh.dropped.Inc()
		return
	}
	j := copyJob(r.target, ran.Meta.Outputs, inputs, out)
	select {
	case r.sh.q <- j: // buffered; no goroutine waits on it (the worker polls)
	default: // filled up since the check
		r.sh.dropped.Inc()
		j.release()
		return
	}
	if 4*len(r.sh.q) >= 3*cap(r.sh.q) && len(r.sh.kick) == 0 {
		select { // three quarters full: wake the worker now rather than drop copies
		case r.sh.kick <- struct{}{}:
		default:
		}
	}
}

// compare returns the rows compared, those whose labels agree, and the
// largest absolute difference of the float outputs (NaN: none compared).
// Outputs are matched by name; those whose datatype or shape differ are
// skipped. flags is its per-row memory, reused from call to call.
func compare(flags *[]bool, outputs []backends.TensorSpec, primary []*tensor.Tensor, target *entry, out []*tensor.Tensor) (rows, agreed int, diff float64) {
	if len(primary) == 0 {
		return 0, 0, math.NaN()
	}
	rows = primary[0].BatchSize()
	ok := slices.Grow((*flags)[:0], rows)[:rows]
	*flags = ok
	for i := range ok {
		ok[i] = true
	}
	diff = math.NaN()
	for i, p := range primary {
		k := target.Meta.Output(outputs[i].Name)
		if k < 0 || out[k].DType != p.DType || len(out[k].Shape) != len(p.Shape) || out[k].Len() != p.Len() || rows == 0 {
			continue
		}
		q := out[k]
		width := p.Len() / rows
		switch {
		case p.DType == tensor.Bytes:
			// Element by element in both, without copying them out
			// (Strings); a malformed element disagrees.
			pd, qd := p.Data, q.Data
			for r := range rows {
				for range width {
					var pe, qe []byte
					var pok, qok bool
					pe, pd, pok = tensor.NextString(pd)
					qe, qd, qok = tensor.NextString(qd)
					if !pok || !qok || !bytes.Equal(pe, qe) {
						ok[r] = false
					}
				}
			}
		case p.DType.IsFloat():
			for r := range rows {
				pa, qa := 0, 0
				for c := range width {
					x, y := p.Float64At(r*width+c), q.Float64At(r*width+c)
					if d := math.Abs(x - y); math.IsNaN(diff) || d > diff {
						diff = d
					}
					if x > p.Float64At(r*width+pa) {
						pa = c
					}
					if y > q.Float64At(r*width+qa) {
						qa = c
					}
				}
				if width > 1 && pa != qa {
					ok[r] = false
				}
			}
		default:
			for r := range rows {
				for c := range width {
					if p.Int64At(r*width+c) != q.Int64At(r*width+c) {
						ok[r] = false
					}
				}
			}
		}
	}
	for _, v := range ok {
		if v {
			agreed++
		}
	}
	return rows, agreed, diff
}

// buildShadows sets sn.shadows from each model's shadow configuration
// (its highest version's config.yaml), keeping the workers of models whose
// configuration did not change; it returns the workers to stop once sn is
// served. s.mu is held.
func (s *Server) buildShadows(sn *snapshot) []*shadow {
	next := map[string]*shadow{}
	sn.shadows = map[string]*shadowRoute{}
	for _, name := range sn.reg.Names() {
		vs := sn.reg.Versions(name)
		cfg := vs[len(vs)-1].Config.Shadow
		if cfg.Version == "" || cfg.Share <= 0 {
			continue
		}
		var target *entry
		for _, mv := range vs {
			if mv.Version == cfg.Version {
				target = sn.entries[mv]
			}
		}
		if target == nil {
			continue
		}
		sh := s.shadows[name]
		if sh == nil || !sameShadow(sh.cfg, cfg) {
			sh = s.newShadow(name, cfg)
		}
		sh.canary.Store(nil)
		if sp := sn.splits[name]; sp != nil && sp.canary == target {
			sh.canary.Store(sp.c)
		}
		next[name] = sh
		sn.shadows[name] = &shadowRoute{sh: sh, target: target}
	}
	var stop []*shadow
	for name, sh := range s.shadows {
		if next[name] != sh {
			stop = append(stop, sh)
		}
	}
	s.shadows = next
	return stop
}

func sameShadow(a, b config.Shadow) bool { return a == b }
