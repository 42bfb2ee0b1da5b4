package drift

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/tensor"
)

// Config configures a Handle. Zero fields take the defaults noted.
type Config struct {
	// SampleRate is the share of requests sampled, in [0, 1].
	SampleRate float64
	// Window is the span the statistics cover (1h), in SubWindows
	// sub-windows (12) that expire one at a time.
	Window     time.Duration
	SubWindows int
	// MinSamples is the rows the window needs before PSI and JS are
	// reported (1000).
	MinSamples int
	// MaxFeatures bounds the features (and outputs) exported as metrics:
	// above it only the MaxFeatures drifting most are (20).
	MaxFeatures int
	// Slots is the capacity of the hand-off ring in samples (1024); a
	// sample that finds no free slot is dropped. The ring holds
	// Slots × MaxRows × (features + outputs) float64s.
	Slots int
	// MaxRows is the most rows of one request a sample copies, the
	// first ones (1).
	MaxRows int
	// Interval is how often the aggregator publishes metrics (10s).
	Interval time.Duration
	// FeedbackEntries bounds the table of sampled predictions that
	// feedback joins by request id (10000); the oldest leave first.
	FeedbackEntries int
	// Now is the clock (time.Now).
	Now func() time.Time
}

func (c *Config) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.SubWindows, 12)
	def(&c.MinSamples, 1000)
	def(&c.MaxFeatures, 20)
	def(&c.Slots, 1024)
	def(&c.MaxRows, 1)
	def(&c.FeedbackEntries, 10000)
	if c.Window <= 0 {
		c.Window = time.Hour
	}
	if c.Interval <= 0 {
		c.Interval = 10 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// probes is how many slots from a random one Sample tries before it
// drops the sample: enough that a ring with a few samples in it takes
// every new one, few enough that a full ring costs little.
const probes = 8

// maxID is the longest request id a sample keeps; longer ones are not
// joined with feedback.
const maxID = 64

// Slot states: a producer moves a slot free → writing → ready, the
// aggregator ready → reading → free. Each move is one atomic operation,
// so neither side ever waits for the other.
const (
	slotFree uint32 = iota
	slotWriting
	slotReady
	slotReading
)

// slot is one sample in the hand-off ring: the features of up to MaxRows
// rows, row-major, copied from the request's tensors.
type slot struct {
	state atomic.Uint32
	rows  int
	vals  []float64
	idLen int
	id    [maxID]byte
}

// featRef locates a profile feature in the model's tensors.
type featRef struct {
	f      *Feature
	out    bool // an output, else an input
	tensor int  // index in the model's inputs or outputs
	off    int  // first counter of the feature in a sub-window
	str    bool // the tensor is BYTES: vals hold category bins
	// cats are a numeric categorical feature's categories as numbers
	// (NaN for one that is not), compared without formatting each value.
	cats []float64
}

// group is a run of h.refs[lo:hi] that read one tensor, at cols.
type group struct {
	out    bool
	tensor int
	lo, hi int
	cols   []int
	maxCol int
}

// Handle watches one model version. Sample is safe for concurrent use and
// never blocks; Report and Feedback are safe for concurrent use. New
// starts its aggregator goroutine; Close stops it and removes the
// metrics.
type Handle struct {
	cfg            Config
	p              *Profile
	model, version string
	refs           []featRef // inputs, then outputs
	groups         []group   // runs of refs of one tensor
	pred           int       // index in refs of the prediction feedback joins, -1 for none
	always         bool      // SampleRate >= 1
	threshold      uint64    // sample when rand.Uint64() < threshold
	slots          []slot
	wake           chan struct{} // capacity 1: "slots are ready"; sent without blocking
	// pending counts the ready slots the aggregator has not counted;
	// Sample wakes it from wakeAt on, so that one scan of the ring
	// counts many samples (a scan per sample would cost more than the
	// samples).
	pending   atomic.Int64
	wakeAt    int64
	done      chan struct{} // closed by Close
	stopped   chan struct{} // closed by the aggregator when it returns
	closeOnce sync.Once

	set             *metrics.Set
	sampled         *metrics.Counter
	dropped         *metrics.Counter
	samples         *metrics.Gauge
	score           *metrics.Gauge
	fbJoined        *metrics.Counter
	fbUnmatched     *metrics.Counter
	fbSamples       *metrics.Gauge
	static          []string // series Close removes
	labels          string   // model="...",version="..."
	classify        bool     // feedback: prediction is categorical (accuracy), else error
	fbName          string
	feedbackEnabled bool

	mu       sync.Mutex // guards the fields below
	win      window
	sum      []uint64            // scratch: the window's counts
	fb       feedbackTable       // sampled predictions by request id
	exported map[string]struct{} // per-feature series published now
}

// New returns a Handle for model version m with profile p, whose
// features must name m's tensors. Metrics are created on set and labelled
// {model, version}. feedback says whether sampled predictions are kept
// for Feedback.
func New(cfg Config, p *Profile, m *backends.ModelVersion, set *metrics.Set, feedback bool) (*Handle, error) {
	cfg.defaults()
	h := &Handle{cfg: cfg, p: p, model: m.Name, version: m.Version, set: set, pred: -1,
		wake: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{}),
		exported: map[string]struct{}{}, feedbackEnabled: feedback}
	off := 0
	add := func(f *Feature, out bool, specs []backends.TensorSpec) error {
		i := slices.IndexFunc(specs, func(s backends.TensorSpec) bool { return s.Name == f.Tensor })
		if i < 0 {
			return fmt.Errorf("%w: feature %q: tensor %q is not a model %s; want one of %v", ErrProfile, f.Name, f.Tensor, map[bool]string{false: "input", true: "output"}[out], tensorNames(specs))
		}
		if w := rowWidth(specs[i].Shape); w > 0 && f.Column >= w {
			return fmt.Errorf("%w: feature %q: column %d of tensor %q, whose rows have %d elements", ErrProfile, f.Name, f.Column, f.Tensor, w)
		}
		str := specs[i].DType == tensor.Bytes
		if str && f.Kind != Categorical {
			return fmt.Errorf("%w: feature %q: tensor %q holds strings; want kind %q", ErrProfile, f.Name, f.Tensor, Categorical)
		}
		ref := featRef{f: f, out: out, tensor: i, off: off, str: str}
		if f.Kind == Categorical && !str {
			for _, c := range f.Categories {
				v, err := strconv.ParseFloat(c, 64)
				if err != nil || strconv.FormatFloat(v, 'g', -1, 64) != c {
					v = math.NaN() // "1.0" is not the category of 1
				}
				ref.cats = append(ref.cats, v)
			}
		}
		h.refs = append(h.refs, ref)
		off += f.Bins()
		return nil
	}
	for i := range p.Features {
		if err := add(&p.Features[i], false, m.Meta.Inputs); err != nil {
			return nil, err
		}
	}
	for i := range p.Outputs {
		if err := add(&p.Outputs[i], true, m.Meta.Outputs); err != nil {
			return nil, err
		}
	}
	for j, ref := range h.refs {
		if n := len(h.groups); n == 0 || h.groups[n-1].out != ref.out || h.groups[n-1].tensor != ref.tensor {
			h.groups = append(h.groups, group{out: ref.out, tensor: ref.tensor, lo: j, hi: j})
		}
		g := &h.groups[len(h.groups)-1]
		g.hi++
		g.cols = append(g.cols, ref.f.Column)
		g.maxCol = max(g.maxCol, ref.f.Column)
	}
	if pi := p.prediction(); pi >= 0 {
		h.pred = len(p.Features) + pi
		h.classify = p.Outputs[pi].Kind == Categorical
	}
	switch {
	case cfg.SampleRate >= 1:
		h.always = true
	case cfg.SampleRate > 0:
		h.threshold = uint64(cfg.SampleRate * (1 << 63) * 2)
	}
	h.slots = make([]slot, cfg.Slots)
	h.wakeAt = int64(max(1, cfg.Slots/8))
	vals := make([]float64, cfg.Slots*cfg.MaxRows*len(h.refs))
	for i := range h.slots {
		n := cfg.MaxRows * len(h.refs)
		h.slots[i].vals = vals[i*n : (i+1)*n : (i+1)*n]
	}
	h.win.init(cfg, off, cfg.Now())
	h.sum = make([]uint64, off)
	h.fb.init(cfg.FeedbackEntries)

	h.labels = `model="` + m.Name + `",version="` + m.Version + `"`
	counter := func(name string) *metrics.Counter {
		h.static = append(h.static, name)
		return set.GetOrCreateCounter(name)
	}
	gauge := func(name string) *metrics.Gauge {
		h.static = append(h.static, name)
		return set.GetOrCreateGauge(name, nil)
	}
	h.sampled = counter(`coalesce_drift_samples_total{` + h.labels + `}`)
	h.dropped = counter(`coalesce_drift_dropped_total{` + h.labels + `}`)
	h.samples = gauge(`coalesce_drift_window_samples{` + h.labels + `}`)
	h.score = gauge(`coalesce_drift_score{` + h.labels + `}`)
	if feedback && h.pred >= 0 {
		h.fbJoined = counter(`coalesce_feedback_total{` + h.labels + `,result="joined"}`)
		h.fbUnmatched = counter(`coalesce_feedback_total{` + h.labels + `,result="unmatched"}`)
		h.fbSamples = gauge(`coalesce_feedback_window_samples{` + h.labels + `}`)
		h.fbName = `coalesce_feedback_mean_absolute_error{` + h.labels + `}`
		if h.classify {
			h.fbName = `coalesce_feedback_accuracy_ratio{` + h.labels + `}`
		}
	}
	go h.run()
	return h, nil
}

func tensorNames(specs []backends.TensorSpec) []string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	return names
}

// rowWidth is the elements per row of a tensor of that shape (batch
// dimension first), or 0 when a dimension is variable.
func rowWidth(shape []int64) int {
	w := 1
	for _, d := range shape[min(1, len(shape)):] {
		if d < 0 {
			return 0
		}
		w *= int(d)
	}
	return w
}

// Sampling reports, with probability SampleRate, that the request at
// hand is to be sampled; false on a nil *Handle. It costs one call of a
// per-thread random generator, nothing shared.
func (h *Handle) Sampling() bool {
	return h != nil && (h.always || rand.Uint64() < h.threshold)
}

// Sample copies the profiled features of up to MaxRows rows of one
// answered request's inputs and outputs (in the model's order) and id
// (its request id; nil for none) into a free slot of the ring, for the
// aggregator. Call it when Sampling says so. It never blocks: when the
// slots it tries (probes from a random one) are taken, the sample is
// dropped and counted. Nothing of the tensors or id is retained.
func (h *Handle) Sample(inputs, outputs []*tensor.Tensor, id []byte) {
	r := rand.Uint64()
	var s *slot
	for i := range uint64(probes) {
		c := &h.slots[(r+i)%uint64(len(h.slots))]
		if c.state.CompareAndSwap(slotFree, slotWriting) {
			s = c
			break
		}
	}
	if s == nil {
		h.dropped.Inc()
		return
	}
	h.fill(s, inputs, outputs, id)
	s.state.Store(slotReady)
	// The one shared write of a sample (the aggregator counts them).
	if h.pending.Add(1) >= h.wakeAt {
		select {
		case h.wake <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// fill copies the features of a request into s, a group of features
// of one tensor at a time (an FP32 row is read as one typed slice).
func (h *Handle) fill(s *slot, inputs, outputs []*tensor.Tensor, id []byte) {
	rows := 0
	if len(inputs) > 0 {
		rows = min(inputs[0].BatchSize(), h.cfg.MaxRows)
	}
	s.rows = rows
	s.idLen = 0
	if len(id) <= maxID {
		s.idLen = copy(s.id[:], id)
	}
	nf := len(h.refs)
	for _, g := range h.groups {
		ts := inputs
		if g.out {
			ts = outputs
		}
		var t *tensor.Tensor
		brows, width := 0, 0
		if g.tensor < len(ts) && ts[g.tensor] != nil {
			t = ts[g.tensor]
			brows = t.BatchSize()
			width = t.Len() / max(brows, 1)
		}
		for r := 0; r < rows; r++ {
			dst := s.vals[r*nf+g.lo : r*nf+g.hi]
			switch {
			case t != nil && r < brows && g.maxCol < width && t.DType == tensor.FP32:
				src := t.Float32s()[r*width : (r+1)*width]
				for k, c := range g.cols {
					dst[k] = float64(src[c])
				}
			default:
				for k, c := range g.cols {
					dst[k] = math.NaN()
					switch {
					case t == nil || r >= brows || c >= width:
					case h.refs[g.lo+k].str:
						dst[k] = stringBin(t, h.refs[g.lo+k].f, r*width+c)
					default:
						dst[k] = t.Float64At(r*width + c)
					}
				}
			}
		}
	}
}

// stringBin returns the bin of element i of BYTES tensor t as a float64;
// NaN (missing) for an empty string or bad data.
func stringBin(t *tensor.Tensor, f *Feature, i int) float64 {
	d := t.Data
	for k := 0; ; k++ {
		e, rest, ok := tensor.NextString(d)
		if !ok {
			return math.NaN()
		}
		if k == i {
			if len(e) == 0 {
				return math.NaN()
			}
			return float64(f.CategoryBin(e))
		}
		d = rest
	}
}

// run is the aggregator: it counts the ready samples when Sample wakes
// it (an eighth of the ring is ready) and every Interval, when it also
// publishes the metrics, until Close.
func (h *Handle) run() {
	defer close(h.stopped)
	t := time.NewTicker(h.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case <-h.wake:
			h.mu.Lock()
			h.drain()
			h.mu.Unlock()
		case <-t.C:
			h.mu.Lock()
			h.drain()
			h.publish()
			h.mu.Unlock()
		}
	}
}

// drain counts every ready slot into the window and frees it. h.mu is
// held.
func (h *Handle) drain() {
	now := h.cfg.Now()
	h.win.advance(now)
	nf := len(h.refs)
	n := int64(0)
	defer func() { h.pending.Add(-n); h.sampled.Add(int(n)) }()
	for i := range h.slots {
		s := &h.slots[i]
		if !s.state.CompareAndSwap(slotReady, slotReading) {
			continue
		}
		n++
		c := h.win.current()
		for r := 0; r < s.rows; r++ {
			row := s.vals[r*nf : (r+1)*nf]
			for j := range h.refs {
				ref := &h.refs[j]
				c[ref.off+h.bin(ref, row[j])]++
			}
		}
		h.win.rows[h.win.cur] += uint64(s.rows)
		if h.feedbackEnabled && h.pred >= 0 && s.idLen > 0 && s.rows > 0 {
			h.fb.put(string(s.id[:s.idLen]), s.vals[h.pred])
		}
		s.state.Store(slotFree)
	}
}

func (h *Handle) bin(ref *featRef, v float64) int {
	switch {
	case math.IsNaN(v):
		return ref.f.Bins() - 1
	case ref.str:
		return int(v)
	case ref.cats != nil:
		for i, c := range ref.cats {
			if c == v {
				return i
			}
		}
		return len(ref.cats)
	}
	return searchEdges(ref.f.Edges, v)
}

// statsOf returns the window's PSI and JS distance of ref (NaN without
// samples). h.mu is held and h.sum holds the window's counts.
func (h *Handle) statsOf(ref *featRef) (psi, js float64) {
	c := h.sum[ref.off : ref.off+ref.f.Bins()]
	return PSI(c, ref.f.Ref), JSDistance(c, ref.f.Ref)
}

// publish sets the gauges from the window: the sample count always, the
// per-feature statistics once the window holds MinSamples rows, for at
// most MaxFeatures inputs and MaxFeatures outputs (those with the highest
// PSI). h.mu is held.
func (h *Handle) publish() {
	rows := h.win.total(h.sum)
	h.samples.Set(float64(rows))
	want := map[string]float64{}
	h.score.Set(0) // until the window holds MinSamples rows
	if rows >= uint64(h.cfg.MinSamples) {
		type fs struct {
			name    string
			psi, js float64
		}
		var in, out []fs
		for j := range h.refs {
			ref := &h.refs[j]
			psi, js := h.statsOf(ref)
			if ref.out {
				out = append(out, fs{ref.f.Name, psi, js})
			} else {
				in = append(in, fs{ref.f.Name, psi, js})
			}
		}
		score := 0.0
		for _, f := range in {
			score = max(score, f.psi)
		}
		h.score.Set(score)
		for _, g := range []struct {
			list          []fs
			psi, js, name string
		}{{in, "coalesce_drift_psi", "coalesce_drift_js_distance", "feature"}, {out, "coalesce_drift_prediction_psi", "coalesce_drift_prediction_js_distance", "output"}} {
			slices.SortFunc(g.list, func(a, b fs) int { return cmpDesc(a.psi, b.psi) })
			for _, f := range g.list[:min(len(g.list), h.cfg.MaxFeatures)] {
				l := `{` + h.labels + `,` + g.name + `="` + f.name + `"}`
				want[g.psi+l] = f.psi
				want[g.js+l] = f.js
			}
		}
	}
	if h.fbName != "" {
		n, m := h.win.feedback()
		h.fbSamples.Set(float64(n))
		if n > 0 {
			want[h.fbName] = m
		}
	}
	for name := range h.exported {
		if _, ok := want[name]; !ok {
			h.set.UnregisterMetric(name)
			delete(h.exported, name)
		}
	}
	for name, v := range want {
		h.set.GetOrCreateGauge(name, nil).Set(v)
		h.exported[name] = struct{}{}
	}
}

func cmpDesc(a, b float64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// Close stops the aggregator and removes the handle's metrics. Samples
// offered afterwards are dropped. A second call does nothing.
func (h *Handle) Close() {
	if h == nil {
		return
	}
	h.closeOnce.Do(func() {
		close(h.done)
		<-h.stopped
		h.mu.Lock()
		defer h.mu.Unlock()
		for name := range h.exported {
			h.set.UnregisterMetric(name)
		}
		for _, name := range h.static {
			h.set.UnregisterMetric(name)
		}
	})
}
