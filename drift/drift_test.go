package drift

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/tensor"
)

// testModel has a numeric input x of 3 columns, a string input c and a
// class label output.
func testModel() *backends.ModelVersion {
	return &backends.ModelVersion{Name: "m", Version: "1", Meta: &backends.Metadata{
		Inputs: []backends.TensorSpec{
			{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 3}},
			{Name: "c", DType: tensor.Bytes, Shape: []int64{-1, 1}},
		},
		Outputs: []backends.TensorSpec{{Name: "label", DType: tensor.Int64, Shape: []int64{-1, 1}}},
	}}
}

var refCats = []string{"a", "a", "a", "a", "a", "b", "b", "b", "c", "c"} // 50/30/20 %

// testProfile builds the profile of n reference rows: x0..x2 ~ N(0,1),
// c from refCats, label = 0, 1 or 2 equally.
func testProfile(t testing.TB, n int) *Profile {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	cols := make([]Column, 3)
	for j := range cols {
		cols[j] = Column{Name: fmt.Sprintf("x%d", j), Tensor: "x", Column: j}
		for range n {
			cols[j].Values = append(cols[j].Values, rng.NormFloat64())
		}
	}
	cat := Column{Name: "c", Tensor: "c", Strings: []string{}}
	lab := Column{Name: "label", Tensor: "label", Categorical: true}
	for i := range n {
		cat.Strings = append(cat.Strings, refCats[i%len(refCats)])
		lab.Values = append(lab.Values, float64(i%3))
	}
	p := &Profile{Version: 1, Model: "m", Rows: int64(n)}
	for _, c := range append(cols, cat) {
		f, err := BuildFeature(c, 10, 20)
		if err != nil {
			t.Fatal(err)
		}
		p.Features = append(p.Features, f)
	}
	f, err := BuildFeature(lab, 10, 20)
	if err != nil {
		t.Fatal(err)
	}
	p.Outputs = []Feature{f}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return p
}

// request is one row: inputs x (3 values) and c, output label.
type request struct {
	x   *tensor.Tensor
	c   *tensor.Tensor
	out *tensor.Tensor
}

func newRequest() *request {
	return &request{
		x:   tensor.FromFloat32s("x", []int64{1, 3}, make([]float32, 3)),
		c:   tensor.FromStrings("c", []int64{1, 1}, []string{"a"}),
		out: tensor.FromInt64s("label", []int64{1, 1}, []int64{0}),
	}
}

func (r *request) set(x [3]float64, c string, label int64) {
	for j, v := range x {
		r.x.SetFloat64(j, v)
	}
	r.c.Data = tensor.AppendString(r.c.Data[:0], []byte(c))
	r.out.SetFloat64(0, float64(label))
}

func newHandle(t testing.TB, cfg Config, set *metrics.Set, feedback bool) *Handle {
	t.Helper()
	h, err := New(cfg, testProfile(t, 20000), testModel(), set, feedback)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// flush counts the samples in the ring, as the aggregator does.
func (h *Handle) flush() {
	h.mu.Lock()
	h.drain()
	h.mu.Unlock()
}

// traffic samples n one-row requests, x_j ~ N(shift_j, 1), c from cats,
// flushing every 4 so that the ring never drops one (Sample probes 8
// slots).
func traffic(h *Handle, n int, shift [3]float64, cats []string, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	r := newRequest()
	for i := range n {
		var x [3]float64
		for j := range x {
			x[j] = rng.NormFloat64() + shift[j]
		}
		r.set(x, cats[i%len(cats)], int64(i%3))
		h.Sample([]*tensor.Tensor{r.x, r.c}, []*tensor.Tensor{r.out}, nil)
		if i%4 == 3 {
			h.flush()
		}
	}
	h.flush()
}

func TestShiftedFeatureRankedFirst(t *testing.T) {
	h := newHandle(t, Config{SampleRate: 1, MinSamples: 1000}, metrics.NewSet(), false)
	traffic(h, 999, [3]float64{}, refCats, 3)
	if rep := h.Report(); rep.Features[0].Reported {
		t.Fatalf("reported after %d rows; want nothing before min_samples 1000", rep.Samples)
	}
	traffic(h, 4001, [3]float64{0, 1, 0}, refCats, 4) // x1 shifted by one sd
	rep := h.Report()
	if rep.Samples != 5000 || rep.Dropped != 0 {
		t.Fatalf("window_samples = %d, dropped %d; want 5000, 0", rep.Samples, rep.Dropped)
	}
	if f := rep.Features[0]; f.Name != "x1" || !f.Reported || f.PSI <= 0.25 {
		t.Fatalf("first feature = %s PSI %.3f (reported %v); want x1 with PSI > 0.25", f.Name, f.PSI, f.Reported)
	}
	for _, f := range rep.Features[1:] {
		if f.PSI >= 0.1 {
			t.Errorf("%s: PSI = %.3f; want < 0.1 (unshifted)", f.Name, f.PSI)
		}
	}
	if rep.Score != rep.Features[0].PSI {
		t.Errorf("score = %v; want the highest PSI %v", rep.Score, rep.Features[0].PSI)
	}
	if o := rep.Outputs[0]; o.PSI >= 0.1 {
		t.Errorf("prediction PSI = %.3f; want < 0.1 (labels unchanged)", o.PSI)
	}
}

func TestCategoricalShift(t *testing.T) {
	h := newHandle(t, Config{SampleRate: 1, MinSamples: 1000}, metrics.NewSet(), false)
	// a 20 %, b 30 %, c 20 %, unseen z 30 %
	traffic(h, 3000, [3]float64{}, []string{"a", "a", "b", "b", "b", "c", "c", "z", "z", "z"}, 5)
	rep := h.Report()
	f := rep.Features[0]
	if f.Name != "c" || f.PSI <= 0.25 {
		t.Fatalf("first feature = %s PSI %.3f; want c with PSI > 0.25", f.Name, f.PSI)
	}
	i := slices.IndexFunc(f.Bins, func(b BinReport) bool { return b.Bin == "other" })
	if i < 0 || math.Abs(f.Bins[i].Window-0.3) > 1e-9 || f.Bins[i].Reference != 0 {
		t.Errorf("bins = %+v; want other at 0.3 of the window, 0 of the reference", f.Bins)
	}
}

func TestHeapBoundedAfterMillionSamples(t *testing.T) {
	h := newHandle(t, Config{SampleRate: 1}, metrics.NewSet(), true)
	r := newRequest()
	in, out := []*tensor.Tensor{r.x, r.c}, []*tensor.Tensor{r.out}
	r.set([3]float64{1, 2, 3}, "b", 1)
	run := func(n int) {
		for i := range n {
			h.Sample(in, out, nil)
			if i%64 == 63 {
				h.flush()
			}
		}
	}
	run(1000) // warm up: the lazily created state
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	run(1_000_000)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 64<<10 {
		t.Errorf("heap grew by %d bytes after 10^6 samples; want at most 64 KiB", grew)
	}
	if rep := h.Report(); rep.Samples+rep.Dropped != 1_001_000 {
		t.Errorf("window_samples %d + dropped %d; want 1001000", rep.Samples, rep.Dropped)
	}
}

func TestSamplingNeverBlocks(t *testing.T) {
	h := newHandle(t, Config{SampleRate: 1, Slots: 16}, metrics.NewSet(), false)
	r := newRequest()
	h.mu.Lock() // stall the aggregator (and any Report)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 10000 {
			h.Sample([]*tensor.Tensor{r.x, r.c}, []*tensor.Tensor{r.out}, nil)
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Minute): // a hang, not a timing assertion
		t.Fatal("Sample blocked while the aggregator was stalled")
	}
	dropped := h.dropped.Get()
	h.mu.Unlock()
	rep := h.Report()
	if rep.Samples > 16 || rep.Samples+dropped != 10000 || rep.Sampled != rep.Samples {
		t.Fatalf("window_samples %d, sampled %d, dropped %d; want at most 16 (the ring) and 10000 in all", rep.Samples, rep.Sampled, dropped)
	}
}

func TestFeedbackJoinsByRequestID(t *testing.T) {
	h := newHandle(t, Config{SampleRate: 1, FeedbackEntries: 4}, metrics.NewSet(), true)
	r := newRequest()
	for i := range 6 { // r0 and r1 leave the table of 4
		r.set([3]float64{}, "a", int64(i%3))
		h.Sample([]*tensor.Tensor{r.x, r.c}, []*tensor.Tensor{r.out}, []byte(fmt.Sprintf("r%d", i)))
		h.flush()
	}
	f := func(id, truth string, want error) {
		t.Helper()
		if err := h.Feedback(id, truth); !errors.Is(err, want) {
			t.Errorf("Feedback(%q, %q) = %v; want %v", id, truth, err, want)
		}
	}
	f("r0", "0", ErrUnknownID)
	f("r1", "1", ErrUnknownID)
	f("r5", "2", nil) // predicted 5%3 = 2: right
	f("r5", "2", ErrDuplicate)
	f("r4", "0", nil) // predicted 1: wrong
	f("nope", "0", ErrUnknownID)
	if err := h.Feedback("r3", "x"); err == nil {
		t.Error(`Feedback("r3", "x") = nil; want an error for a non-number`)
	}
	fb := h.Report().Feedback
	if fb == nil || fb.Samples != 2 || fb.Value != 0.5 || fb.Metric != "accuracy" {
		t.Fatalf("feedback = %+v; want accuracy 0.5 over 2", fb)
	}
	if len(h.fb.m) > 4 {
		t.Errorf("table holds %d ids; want at most 4", len(h.fb.m))
	}
}

func TestWindowSlides(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	h := newHandle(t, Config{SampleRate: 1, Window: time.Minute, SubWindows: 6, Now: clock}, metrics.NewSet(), false)
	traffic(h, 100, [3]float64{}, refCats, 1)
	now = now.Add(30 * time.Second)
	traffic(h, 50, [3]float64{}, refCats, 2)
	if n := h.Report().Samples; n != 150 {
		t.Fatalf("window_samples = %d; want 150", n)
	}
	now = now.Add(40 * time.Second) // the first 100 expired
	if n := h.Report().Samples; n != 50 {
		t.Fatalf("window_samples = %d after 70s; want 50", n)
	}
	now = now.Add(time.Hour)
	if n := h.Report().Samples; n != 0 {
		t.Fatalf("window_samples = %d after an hour; want 0", n)
	}
}

func TestMetricsTopKAndClose(t *testing.T) {
	set := metrics.NewSet()
	h, err := New(Config{SampleRate: 1, MinSamples: 100, MaxFeatures: 2}, testProfile(t, 5000), testModel(), set, true)
	if err != nil {
		t.Fatal(err)
	}
	traffic(h, 2000, [3]float64{0, 0, 2}, refCats, 9)
	h.mu.Lock()
	h.publish()
	h.mu.Unlock()
	var sb strings.Builder
	set.WritePrometheus(&sb)
	got := sb.String()
	for _, want := range []string{
		`coalesce_drift_psi{model="m",version="1",feature="x2"}`,
		`coalesce_drift_prediction_psi{model="m",version="1",output="label"}`,
		`coalesce_drift_window_samples{model="m",version="1"} 2000`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("metrics lack %s:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "coalesce_drift_psi{"); n != 2 {
		t.Errorf("%d coalesce_drift_psi series; want 2 (max_features)", n)
	}
	h.Close()
	if names := set.ListMetricNames(); len(names) != 0 {
		t.Errorf("after Close: %v; want no series", names)
	}
}

func TestProfileValidate(t *testing.T) {
	f := func(js, want string) {
		t.Helper()
		_, err := ParseProfile([]byte(js))
		if (err == nil) != (want == "") || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("ParseProfile(%s) = %v; want %q", js, err, want)
		}
	}
	num := `{"name":"a","tensor":"x","column":0,"kind":"numeric","edges":[0,1],"ref":[0.25,0.25,0.5,0]}`
	f(`{"version":1,"features":[`+num+`]}`, "")
	f(`{"version":2,"features":[`+num+`]}`, "version 2")
	f(`{"version":1,"features":[]}`, "no features")
	f(`{"version":1,"features":[`+num+`,`+num+`]}`, "name used twice")
	f(`{"version":1,"features":[{"name":"a","tensor":"x","kind":"numeric","edges":[1,1],"ref":[0.5,0,0.5,0]}]}`, "strictly increasing")
	f(`{"version":1,"features":[{"name":"a","tensor":"x","kind":"numeric","edges":[1],"ref":[0.5,0.5]}]}`, "2 reference shares; want 3")
	f(`{"version":1,"features":[{"name":"a","tensor":"x","kind":"numeric","edges":[1],"ref":[0.5,0.4,0]}]}`, "sum to")
	f(`{"version":1,"features":[{"name":"a\"","tensor":"x","kind":"categorical","ref":[1,0]}]}`, "quote")
	f(`{"version":1,"features":[{"name":"a","tensor":"x","kind":"ordinal","ref":[1,0]}]}`, "kind")
	f(`{"version":1,"features":[`+num+`],"prediction":"y"}`, "not an output")
}

func TestNewRejectsProfileOfAnotherModel(t *testing.T) {
	p := testProfile(t, 100)
	p.Features[0].Tensor = "nope"
	if _, err := New(Config{}, p, testModel(), metrics.NewSet(), false); !errors.Is(err, ErrProfile) {
		t.Errorf("New(tensor nope) = %v; want ErrProfile", err)
	}
	p = testProfile(t, 100)
	p.Features[0].Column = 3
	if _, err := New(Config{}, p, testModel(), metrics.NewSet(), false); !errors.Is(err, ErrProfile) {
		t.Errorf("New(column 3 of 3) = %v; want ErrProfile", err)
	}
}

func TestStatistics(t *testing.T) {
	ref := []float64{0.5, 0.5}
	if got := PSI([]uint64{50, 50}, ref); got != 0 {
		t.Errorf("PSI(same) = %v; want 0", got)
	}
	// (0.9-0.5)ln(0.9/0.5) + (0.1-0.5)ln(0.1/0.5)
	if got, want := PSI([]uint64{90, 10}, ref), 0.4*math.Log(1.8)-0.4*math.Log(0.2); math.Abs(got-want) > 1e-12 {
		t.Errorf("PSI = %v; want %v", got, want)
	}
	if got, want := JSDistance([]uint64{100, 0}, []float64{0, 1}), math.Sqrt(math.Ln2); math.Abs(got-want) > 1e-12 {
		t.Errorf("JSDistance(disjoint) = %v; want sqrt(ln 2) = %v", got, want)
	}
	if !math.IsNaN(PSI([]uint64{0, 0}, ref)) || !math.IsNaN(JSDistance([]uint64{0, 0}, ref)) {
		t.Error("statistics of no samples are not NaN")
	}
}

func TestBuildFeatureQuantiles(t *testing.T) {
	vals := make([]float64, 100)
	for i := range vals {
		vals[i] = float64(i)
	}
	vals = append(vals, math.NaN())
	f, err := BuildFeature(Column{Name: "v", Tensor: "x", Values: vals}, 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.Edges, []float64{24, 49, 74}) {
		t.Errorf("edges = %v; want [24 49 74]", f.Edges)
	}
	if want := []float64{25.0 / 101, 25.0 / 101, 25.0 / 101, 25.0 / 101, 1.0 / 101}; !slices.Equal(f.Ref, want) {
		t.Errorf("ref = %v; want %v", f.Ref, want)
	}
	// Repeated values: fewer bins, never an empty edge.
	f, _ = BuildFeature(Column{Name: "z", Tensor: "x", Values: []float64{0, 0, 0, 0, 0, 0, 0, 0, 1, 2}}, 10, 0)
	if !slices.Equal(f.Edges, []float64{0, 1}) {
		t.Errorf("edges of mostly zeros = %v; want [0 1]", f.Edges)
	}
}

func TestSampleCopiesRowsAndValues(t *testing.T) {
	h := newHandle(t, Config{SampleRate: 1, MaxRows: 2}, metrics.NewSet(), false)
	x := tensor.FromFloat32s("x", []int64{3, 3}, []float32{-5, 0, 5, -5, 0, 5, 9, 9, 9})
	c := tensor.FromStrings("c", []int64{3, 1}, []string{"b", "", "z"})
	out := tensor.FromInt64s("label", []int64{3, 1}, []int64{2, 2, 0})
	h.Sample([]*tensor.Tensor{x, c}, []*tensor.Tensor{out}, nil)
	x.SetFloat64(0, 100) // the request's memory is reused: the sample must not see it
	rep := h.Report()
	if rep.Samples != 2 {
		t.Fatalf("window_samples = %d; want 2 (max_rows)", rep.Samples)
	}
	share := func(list []FeatureReport, name, bin string) float64 {
		for _, f := range list {
			for _, b := range f.Bins {
				if f.Name == name && b.Bin == bin {
					return b.Window
				}
			}
		}
		t.Fatalf("no bin %s of %s", bin, name)
		return 0
	}
	got := []float64{share(rep.Features, "x0", binLabel(&h.p.Features[0], 0)), share(rep.Features, "c", "b"), share(rep.Features, "c", "missing"), share(rep.Outputs, "label", "2")}
	if want := []float64{1, 0.5, 0.5, 1}; !slices.Equal(got, want) {
		t.Errorf("shares x0 lowest bin, c=b, c missing, label 2 = %v; want %v", got, want)
	}
}

func TestSamplingRate(t *testing.T) {
	h := newHandle(t, Config{SampleRate: 0.1}, metrics.NewSet(), false)
	n := 0
	for range 100000 {
		if h.Sampling() {
			n++
		}
	}
	if n < 9000 || n > 11000 { // 10 standard deviations
		t.Errorf("Sampling() true %d times in 100000; want about 10000", n)
	}
	var nilHandle *Handle
	if nilHandle.Sampling() {
		t.Error("a nil handle samples")
	}
	nilHandle.Close()
}

func TestCloseStopsTheAggregator(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 10 {
		h, err := New(Config{SampleRate: 1}, testProfile(t, 100), testModel(), metrics.NewSet(), false)
		if err != nil {
			t.Fatal(err)
		}
		h.Close()
		h.Close() // a second Close does nothing
		r := newRequest()
		h.Sample([]*tensor.Tensor{r.x, r.c}, []*tensor.Tensor{r.out}, nil) // after Close: kept or dropped, never blocking
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("%d goroutines after 10 handles closed; want at most %d", after, before)
	}
}

// TestConcurrentSampling: producers on every core, the aggregator and
// Report at once (run with -race): every offered sample is counted or
// dropped, none lost or counted twice.
func TestConcurrentSampling(t *testing.T) {
	h := newHandle(t, Config{SampleRate: 1, Slots: 64}, metrics.NewSet(), false)
	const goroutines, each = 8, 2000
	done := make(chan struct{})
	for range goroutines {
		go func() {
			defer func() { done <- struct{}{} }()
			r := newRequest()
			for range each {
				h.Sample([]*tensor.Tensor{r.x, r.c}, []*tensor.Tensor{r.out}, nil)
			}
		}()
	}
	for range goroutines {
		for {
			h.Report() // drains, as the aggregator does, concurrently with it
			select {
			case <-done:
			default:
				continue
			}
			break
		}
	}
	rep := h.Report()
	if rep.Samples+rep.Dropped != goroutines*each || rep.Sampled != rep.Samples {
		t.Errorf("window_samples %d + dropped %d = %d, sampled %d; want %d, sampled = window_samples",
			rep.Samples, rep.Dropped, rep.Samples+rep.Dropped, rep.Sampled, goroutines*each)
	}
}

// TestFeedbackRegression: a numeric prediction gets the mean absolute
// error of the joined truths.
func TestFeedbackRegression(t *testing.T) {
	m := &backends.ModelVersion{Name: "r", Version: "1", Meta: &backends.Metadata{
		Inputs:  []backends.TensorSpec{{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 1}}},
		Outputs: []backends.TensorSpec{{Name: "y", DType: tensor.FP64, Shape: []int64{-1}}},
	}}
	var p Profile
	p.Version = 1
	for _, c := range []Column{{Name: "x", Tensor: "x", Values: []float64{1, 2, 3}}, {Name: "y", Tensor: "y", Values: []float64{1, 2, 3}}} {
		f, err := BuildFeature(c, 2, 1)
		if err != nil {
			t.Fatal(err)
		}
		if c.Name == "x" {
			p.Features = append(p.Features, f)
		} else {
			p.Outputs = append(p.Outputs, f)
		}
	}
	h, err := New(Config{SampleRate: 1}, &p, m, metrics.NewSet(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for i, y := range []float64{10, 20} {
		x := tensor.FromFloat32s("x", []int64{1, 1}, []float32{1})
		out := tensor.New("y", tensor.FP64, []int64{1})
		out.SetFloat64(0, y)
		h.Sample([]*tensor.Tensor{x}, []*tensor.Tensor{out}, []byte{'a' + byte(i)})
	}
	for _, c := range []struct{ id, truth string }{{"a", "12"}, {"b", "19"}} {
		if err := h.Feedback(c.id, c.truth); err != nil {
			t.Fatalf("Feedback(%s) = %v", c.id, err)
		}
	}
	if fb := h.Report().Feedback; fb == nil || fb.Metric != "mean_absolute_error" || fb.Value != 1.5 || fb.Samples != 2 {
		t.Errorf("feedback = %+v; want mean_absolute_error 1.5 over 2", fb)
	}
}
