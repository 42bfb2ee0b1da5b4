package lifecycle_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/coalesce-ml/coalesce/lifecycle"
)

// stateSeries returns the coalesce_model_state samples of model name at
// version.
func (e *env) stateSeries(name, version string) []string {
	var sb strings.Builder
	e.set.WritePrometheus(&sb)
	prefix := `coalesce_model_state{model="` + name + `",version="` + version + `",`
	var out []string
	for _, line := range strings.Split(sb.String(), "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return out
}

// holdRequests serves double/1 from a "held" backend (with other/1
// beside it, so that unloading double leaves something to serve) and
// sends it two requests: one that the backend (concurrency 1) holds until
// e.fake.held is closed, and one queued behind it, which a retirement
// must drain. Their statuses arrive on the returned channel.
func holdRequests(t *testing.T) (*env, string, <-chan int) {
	dir := t.TempDir()
	writeVersion(t, dir, "double", "1", "held")
	writeVersion(t, dir, "other", "1", "double-other")
	e := newEnv(t, dir, "explicit")
	e.fake.held = make(chan struct{})
	answered := make(chan int, 2)
	for range 2 {
		go func() {
			code, _, _ := e.post(inferPath, `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}`)
			answered <- code
		}()
	}
	queued := e.set.GetOrCreateGauge(`coalesce_queue_requests{model="double",version="1"}`, nil)
	waitFor(func() bool { return e.fake.calls.Load() > 0 && queued.Get() == 1 })
	return e, dir, answered
}

// release lets the held requests of holdRequests go and checks their
// answers.
func release(t *testing.T, e *env, answered <-chan int) {
	t.Helper()
	close(e.fake.held)
	for range 2 {
		if code := <-answered; code != 200 {
			t.Errorf("a request held across the retirement = %d; want 200", code)
		}
	}
}

// TestStateGaugeWhileDraining: an unloaded version that a request still
// holds has one state series, UNLOADING, as in the index; once it has
// drained its series is gone and the index says UNAVAILABLE, unloaded.
func TestStateGaugeWhileDraining(t *testing.T) {
	e, _, answered := holdRequests(t)
	if got, want := e.stateSeries("double", "1"), []string{`coalesce_model_state{model="double",version="1",state="READY"} 1`}; !slices.Equal(got, want) {
		t.Errorf("served version 1: state series %q; want %q", got, want)
	}
	if code, body := e.adminPost("/v2/repository/models/double/unload", ""); code != 200 {
		t.Fatalf("unload = %d %s; want 200", code, body)
	}
	if got, want := e.stateSeries("double", "1"), []string{`coalesce_model_state{model="double",version="1",state="UNLOADING"} 1`}; !slices.Equal(got, want) {
		t.Errorf("version 1 unloaded while a request holds it: state series %q; want %q", got, want)
	}
	if st := e.status("double", "1"); st.State != lifecycle.Unloading {
		t.Errorf("version 1 unloaded while a request holds it = %+v; want UNLOADING", st)
	}

	release(t, e, answered)
	waitFor(func() bool { return len(e.stateSeries("double", "1")) == 0 })
	if st := e.status("double", "1"); st.State != lifecycle.Unavailable || st.Reason != "unloaded" {
		t.Errorf("version 1 after it drained = %+v; want UNAVAILABLE, unloaded", st)
	}
	if got, want := e.stateSeries("other", "1"), []string{`coalesce_model_state{model="other",version="1",state="READY"} 1`}; !slices.Equal(got, want) {
		t.Errorf("other/1: state series %q; want %q", got, want)
	}
}

// TestStateGaugeSameVersionReload: a version unloaded and loaded again
// (the same number, new files) while its old load still drains is READY,
// in its series and in the index, and stays so when the old load has
// finished retiring.
func TestStateGaugeSameVersionReload(t *testing.T) {
	e, dir, answered := holdRequests(t)
	if code, body := e.adminPost("/v2/repository/models/double/unload", ""); code != 200 {
		t.Fatalf("unload = %d %s; want 200", code, body)
	}
	writeVersion(t, dir, "double", "1", "double-again")
	if code, body := e.adminPost("/v2/repository/models/double/load", ""); code != 200 {
		t.Fatalf("load = %d %s; want 200", code, body)
	}
	ready := []string{`coalesce_model_state{model="double",version="1",state="READY"} 1`}
	if !e.srv.Retiring("double", "1") {
		t.Fatal("the old load of version 1 is not retiring; the test holds a request in it")
	}
	if got := e.stateSeries("double", "1"); !slices.Equal(got, ready) {
		t.Errorf("version 1 loaded again while its old load drains: state series %q; want %q", got, ready)
	}

	release(t, e, answered)
	// Close waits for the old load's retirement, and for the manager to
	// have heard of it.
	must(t, e.srv.Close(context.Background()))
	if got := e.stateSeries("double", "1"); !slices.Equal(got, ready) {
		t.Errorf("version 1 after its old load retired: state series %q; want %q", got, ready)
	}
	if st := e.status("double", "1"); st.State != lifecycle.Ready {
		t.Errorf("version 1 after its old load retired = %+v; want READY", st)
	}
}
