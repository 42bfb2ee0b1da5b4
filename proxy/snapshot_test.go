package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/goleak"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/internal/fakemodel"
	"github.com/coalesce-ml/coalesce/tensor"
)

// reload returns a new load of model version v of the fake model double:
// a new backend (holding each batch for delay) under the same name and
// version, as a reload of a changed file would give.
func reload(v *backends.ModelVersion, version string, delay time.Duration) *backends.ModelVersion {
	b := fakemodel.Models["double"]()
	b.Delay.Store(int64(delay))
	return &backends.ModelVersion{Name: v.Name, Version: version, Path: v.Path, Config: v.Config, Backend: b, Meta: b.Metadata()}
}

func seriesNames(set *metrics.Set, substr string) []string {
	var out []string
	for _, n := range set.ListMetricNames() {
		if strings.Contains(n, substr) {
			out = append(out, n)
		}
	}
	return out
}

// TestSwapUnderLoad replaces, adds and retires versions of a model while
// 64 clients call it through every protocol: no request fails, retired
// versions' metrics disappear and come back with the version, and no
// goroutine outlives the server.
func TestSwapUnderLoad(t *testing.T) {
	// Registered first, so it runs after testServer's cleanup closed the
	// server: every batcher, retired or not, must have stopped.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		goleak.VerifyNone(t, ignore,
			// fasthttp's own timers, which outlive servers and clients.
			goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
			goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
			goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"))
	})
	// A deadline long enough that the race detector's slowness does not
	// shed requests: this test is about swaps, not overload.
	s, c, set := testServerWith(t, patientConfig())
	v2 := s.snap.Load().reg.Versions("double")[1]

	const clients, perClient = 64, 40
	var failed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for g := range clients {
		wg.Go(func() {
			for i := range perClient {
				path, body, headers, want := concurrentCase(g, i)
				if !strings.Contains(path, "double") && path != "/predict" {
					continue // only the model being swapped
				}
				r, err := doErr(c, "POST", path, body, headers...)
				// Version 3, when served, answers unversioned calls.
				r.body = strings.Replace(r.body, `"model_version":"3"`, `"model_version":"2"`, 1)
				if err == nil && (r.status != 200 || r.body != want) {
					err = fmt.Errorf("POST %s = %d %s; want 200 %s", path, r.status, r.body, want)
				}
				if err != nil && failed.Add(1) <= 10 {
					errs <- err
				}
			}
		})
	}
	swaps := 0
	for i := 0; ; i++ {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		default:
		}
		select {
		case <-done:
		case <-time.After(2 * time.Millisecond):
			// Replace version 2 by a new load of it, alternately add and
			// retire a version 3 (which takes the unversioned requests).
			reg := s.snap.Load().reg.With(reload(v2, "2", time.Duration(i%3)*time.Millisecond))
			if i%2 == 0 {
				reg = reg.With(reload(v2, "3", time.Millisecond))
			} else {
				reg = reg.Without("double", "3")
			}
			must(t, s.Update(reg))
			swaps++
			continue
		}
		break
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d requests failed across %d swaps; want 0", n, swaps)
	}
	t.Logf("%d swaps under %d clients, 0 failed", swaps, clients)
	if swaps < 2 {
		t.Fatalf("only %d swaps happened during the load; want several", swaps)
	}

	// Version 3 ends retired or served; its series follow it.
	s.retiring.Wait()
	_, err := s.snap.Load().reg.Get("double", "3")
	got := len(seriesNames(set, `model="double",version="3"`))
	if served := err == nil; served != (got > 0) {
		t.Errorf("version 3 served = %v but it has %d series; want series exactly while served", served, got)
	}
	must(t, s.Update(s.snap.Load().reg.Without("double", "3")))
	s.retiring.Wait()
	if got := seriesNames(set, `version="3"`); len(got) > 0 {
		t.Errorf("after retiring version 3, its series remain: %v", got)
	}
	must(t, s.Update(s.snap.Load().reg.With(reload(v2, "3", 0))))
	if len(seriesNames(set, `coalesce_batch_size{model="double",version="3"}`)) != 1 {
		t.Errorf("version 3 added again has no coalesce_batch_size series")
	}
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	checkPromText(t, buf.String())
}

// TestRetiredBatcherMovesTheRequest: a request decoded for a version that
// was retired before it reached the batcher (ErrClosed) runs once on the
// version that replaced it; if it asked for a version that is gone, it is
// answered 503, never run on another version.
func TestRetiredBatcherMovesTheRequest(t *testing.T) {
	s, _, _ := testServer(t)
	sn := s.snap.Load()
	old, err := sn.get("double", "2")
	must(t, err)
	v2 := old.ModelVersion
	must(t, s.Update(sn.reg.With(reload(v2, "2", 0))))
	s.retiring.Wait() // old's batcher is closed now
	in := tensor.New("x", tensor.FP32, []int64{1, 4})
	copy(in.Float32s(), []float32{1, 2, 3, 4})

	out, ran, err := s.infer(time.Now(), old, false, []*tensor.Tensor{in}, hints{})
	if err != nil || out[1].Int64s()[0] != 3 {
		t.Fatalf("infer on a retired entry = %v, %v; want it moved to the new load of version 2", out, err)
	}
	if next, _ := s.snap.Load().get("double", "2"); ran != next || ran.req.latency[0] != old.req.latency[0] {
		// The request counts under the version that answered it, whose
		// series the new load of version 2 shares with the old.
		t.Errorf("infer on a retired entry ran on %p; want the new load %p, with the same request series", ran, next)
	}
	must(t, s.Update(s.snap.Load().reg.Without("double", "2")))
	s.retiring.Wait()
	cur, err := s.snap.Load().get("double", "1")
	must(t, err)
	if _, _, err := s.infer(time.Now(), old, true, []*tensor.Tensor{in}, hints{}); StatusOf(err) != 503 {
		t.Errorf("infer asking for retired version 2 = %v (status %d); want 503", err, StatusOf(err))
	}
	if out, _, err := s.infer(time.Now(), old, false, []*tensor.Tensor{in}, hints{}); err != nil || cur == nil || out[1].Int64s()[0] != 3 {
		t.Errorf("unversioned infer after version 2 retired = %v, %v; want version 1's answer", out, err)
	}
}

// TestUpdateAfterCloseFails: a closed server takes no new versions, and
// Close twice is harmless.
func TestUpdateAfterCloseFails(t *testing.T) {
	reg := fakemodel.Registry(t)
	s, err := New(testConfig(), "test", reg, metrics.NewSet(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	must(t, err)
	must(t, s.Close(context.Background()))
	must(t, s.Close(context.Background()))
	if err := s.Update(reg); err == nil {
		t.Error("Update after Close succeeded; want an error")
	}
}

// TestReaddedVersionKeepsItsSeries: a version retired while a request
// holds its batcher, and added again before that retirement finishes,
// shares the retiring one's series (GetOrCreate); the retirement must not
// remove them from under the new load.
func TestReaddedVersionKeepsItsSeries(t *testing.T) {
	s, c, set := testServerWith(t, patientConfig())
	v2 := s.snap.Load().reg.Versions("double")[1]
	must(t, s.Update(s.snap.Load().reg.With(reload(v2, "3", 300*time.Millisecond))))
	held := make(chan result, 1)
	go func() {
		r, _ := doErr(c, "POST", "/v2/models/double/versions/3/infer", []byte(`{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`))
		held <- r
	}()
	// Wait until the request is in the backend, so that the retirement
	// below has to drain it.
	for deadline := time.Now().Add(5 * time.Second); ; {
		e, _ := s.snap.Load().get("double", "3")
		if e.Backend.(*fakemodel.Backend).Calls.Load() > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	must(t, s.Update(s.snap.Load().reg.Without("double", "3")))
	must(t, s.Update(s.snap.Load().reg.With(reload(v2, "3", 0))))
	if r := <-held; r.status != 200 {
		t.Errorf("request held across the retirement = %d %s; want 200", r.status, r.body)
	}
	s.retiring.Wait()
	if got := seriesNames(set, `coalesce_batch_size{model="double",version="3"}`); len(got) != 1 {
		t.Errorf("version 3, served again, has %d coalesce_batch_size series after its predecessor retired; want 1", len(got))
	}
	if got := seriesNames(set, `coalesce_request_duration_seconds{model="double",version="3",protocol="v2"}`); len(got) != 1 {
		t.Errorf("version 3, served again, has %d request duration series after its predecessor retired; want 1", len(got))
	}
}

// TestOnRetired: the OnRetired listener hears of a version once, when the
// last of its retiring loads has drained (not when an earlier one of two
// has), sees Retiring false then, and may call it: the server's lock is
// not held.
func TestOnRetired(t *testing.T) {
	s, c, set := testServerWith(t, patientConfig())
	v2 := s.snap.Load().reg.Versions("double")[1]
	type notice struct {
		name, version string
		retiring      bool
	}
	notices := make(chan notice, 4)
	s.OnRetired(func(name, version string) { notices <- notice{name, version, s.Retiring(name, version)} })
	retired := func() int { // the retiring loads of version 3
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.retired[versionKey("double", "3")]
	}

	// A load of version 3 whose backend holds one request until gate is
	// closed.
	gate := make(chan struct{})
	held := reload(v2, "3", 0)
	b := held.Backend.(*fakemodel.Backend)
	run := b.Run
	b.Run = func(ctx context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
		<-gate
		return run(ctx, in)
	}
	must(t, s.Update(s.snap.Load().reg.With(held)))
	// One request in the backend (concurrency 1) and one queued behind
	// it, which the retirement must drain.
	answered := make(chan result, 2)
	for range 2 {
		go func() {
			r, _ := doErr(c, "POST", "/v2/models/double/versions/3/infer", []byte(`{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`))
			answered <- r
		}()
	}
	queued := set.GetOrCreateGauge(`coalesce_queue_requests{model="double",version="3"}`, nil)
	for b.Calls.Load() == 0 || queued.Get() != 1 {
		time.Sleep(time.Millisecond)
	}

	// Retire it, add a second load of version 3 and retire that one too:
	// the second drains at once, the first is held.
	must(t, s.Update(s.snap.Load().reg.Without("double", "3")))
	must(t, s.Update(s.snap.Load().reg.With(reload(v2, "3", 0))))
	must(t, s.Update(s.snap.Load().reg.Without("double", "3")))
	for retired() != 1 {
		time.Sleep(time.Millisecond)
	}
	select {
	case n := <-notices:
		t.Fatalf("notice %+v while a load of version 3 still drains; want none", n)
	default:
	}
	if !s.Retiring("double", "3") {
		t.Error(`Retiring("double", "3") = false while a load drains; want true`)
	}

	close(gate)
	for range 2 {
		if r := <-answered; r.status != 200 {
			t.Errorf("request held across the retirements = %d %s; want 200", r.status, r.body)
		}
	}
	s.retiring.Wait()
	close(notices)
	var got []notice
	for n := range notices {
		got = append(got, n)
	}
	if want := []notice{{"double", "3", false}}; !slices.Equal(got, want) {
		t.Errorf("notices = %+v; want %+v", got, want)
	}
}
