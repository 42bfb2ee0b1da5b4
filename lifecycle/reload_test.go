package lifecycle_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/coalesce-ml/coalesce/lifecycle"
)

const inferPath = "/v2/models/double/infer"

// TestReloadUnderLoad: 20 new versions replace the served one (version
// policy latest: 1) while 64 closed-loop clients call the model: no
// request fails or gets another model's answer, each new version is READY
// and its predecessor unloaded, with its state series gone. The p99
// during swaps against steady state is logged, not asserted (a shared
// machine's noise dwarfs it; bench measures it).
func TestReloadUnderLoad(t *testing.T) {
	dir := t.TempDir()
	writeVersion(t, dir, "double", "1", "double-1")
	e := newEnv(t, dir, "none")
	l := startLoad(e, 64, inferPath)
	waitFor(func() bool { return l.count.Load() >= 2000 })
	l.duringOn.Store(true)
	const swaps = 20
	for i := 2; i <= swaps+1; i++ {
		v := strconv.Itoa(i)
		writeVersion(t, dir, "double", v, "double-"+v)
		must(t, e.m.Sync())
		if st := e.status("double", v); st.State != lifecycle.Ready {
			t.Fatalf("after sync, version %s = %+v; want READY", v, st)
		}
		// UNLOADING while its queue drains, then UNAVAILABLE.
		if st := e.status("double", strconv.Itoa(i-1)); st.State != lifecycle.Unloading && st.State != lifecycle.Unavailable || st.Reason != "unloaded" {
			t.Errorf("after sync, version %d = %+v; want UNLOADING or UNAVAILABLE, unloaded", i-1, st)
		}
	}
	l.finish(t)
	t.Logf("%d swaps under 64 clients: %d requests, 0 failed; p99 steady %v, during swaps %v (ratio %.2f)",
		swaps, l.count.Load(), p99(l.lat), p99(l.during), float64(p99(l.during))/float64(max(p99(l.lat), 1)))

	// Version 20 may still drain (UNLOADING); then no retired version
	// keeps a state series.
	waitFor(func() bool { return len(e.stateSeries("double", "20")) == 0 })
	var sb strings.Builder
	e.set.WritePrometheus(&sb)
	prom := sb.String()
	if got, want := grepLines(prom, "coalesce_model_state{"), `coalesce_model_state{model="double",version="21",state="READY"} 1`; got != want {
		t.Errorf("state series after 20 swaps:\n%s\nwant only %s", got, want)
	}
	if !strings.Contains(prom, `coalesce_model_loads_total{model="double",result="success"} 20`) {
		t.Errorf("want 20 successful loads:\n%s", grepLines(prom, "coalesce_model_loads"))
	}
	// TF Serving's status shows real states.
	waitFor(func() bool { return e.status("double", "20").State == lifecycle.Unavailable })
	if code, body := e.get("/v1/models/double"); code != 200 || !strings.Contains(body, `{"version":"20","state":"END"`) || !strings.Contains(body, `{"version":"21","state":"AVAILABLE"`) {
		t.Errorf("GET /v1/models/double = %d %s; want version 20 END, 21 AVAILABLE", code, body)
	}
}

// TestFailedLoadKeepsServing: a corrupt new version, one that fails its
// warm-up, and a corrupt rewrite of the served version all leave the
// served version answering every request, and say why in the index.
func TestFailedLoadKeepsServing(t *testing.T) {
	dir := t.TempDir()
	writeVersion(t, dir, "double", "1", "double-1")
	// A second model, so that no "nothing left to serve" refusal could
	// hide a retirement.
	writeVersion(t, dir, "other", "1", "double-other")
	e := newEnv(t, dir, "none")
	l := startLoad(e, 64, inferPath)
	waitFor(func() bool { return l.count.Load() >= 500 })

	writeVersion(t, dir, "double", "2", "corrupt")
	if err := e.m.Sync(); err == nil {
		t.Error("Sync with a corrupt version 2 succeeded; want its error")
	}
	if st := e.status("double", "2"); st.State != lifecycle.Unavailable || !strings.Contains(st.Reason, "load: ") || !strings.Contains(st.Reason, "not a model file") {
		t.Errorf("corrupt version 2 = %+v; want UNAVAILABLE with the load error", st)
	}
	writeVersion(t, dir, "double", "3", "badwarm")
	if err := e.m.Sync(); err == nil || !strings.Contains(err.Error(), "kernel exploded") {
		t.Errorf("Sync with version 3 failing warm-up = %v; want its error", err)
	}
	if st := e.status("double", "3"); st.State != lifecycle.Unavailable || !strings.Contains(st.Reason, "warm: ") {
		t.Errorf("version 3 failing warm-up = %+v; want UNAVAILABLE with the warm-up error", st)
	}
	// Still version 1 serving (the policy wants 3, which failed).
	if st := e.status("double", "1"); st.State != lifecycle.Ready {
		t.Errorf("version 1 = %+v; want READY", st)
	}
	waitFor(func() bool { return l.count.Load() >= 1000 })
	l.finish(t)

	code, body := e.adminPost("/v2/repository/index", "")
	if code != 200 || !strings.Contains(body, `{"name":"double","version":"3","state":"UNAVAILABLE","reason":"warm: model double version 3: warm-up at batch size 1: kernel exploded"}`) ||
		!strings.Contains(body, `{"name":"double","version":"1","state":"READY","reason":""}`) {
		t.Errorf("POST /v2/repository/index = %d %s; want version 1 READY and 3 with its reason", code, body)
	}
	if code, body := e.adminPost("/v2/repository/index", `{"ready": true}`); code != 200 || strings.Contains(body, "UNAVAILABLE") {
		t.Errorf("index of ready models = %d %s; want only READY ones", code, body)
	}
	var sb strings.Builder
	e.set.WritePrometheus(&sb)
	for _, want := range []string{`coalesce_model_load_failures_total{model="double",reason="load"} 1`, `coalesce_model_load_failures_total{model="double",reason="warm"} 1`} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// The same broken files are not retried; a fixed one is loaded. A
	// failed version whose directory is gone leaves the index and its
	// state series goes with it.
	if got, want := e.stateSeries("double", "2"), []string{`coalesce_model_state{model="double",version="2",state="UNAVAILABLE"} 1`}; !slices.Equal(got, want) {
		t.Errorf("failed version 2: state series %q; want %q", got, want)
	}
	n := len(e.fake.loaded())
	must(t, removeVersion(dir, "double", "2"))
	must(t, e.m.Sync()) // nothing new to report: version 3's files did not change
	if st := e.status("double", "2"); st != (lifecycle.Status{}) {
		t.Errorf("version 2, removed from disk, in the index as %+v; want gone", st)
	}
	if got := e.stateSeries("double", "2"); len(got) > 0 {
		t.Errorf("version 2, removed from disk, keeps state series %q", got)
	}
	if st := e.status("double", "3"); !strings.Contains(st.Reason, "kernel exploded") {
		t.Errorf("version 3 after a second Sync = %+v; want its reason kept", st)
	}
	if got := len(e.fake.loaded()); got != n {
		t.Errorf("Sync loaded %d files again; want the unchanged broken version skipped", got-n)
	}
	writeVersion(t, dir, "double", "3", "double-3")
	must(t, e.m.Sync())
	if st := e.status("double", "3"); st.State != lifecycle.Ready {
		t.Errorf("fixed version 3 = %+v; want READY", st)
	}
}

// TestUnloadThenLoadUnderLoad (models.control: explicit): the repository
// API unloads and reloads a model while 64 clients call another one, none
// of whose requests fails; the unloaded model answers 404, then serves
// again.
func TestUnloadThenLoadUnderLoad(t *testing.T) {
	dir := t.TempDir()
	writeVersion(t, dir, "double", "1", "double-1")
	writeVersion(t, dir, "other", "1", "double-other")
	e := newEnv(t, dir, "explicit")
	l := startLoad(e, 64, "/v2/models/other/infer")
	waitFor(func() bool { return l.count.Load() >= 500 })
	for range 3 {
		if code, body := e.adminPost("/v2/repository/models/double/unload", ""); code != 200 {
			t.Fatalf("unload = %d %s; want 200", code, body)
		}
		if code, _, _ := e.post(inferPath, `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}`); code != 404 {
			t.Errorf("infer on the unloaded model = %d; want 404", code)
		}
		waitFor(func() bool { return e.status("double", "1").State != lifecycle.Unloading }) // drained
		if st := e.status("double", "1"); st.State != lifecycle.Unavailable || st.Reason != "unloaded" {
			t.Errorf("unloaded double/1 = %+v; want UNAVAILABLE, unloaded", st)
		}
		if code, body := e.adminPost("/v2/repository/models/double/load", ""); code != 200 {
			t.Fatalf("load = %d %s; want 200", code, body)
		}
		if code, body, _ := e.post(inferPath, `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}`); code != 200 || !strings.Contains(body, `"data":[2,4,6,8]`) {
			t.Errorf("infer after load = %d %s; want 200 with 2x", code, body)
		}
	}
	waitFor(func() bool { return l.count.Load() >= 1000 })
	l.finish(t)

	tests := []struct {
		path string
		want int
	}{
		{"/v2/repository/models/nosuch/load", 404},
		{"/v2/repository/models/../load", 404},
		{"/v2/repository/models/double/frobnicate", 404},
		{"/v2/repository/models/nosuch/unload", 400},
	}
	for _, tt := range tests {
		if code, body := e.adminPost(tt.path, ""); code != tt.want {
			t.Errorf("POST %s = %d %s; want %d", tt.path, code, body, tt.want)
		}
	}
}

// TestControlNoneRefusesLoad: outside explicit mode the API reports but
// does not load or unload.
func TestControlNoneRefusesLoad(t *testing.T) {
	dir := t.TempDir()
	writeVersion(t, dir, "double", "1", "double-1")
	e := newEnv(t, dir, "none")
	for _, path := range []string{"/v2/repository/models/double/load", "/v2/repository/models/double/unload"} {
		if code, body := e.adminPost(path, ""); code != 403 || !strings.Contains(body, "models.control") {
			t.Errorf("POST %s = %d %s; want 403 naming models.control", path, code, body)
		}
	}
	if code, body := e.adminPost("/v2/repository/index", ""); code != 200 || body != `[{"name":"double","version":"1","state":"READY","reason":""}]` {
		t.Errorf("index = %d %s", code, body)
	}
}

// TestRepositoryStates (models.control: explicit): a version being loaded
// is LOADING in the index and TF Serving's status while what served goes
// on serving; a version an unload or a newer version retired is
// UNLOADING while a request still holds its queue, then UNAVAILABLE
// (TF Serving's END) once it drained.
func TestRepositoryStates(t *testing.T) {
	dir := t.TempDir()
	writeVersion(t, dir, "double", "1", "held")
	e := newEnv(t, dir, "explicit")
	e.fake.gate, e.fake.held = make(chan struct{}), make(chan struct{})
	const body = `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}`
	// One request in version 1's backend (concurrency 1), one queued
	// behind it: the retirement drains the queue.
	answered := make(chan int, 2)
	for range 2 {
		go func() {
			code, _, _ := e.post(inferPath, body)
			answered <- code
		}()
	}
	queued := e.set.GetOrCreateGauge(`coalesce_queue_requests{model="double",version="1"}`, nil)
	waitFor(func() bool { return e.fake.calls.Load() > 0 && queued.Get() == 1 })

	writeVersion(t, dir, "double", "2", "gated") // latest: 1, so it replaces version 1
	loaded := make(chan int, 1)
	go func() {
		code, _ := e.adminPost("/v2/repository/models/double/load", "")
		loaded <- code
	}()
	waitFor(func() bool { return e.status("double", "2").State == lifecycle.Loading })
	if code, got := e.get("/v1/models/double"); code != 200 || !strings.Contains(got, `{"version":"2","state":"LOADING"`) {
		t.Errorf("TF Serving status of the loading version = %d %s; want LOADING", code, got)
	}
	if st := e.status("double", "1"); st.State != lifecycle.Ready {
		t.Errorf("version 1 while version 2 loads = %+v; want READY", st)
	}
	close(e.fake.gate)
	if code := <-loaded; code != 200 {
		t.Fatalf("load = %d; want 200", code)
	}
	if st := e.status("double", "1"); st.State != lifecycle.Unloading {
		t.Errorf("version 1, retired while a request holds it = %+v; want UNLOADING", st)
	}
	if code, got := e.get("/v1/models/double"); code != 200 || !strings.Contains(got, `{"version":"1","state":"UNLOADING"`) {
		t.Errorf("TF Serving status of the draining version = %d %s; want UNLOADING", code, got)
	}
	close(e.fake.held)
	for range 2 {
		if code := <-answered; code != 200 {
			t.Errorf("a request held across the retirement = %d; want 200", code)
		}
	}
	waitFor(func() bool { return e.status("double", "1").State == lifecycle.Unavailable })
	if code, got := e.get("/v1/models/double"); code != 200 || !strings.Contains(got, `{"version":"1","state":"END"`) {
		t.Errorf("TF Serving status of the retired version = %d %s; want END", code, got)
	}
	if st := e.status("double", "2"); st.State != lifecycle.Ready {
		t.Errorf("version 2 = %+v; want READY", st)
	}
}
