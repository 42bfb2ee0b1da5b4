package proxy

import (
	"context"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/VictoriaMetrics/metrics"
	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/internal/fakemodel"
	"github.com/coalesce-ml/coalesce/tensor"
	"github.com/valyala/fasthttp"
)

// TestCanarySplit: 100,000 deterministic draws at weight 0.05 send
// 5 % ± 1 % to the canary, per request or sticky by key; a sticky key
// always lands on the same side.
func TestCanarySplit(t *testing.T) {
	const n = 100_000
	c := &canary{}
	c.weight.Store(math.Float64bits(0.05))
	perRequest, sticky := 0, 0
	for i := range n {
		if c.pick(nil) {
			perRequest++
		}
		key := []byte("user-" + strconv.Itoa(i))
		side := c.pick(key)
		if side {
			sticky++
		}
		if i%1000 == 0 && c.pick(key) != side {
			t.Fatalf("key %s changed sides", key)
		}
	}
	for name, got := range map[string]int{"per request": perRequest, "sticky": sticky} {
		share := float64(got) / n
		t.Logf("%s: %d of %d draws to the canary (%.4f)", name, got, n, share)
		if math.Abs(share-0.05) > 0.01 {
			t.Errorf("%s split sent %.4f to the canary; want 0.05 ± 0.01", name, share)
		}
	}
	c.weight.Store(0)
	for range 1000 {
		if c.pick(nil) {
			t.Fatal("weight 0 picked the canary")
		}
	}
}

// withVersion2 returns the fake registry with double version 2 replaced by
// a load of b configured by edit.
func withVersion2(t testing.TB, b *fakemodel.Backend, edit func(*config.ModelConfig)) *backends.Registry {
	reg := fakemodel.Registry(t)
	v2, err := reg.Get("double", "2")
	must(t, err)
	cfg := v2.Config
	edit(&cfg)
	v2.Backend.Close()
	return reg.With(&backends.ModelVersion{Name: "double", Version: "2", Path: v2.Path, Config: cfg, Backend: b, Meta: b.Metadata()})
}

// TestCanaryRollbackOnErrors: a canary that fails every request loses
// its weight once a window holds min_requests with an error ratio above
// max_error_ratio; from then on every unpinned request goes to the
// primary.
func TestCanaryRollbackOnErrors(t *testing.T) {
	bad := fakemodel.Models["double"]()
	bad.Run = func(context.Context, []*tensor.Tensor) ([]*tensor.Tensor, error) {
		return nil, errors.New("injected failure")
	}
	s, c, set := testServerWith(t, patientConfig())
	must(t, s.Update(withVersion2(t, bad, func(m *config.ModelConfig) {
		m.Canary = config.Canary{Version: "2", Weight: 0.5, Rollback: config.Rollback{Window: time.Hour, MinRequests: 10, MaxErrorRatio: 0.5}}
	})))
	body := []byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}`)
	failed, lastFailure := 0, -1
	for i := range 200 {
		r := do(t, c, "POST", "/v2/models/double/infer", body)
		switch {
		case r.status == 200 && strings.Contains(r.body, `"model_version":"1"`):
		case r.status >= 500:
			failed++
			lastFailure = i
		default:
			t.Fatalf("request %d = %d %s", i, r.status, r.body)
		}
	}
	if failed < 10 || lastFailure > 100 {
		t.Errorf("%d canary failures, the last at request %d; want the rollback after about 10 of them", failed, lastFailure)
	}
	var sb strings.Builder
	set.WritePrometheus(&sb)
	for _, want := range []string{`coalesce_canary_weight{model="double",version="2"} 0`, `coalesce_canary_rollbacks_total{model="double",version="2"} 1`} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// A pinned request still reaches the canary version.
	if r := do(t, c, "POST", "/v2/models/double/versions/2/infer", body); r.status != 500 {
		t.Errorf("pinned request to version 2 = %d; want its 500", r.status)
	}
	// The request series tell the canary's failures from the primary's
	// answers (the version label is the version that answered).
	for name, want := range map[string]string{
		`coalesce_requests_total{model="double",version="2",protocol="v2",code="500"}`: strconv.Itoa(failed + 1),
		`coalesce_requests_total{model="double",version="1",protocol="v2",code="200"}`: strconv.Itoa(200 - failed),
	} {
		if got := metricValue(t, set, name); got != want {
			t.Errorf("%s = %s; want %s", name, got, want)
		}
	}
}

// TestShadowNeverBlocks: while the shadow is stuck, every primary request
// is answered and copies beyond the queue are dropped; once it runs, its
// answers are compared (the same model: every row agrees) and, being the
// canary's version, a disagreeing shadow rolls the canary back.
func TestShadowNeverBlocks(t *testing.T) {
	// Registered first, so it runs after the server closed: the shadow
	// workers must have ended.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		goleak.VerifyNone(t, ignore,
			goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
			goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
			goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"))
	})
	release := make(chan struct{})
	shadowB := fakemodel.Models["double"]()
	run := shadowB.Run
	shadowB.Run = func(ctx context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
		<-release
		return run(ctx, in)
	}
	s, c, set := testServerWith(t, patientConfig())
	must(t, s.Update(withVersion2(t, shadowB, func(m *config.ModelConfig) {
		m.Shadow = config.Shadow{Version: "2", Share: 1, Queue: 4}
	})))
	body := []byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}`)
	const n = 50
	for i := range n {
		if r := do(t, c, "POST", "/v2/models/double/versions/1/infer", body); r.status != 200 {
			t.Fatalf("primary request %d = %d %s while the shadow is stuck; want 200", i, r.status, r.body)
		}
	}
	metric := func(name string) float64 {
		var sb strings.Builder
		set.WritePrometheus(&sb)
		for _, line := range strings.Split(sb.String(), "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		return -1
	}
	// At most the queue (4) plus the batch the worker holds (up to
	// max_batch_size 8 copies) got in.
	if d := metric(`coalesce_shadow_dropped_total{model="double",version="2"}`); d < n-12 {
		t.Errorf("dropped %v copies of %d with the shadow stuck and a queue of 4; want at least %d", d, n, n-12)
	}
	close(release)
	// Every copy is either dropped or compared (one row each); the rows
	// counter moves before the agreeing one, so both are read once all
	// copies are accounted for.
	var rows, agreed float64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		dropped := metric(`coalesce_shadow_dropped_total{model="double",version="2"}`)
		rows, agreed = metric(`coalesce_shadow_rows_total{model="double",version="2"}`), metric(`coalesce_shadow_agreeing_rows_total{model="double",version="2"}`)
		if rows+dropped == n && agreed == rows || time.Now().After(deadline) {
			if rows+dropped != n {
				t.Fatalf("after 10s: %v copies compared and %v dropped; want %d in all", rows, dropped, n)
			}
			break
		}
	}
	if rows != agreed {
		t.Errorf("shadow of the same model: %v rows, %v agreeing; want all", rows, agreed)
	}

	// A disagreeing shadow that is also the canary rolls it back.
	wrong := fakemodel.Models["double"]()
	wrongRun := wrong.Run
	wrong.Run = func(ctx context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
		out, err := wrongRun(ctx, in)
		if err == nil {
			for i := range out[1].Int64s() {
				out[1].Int64s()[i] = 9 // another class
			}
		}
		return out, err
	}
	must(t, s.Update(withVersion2(t, wrong, func(m *config.ModelConfig) {
		m.Shadow = config.Shadow{Version: "2", Share: 1, Queue: 64}
		m.Canary = config.Canary{Version: "2", Weight: 0.01, Rollback: config.Rollback{MinRequests: 5, MinAgreement: 0.9}}
	})))
	for i := 0; metric(`coalesce_canary_rollbacks_total{model="double",version="2"}`) < 1; i++ {
		if r := do(t, c, "POST", "/v2/models/double/versions/1/infer", body); r.status != 200 {
			t.Fatalf("request %d = %d %s", i, r.status, r.body)
		}
		if i > 10_000 {
			t.Fatal("no rollback after 10,000 requests with a disagreeing shadow")
		}
	}
	if w := metric(`coalesce_canary_weight{model="double",version="2"}`); w != 0 {
		t.Errorf("canary weight after an agreement rollback = %v; want 0", w)
	}
}

// TestShadowCompare: rows agree when their integer and string outputs are
// equal and their float rows have the same argmax; the float difference
// is the largest over all elements; merged copies compare as one batch.
func TestShadowCompare(t *testing.T) {
	b := fakemodel.Models["double"]()
	target := &entry{ModelVersion: &backends.ModelVersion{Name: "double", Version: "2", Backend: b, Meta: b.Metadata()}}
	y := func(v ...float32) *tensor.Tensor { return tensor.FromFloat32s("y", []int64{int64(len(v) / 4), 4}, v) }
	cls := func(v ...int64) *tensor.Tensor { return tensor.FromInt64s("cls", []int64{int64(len(v))}, v) }
	outputs := []backends.TensorSpec{{Name: "y"}, {Name: "cls"}}
	f := func(primary, shadow []*tensor.Tensor, wantRows, wantAgreed int, wantDiff float64) {
		t.Helper()
		rows, agreed, diff := compare(new([]bool), outputs, primary, target, shadow)
		if rows != wantRows || agreed != wantAgreed || math.Abs(diff-wantDiff) > 1e-6 {
			t.Errorf("compare = %d rows, %d agreed, diff %v; want %d, %d, %v", rows, agreed, diff, wantRows, wantAgreed, wantDiff)
		}
	}
	f([]*tensor.Tensor{y(1, 2, 3, 4), cls(3)}, []*tensor.Tensor{y(1, 2, 3, 4), cls(3)}, 1, 1, 0)
	f([]*tensor.Tensor{y(1, 2, 3, 4), cls(3)}, []*tensor.Tensor{y(1, 2, 3, 4.5), cls(2)}, 1, 0, 0.5)
	f([]*tensor.Tensor{y(1, 2, 3, 4, 4, 3, 2, 1), cls(3, 0)}, []*tensor.Tensor{y(1, 2, 3, 4, 1, 3, 2, 1.25), cls(3, 0)}, 2, 1, 3)

	in := y(1, 2, 3, 4)
	a := copyJob(target, outputs, []*tensor.Tensor{in}, []*tensor.Tensor{y(2, 4, 6, 8), cls(3)})
	in.Float32s()[0] = 7 // the request's memory is reused once it is answered
	c := copyJob(target, outputs, []*tensor.Tensor{y(4, 3, 2, 1)}, []*tensor.Tensor{y(8, 6, 4, 2), cls(0)})
	if got := a.inputs[0].Float32s(); !slices.Equal(got, []float32{1, 2, 3, 4}) || a.primary[1].Int64s()[0] != 3 {
		t.Errorf("copy of the inputs = %v, class %d; want [1 2 3 4], 3 (a copy)", got, a.primary[1].Int64s()[0])
	}
	var m shadowJob
	if ok := merge(&m, []*shadowJob{a, c}); !ok || m.rows() != 2 || m.primary[1].Int64s()[1] != 0 || m.inputs[0].Float32s()[4] != 4 {
		t.Fatalf("merge = %+v, %v; want 2 rows", m, ok)
	}
	wide := copyJob(target, outputs, []*tensor.Tensor{tensor.FromFloat32s("x", []int64{1, 2}, []float32{1, 2})}, []*tensor.Tensor{y(2, 4, 6, 8), cls(3)})
	if merge(&m, []*shadowJob{a, wide}) {
		t.Errorf("merge of inputs [1 4] and [1 2] = true; want false")
	}
	a.release()
	c.release()
	wide.release()

	// String outputs agree element by element.
	sb := fakemodel.Models["strs"]()
	strs := &entry{ModelVersion: &backends.ModelVersion{Name: "strs", Version: "2", Backend: sb, Meta: sb.Metadata()}}
	label := func(v ...string) []*tensor.Tensor {
		return []*tensor.Tensor{tensor.FromStrings("label", []int64{int64(len(v))}, v)}
	}
	for _, tt := range []struct {
		primary, shadow []*tensor.Tensor
		agreed          int
	}{
		{label("a+b", "c+d"), label("a+b", "c+d"), 2},
		{label("a+b", "c+d"), label("a+b", "c+e"), 1},
		{label("a+b", "c+d"), label("a+", "bc+d"), 0},
	} {
		if rows, agreed, _ := compare(new([]bool), []backends.TensorSpec{{Name: "label"}}, tt.primary, strs, append([]*tensor.Tensor{nil}, tt.shadow...)); rows != 2 || agreed != tt.agreed {
			t.Errorf("compare(%q, %q) = %d rows, %d agreed; want 2, %d", tt.primary[0].Strings(), tt.shadow[0].Strings(), rows, agreed, tt.agreed)
		}
	}
}

// TestShadowRunAllocs: the worker's run of queued copies (merged, run on
// the shadow's batcher, compared) allocates nothing of its own once warm;
// the backend here reuses its outputs.
func TestShadowRunAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race; make test runs this without it (NORACE_TESTS)")
	}
	r, run := shadowWorker(t, 3)
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Errorf("a shadow run of 3 copies allocates %.0f times; want 0", n)
	}
	if rows, agreed := r.sh.rows.Get(), r.sh.agreeing.Get(); rows != 303 || agreed != rows {
		t.Errorf("after 101 runs of 3 copies: %d rows compared, %d agreeing; want 303, 303", rows, agreed)
	}
}

// TestShadowCopyAllocs: taking a request's copy for the shadow and
// returning it allocates nothing once the pool holds one.
func TestShadowCopyAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race; make test runs this without it (NORACE_TESTS)")
	}
	b := fakemodel.Models["double"]()
	target := &entry{ModelVersion: &backends.ModelVersion{Name: "double", Version: "2", Backend: b, Meta: b.Metadata()}}
	in := []*tensor.Tensor{tensor.FromFloat32s("x", []int64{1, 4}, []float32{1, 2, 3, 4})}
	out := []*tensor.Tensor{tensor.FromFloat32s("y", []int64{1, 4}, []float32{2, 4, 6, 8}), tensor.FromInt64s("cls", []int64{1}, []int64{3})}
	if n := testing.AllocsPerRun(100, func() { copyJob(target, target.Meta.Outputs, in, out).release() }); n != 0 {
		t.Errorf("a shadow copy allocates %.0f times; want 0", n)
	}
}

// TestShadowWorkerSchedule: the request path never wakes the shadow's
// worker for a copy, except the copy that fills 3/4 of the queue; otherwise
// the worker takes the queued copies on its own clock, every
// shadow.interval.
func TestShadowWorkerSchedule(t *testing.T) {
	s, c, set := testServerWith(t, patientConfig())

	// An hour's interval: five copies in a queue of 8 stay queued...
	must(t, s.Update(withVersion2(t, fakemodel.Models["double"](), func(m *config.ModelConfig) {
		m.Shadow = config.Shadow{Version: "2", Share: 1, Queue: 8, Interval: time.Hour}
	})))
	sendDouble(t, c, 5)
	time.Sleep(50 * time.Millisecond)
	if got := metricValue(t, set, shadowRowsName); got != "0" {
		t.Fatalf("%s = %s after 5 copies into a queue of 8 with an hour's interval; want 0: a copy below 3/4 of the queue must not wake the worker", shadowRowsName, got)
	}
	// ...and the sixth, 3/4 of the queue, wakes the worker for all six.
	sendDouble(t, c, 1)
	waitShadowRows(t, set, "6")

	// A short interval: one copy is compared on the worker's clock. The
	// new configuration starts a new worker for the same version, which
	// goes on counting in the same series: the old worker, stopping, must
	// not remove them.
	must(t, s.Update(withVersion2(t, fakemodel.Models["double"](), func(m *config.ModelConfig) {
		m.Shadow = config.Shadow{Version: "2", Share: 1, Queue: 64, Interval: 5 * time.Millisecond}
	})))
	time.Sleep(20 * time.Millisecond) // the old worker has stopped
	sendDouble(t, c, 1)
	waitShadowRows(t, set, "7")
}

func TestShadowWaitBacksOff(t *testing.T) {
	wait := shadowWait(10 * time.Millisecond)
	var got []time.Duration
	for _, busy := range []bool{true, false, false, false, false, false, true, false} {
		got = append(got, wait(busy))
	}
	want := []time.Duration{10, 20, 40, 80, 80, 80, 10, 20}
	for i := range want {
		want[i] *= time.Millisecond
	}
	if !slices.Equal(got, want) {
		t.Errorf("waits %v; want %v (doubling while idle up to 8 intervals, back to 1 after copies)", got, want)
	}
}

// TestShadowTakesIdleMoments: the shadow's runs have at most
// shadowSliceRows rows whatever its max_batch_size, and none starts while
// a request is being handled, until the look's interval has passed.
func TestShadowTakesIdleMoments(t *testing.T) {
	s, c, set := testServerWith(t, patientConfig())
	b, rowsOf := rowsRecordingDouble(nil)
	must(t, s.Update(withVersion2(t, b, func(m *config.ModelConfig) {
		m.MaxBatchSize = 64
		m.Shadow = config.Shadow{Version: "2", Share: 1, Queue: 32, Interval: time.Hour}
	})))

	// A request in flight from here on (as if being handled): the 24
	// copies that fill 3/4 of the queue wake the worker, whose runs wait
	// for the server to be idle (an hour, its interval, at most).
	s.inflight.Add(1)
	sendDouble(t, c, 24)
	time.Sleep(100 * time.Millisecond)
	if got := metricValue(t, set, shadowRowsName); got != "0" {
		t.Fatalf("%s = %s while a request was in flight; want 0: the shadow runs in idle moments", shadowRowsName, got)
	}
	s.inflight.Add(-1)
	waitShadowRows(t, set, "24")
	calls := rowsOf()
	sum := 0
	for _, n := range calls {
		if n > shadowSliceRows {
			t.Errorf("a shadow run of %d rows; want at most %d (shadowSliceRows) with max_batch_size 64", n, shadowSliceRows)
		}
		sum += n
	}
	if sum != 24 || len(calls) != 24/shadowSliceRows {
		t.Errorf("shadow runs %v; want %d runs of %d rows (24 one-row copies)", calls, 24/shadowSliceRows, shadowSliceRows)
	}
}

// TestAwaitIdle: the worker's wait for an idle moment ends when no
// request is in flight, at the look's deadline, or when the shadow stops.
func TestAwaitIdle(t *testing.T) {
	s := &Server{}
	sh := &shadow{quit: make(chan struct{})}
	start := time.Now()
	s.awaitIdle(sh, start.Add(time.Hour)) // idle: at once
	s.inflight.Add(1)
	start = time.Now()
	s.awaitIdle(sh, start.Add(30*time.Millisecond))
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("awaitIdle with a request in flight returned after %v; want its deadline, 30ms", d)
	}
	done := make(chan struct{})
	go func() {
		s.awaitIdle(sh, time.Now().Add(time.Hour))
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("awaitIdle returned with a request in flight, before its deadline")
	case <-time.After(50 * time.Millisecond):
	}
	s.inflight.Add(-1)
	<-done // the server is idle: it returns (the test's timeout otherwise)
	s.inflight.Add(1)
	sh.stop()
	s.awaitIdle(sh, time.Now().Add(time.Hour)) // stopped: at once
}

// TestShadowSlowRunsFullBatches: a shadow whose runs took half an
// interval or more runs its next look's copies as one batch (up to
// max_batch_size rows), not in slices, and slices again once its runs are
// short.
func TestShadowSlowRunsFullBatches(t *testing.T) {
	s, c, set := testServerWith(t, patientConfig())
	gate := make(chan struct{})
	b, rowsOf := rowsRecordingDouble(gate)
	must(t, s.Update(withVersion2(t, b, func(m *config.ModelConfig) {
		m.MaxBatchSize = 64
		m.Shadow = config.Shadow{Version: "2", Share: 1, Queue: 64, Interval: 20 * time.Millisecond}
	})))
	sendDouble(t, c, 1)
	for deadline := time.Now().Add(10 * time.Second); len(rowsOf()) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the shadow's first run did not start within 10s")
		}
	}
	sendDouble(t, c, 24) // queued while the first run is held
	time.Sleep(50 * time.Millisecond)
	close(gate) // the first run took 50ms or more: over half the interval
	waitShadowRows(t, set, "25")
	sendDouble(t, c, 16)
	waitShadowRows(t, set, "41")
	calls := rowsOf()
	if len(calls) < 3 || calls[0] != 1 || calls[1] != 24 {
		t.Fatalf("shadow runs %v; want 1 row, then the 24 copies queued meanwhile as one run (the first run was slow), then slices", calls)
	}
	for _, n := range calls[2:] {
		if n > shadowSliceRows {
			t.Errorf("shadow runs %v: a run of %d rows after a fast one; want at most %d (shadowSliceRows)", calls, n, shadowSliceRows)
		}
	}
}

// sendDouble sends n one-row V2 requests to double version 1, each to be
// answered 200.
func sendDouble(t *testing.T, c *fasthttp.HostClient, n int) {
	t.Helper()
	body := []byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}`)
	for i := range n {
		if r := do(t, c, "POST", "/v2/models/double/versions/1/infer", body); r.status != 200 {
			t.Fatalf("request %d = %d %s; want 200", i, r.status, r.body)
		}
	}
}

const shadowRowsName = `coalesce_shadow_rows_total{model="double",version="2"}`

// waitShadowRows waits up to 10s for double's shadow (version 2) to have
// compared want rows.
func waitShadowRows(t *testing.T, set *metrics.Set, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); metricValue(t, set, shadowRowsName) != want; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %s = %s; want %s", shadowRowsName, metricValue(t, set, shadowRowsName), want)
		}
	}
}

// rowsRecordingDouble is fakemodel's double with a max_batch_size of 64,
// recording the rows of each call (rowsOf returns a copy); when gate is
// not nil, its first call waits for gate to close.
func rowsRecordingDouble(gate chan struct{}) (b *fakemodel.Backend, rowsOf func() []int) {
	b = fakemodel.Models["double"]()
	b.Meta.MaxBatchSize = 64
	run := b.Run
	var mu sync.Mutex
	var calls []int
	b.Run = func(ctx context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
		mu.Lock()
		calls = append(calls, in[0].BatchSize())
		first := len(calls) == 1
		mu.Unlock()
		if first && gate != nil {
			<-gate
		}
		return run(ctx, in)
	}
	return b, func() []int {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(calls)
	}
}
