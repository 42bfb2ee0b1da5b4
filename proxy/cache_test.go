package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/internal/fakemodel"
	"github.com/coalesce-ml/coalesce/tensor"
)

// cacheConfig is testConfig with every model's cache and/or dedup on and
// 2s request deadlines.
func cacheConfig(cacheOn, dedup bool) *config.Config {
	cfg := testConfig()
	cfg.HTTP.RequestTimeout = 2 * time.Second
	cfg.Cache = config.Cache{Enabled: cacheOn, MaxBytes: 8 << 20, Dedup: dedup}
	return cfg
}

// fake returns the fake backend serving model name (highest version).
func fake(t *testing.T, s *Server, name string) *fakemodel.Backend {
	t.Helper()
	e, err := s.snap.Load().get(name, "")
	must(t, err)
	return e.Backend.(*fakemodel.Backend)
}

func metricValue(t *testing.T, set *metrics.Set, name string) string {
	t.Helper()
	var sb strings.Builder
	set.WritePrometheus(&sb)
	for _, line := range strings.Split(sb.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return "absent"
}

// TestCacheAcrossProtocols: one input sent by every protocol is one
// cache entry; each protocol still gets its own encoding of it.
func TestCacheAcrossProtocols(t *testing.T) {
	binHeader := `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}],"outputs":[{"name":"cls"}]}`
	binBody := []byte(binHeader)
	for _, v := range []float32{1, 5, 2, 3} {
		binBody = binary.LittleEndian.AppendUint32(binBody, math.Float32bits(v))
	}
	raw := binBody[len(binHeader):]
	requests := []struct {
		name, path string
		body       []byte
		headers    []string
		want       string
	}{
		{"predict", "/predict", []byte(`{"features":[1,5,2,3]}`), nil, `{"prediction":["b"]}`},
		{"v2 json", "/v2/models/double/infer", []byte(`{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,5,2,3]}],"outputs":[{"name":"cls"}]}`), nil,
			`{"model_name":"double","model_version":"2","outputs":[{"name":"cls","datatype":"INT64","shape":[1],"data":[1]}]}`},
		{"v2 binary", "/v2/models/double/infer", binBody, []string{"Inference-Header-Content-Length", strconv.Itoa(len(binHeader))},
			`{"model_name":"double","model_version":"2","outputs":[{"name":"cls","datatype":"INT64","shape":[1],"data":[1]}]}`},
		{"v2 raw binary", "/v2/models/double/infer", raw, []string{"Inference-Header-Content-Length", "0"}, ""},
		{"tfs", "/v1/models/double:predict", []byte(`{"instances":[[1,5,2,3]]}`), nil, `{"predictions":[{"y":[2,10,4,6],"cls":1}]}`},
		{"tfs columnar", "/v1/models/double/versions/2:predict", []byte(`{"inputs":[[1,5,2,3]]}`), nil, `{"outputs":{"y":[[2,10,4,6]],"cls":[1]}}`},
	}
	// The answers without a cache are the reference.
	_, plain, _ := testServer(t)
	want := map[string]string{}
	for _, r := range requests {
		want[r.name] = do(t, plain, "POST", r.path, r.body, r.headers...).body
		if r.want != "" && want[r.name] != r.want {
			t.Fatalf("%s without cache: %s; want %s", r.name, want[r.name], r.want)
		}
	}
	s, c, set := testServerWith(t, cacheConfig(true, false))
	for i, r := range requests {
		got := do(t, c, "POST", r.path, r.body, r.headers...)
		wantStatus := "hit"
		if i == 0 {
			wantStatus = "miss"
		}
		if got.status != 200 || got.body != want[r.name] || got.header["Coalesce-Cache"] != wantStatus {
			t.Errorf("%s: %d %s, Coalesce-Cache %q; want 200 %s, %s", r.name, got.status, got.body, got.header["Coalesce-Cache"], want[r.name], wantStatus)
		}
	}
	if n := fake(t, s, "double").Calls.Load(); n != 1 {
		t.Errorf("%d backend calls for one input sent %d times; want 1", n, len(requests))
	}
	l := `{model="double",version="2"}`
	for name, want := range map[string]string{
		"coalesce_cache_hits_total" + l:   strconv.Itoa(len(requests) - 1),
		"coalesce_cache_misses_total" + l: "1",
		"coalesce_cache_entries" + l:      "1",
		// Hits are requests like any other.
		`coalesce_requests_total{model="double",version="2",protocol="v2",code="200"}`:  "3",
		`coalesce_requests_total{model="double",version="2",protocol="tfs",code="200"}`: "2",
	} {
		if got := metricValue(t, set, name); got != want {
			t.Errorf("%s = %s; want %s", name, got, want)
		}
	}
	if got := metricValue(t, set, "coalesce_cache_bytes"+l); got == "0" || got == "absent" {
		t.Errorf("coalesce_cache_bytes = %s; want the entry's size", got)
	}
}

// TestCacheKeyParts: what identifies a request (input bytes, version,
// shape) makes a different entry; models without the cache answer
// without the header.
func TestCacheKeyParts(t *testing.T) {
	s, c, _ := testServerWith(t, cacheConfig(true, false))
	steps := []struct {
		path, body, want, status string
	}{
		{"/v2/models/double/infer", `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`, `"data":[3]`, "miss"},
		{"/v2/models/double/infer", `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`, `"data":[3]`, "hit"},
		{"/v2/models/double/infer", `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4.000001]}]}`, `"data":[3]`, "miss"},
		{"/v2/models/double/versions/1/infer", `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`, `"data":[3]`, "miss"},
		{"/v2/models/double/infer", `{"inputs":[{"name":"x","shape":[2,4],"datatype":"FP32","data":[1,2,3,4,1,2,3,4]}]}`, `"data":[3,3]`, "miss"},
		{"/v2/models/double/infer", `{"inputs":[{"name":"x","shape":[2,4],"datatype":"FP32","data":[1,2,3,4,1,2,3,4]}]}`, `"data":[3,3]`, "hit"},
	}
	for i, st := range steps {
		r := do(t, c, "POST", st.path, []byte(st.body))
		if r.status != 200 || !strings.Contains(r.body, st.want) || r.header["Coalesce-Cache"] != st.status {
			t.Errorf("step %d: %d %s, Coalesce-Cache %q; want %s, %s", i, r.status, r.body, r.header["Coalesce-Cache"], st.want, st.status)
		}
	}
	// A model whose cache is off says nothing.
	cfg := testConfig()
	_, plain, _ := testServerWith(t, cfg)
	if r := do(t, plain, "POST", "/predict", []byte(`{"features":[1,2,3,4]}`)); r.header["Coalesce-Cache"] != "" {
		t.Errorf("cache off: Coalesce-Cache %q; want none", r.header["Coalesce-Cache"])
	}
	_ = s
}

// TestCacheControl: no-cache computes afresh and stores the answer,
// no-store computes afresh and stores nothing.
func TestCacheControl(t *testing.T) {
	s, c, _ := testServerWith(t, cacheConfig(true, true))
	f := fake(t, s, "double")
	body := []byte(`{"features":[4,3,2,1]}`)
	steps := []struct {
		cc, status string
		calls      int64
	}{
		{"no-store", "miss", 1},
		{"", "miss", 2}, // no-store left nothing behind
		{"", "hit", 2},
		{"No-Cache", "miss", 3},
		{"max-age=0, no-store", "miss", 4},
		{"no-cache=\"x\", private", "miss", 5},
		{"max-age=60", "hit", 5},
	}
	for i, st := range steps {
		var h []string
		if st.cc != "" {
			h = []string{"Cache-Control", st.cc}
		}
		r := do(t, c, "POST", "/predict", body, h...)
		if r.status != 200 || r.body != `{"prediction":["a"]}` || r.header["Coalesce-Cache"] != st.status || f.Calls.Load() != st.calls {
			t.Errorf("step %d (Cache-Control %q): %d %s, Coalesce-Cache %q, %d calls; want %s after %d calls",
				i, st.cc, r.status, r.body, r.header["Coalesce-Cache"], f.Calls.Load(), st.status, st.calls)
		}
	}
}

func TestCacheControlParse(t *testing.T) {
	f := func(v string, want int) {
		t.Helper()
		if got := cacheControl([]byte(v)); got != want {
			t.Errorf("cacheControl(%q) = %d; want %d", v, got, want)
		}
	}
	f("", ccDefault)
	f("max-age=0", ccDefault)
	f("no-cache", ccNoCache)
	f(" NO-CACHE ", ccNoCache)
	f("no-cache, no-store", ccNoStore)
	f("no-store,no-cache", ccNoStore)
	f("no-transform", ccDefault)
	f("no-cache-please", ccDefault)
	f(`no-cache="set-cookie"`, ccNoCache)
}

// gate makes model name's fake backend wait in every call until the
// returned function is called (before any request).
func gate(t *testing.T, s *Server, name string) (open func()) {
	t.Helper()
	f := fake(t, s, name)
	ch := make(chan struct{})
	run := f.Run
	f.Run = func(ctx context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return run(ctx, in)
	}
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// waitJoined waits until n requests joined one in flight for model name.
func waitJoined(t *testing.T, s *Server, name string, n int) {
	t.Helper()
	e, _ := s.snap.Load().get(name, "")
	for deadline := time.Now().Add(10 * time.Second); e.cache.Waiters() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d requests joined the one in flight; want %d", e.cache.Waiters(), n)
		}
	}
}

const (
	dedupBody = `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[7,1,9,2]}]}`
	dedupWant = `{"model_name":"double","model_version":"2","outputs":[{"name":"y","datatype":"FP32","shape":[1,4],"data":[14,2,18,4]},{"name":"cls","datatype":"INT64","shape":[1],"data":[2]}]}`
)

// TestDedup64 sends 64 identical requests at once to a model that is
// held until all have arrived: one backend call answers all 64,
// correctly, cache on or off.
func TestDedup64(t *testing.T) {
	for _, cacheOn := range []bool{false, true} {
		t.Run(fmt.Sprintf("cache=%v", cacheOn), func(t *testing.T) {
			s, c, set := testServerWith(t, cacheConfig(cacheOn, true))
			c.MaxConns = 64
			open := gate(t, s, "double")
			defer open()
			statuses := make(chan string, 64)
			errs := make(chan error, 64)
			var wg sync.WaitGroup
			for range 64 {
				wg.Go(func() {
					r, err := doErr(c, "POST", "/v2/models/double/infer", []byte(dedupBody))
					switch {
					case err != nil:
						errs <- err
					case r.status != 200 || r.body != dedupWant:
						errs <- fmt.Errorf("%d %s; want 200 %s", r.status, r.body, dedupWant)
					}
					statuses <- r.header["Coalesce-Cache"]
				})
			}
			waitJoined(t, s, "double", 63)
			open()
			wg.Wait()
			close(errs)
			close(statuses)
			for err := range errs {
				t.Error(err)
			}
			count := map[string]int{}
			for st := range statuses {
				count[st]++
			}
			if n := fake(t, s, "double").Calls.Load(); n != 1 {
				t.Errorf("%d backend calls; want 1", n)
			}
			if count["miss"] != 1 || count["shared"] != 63 {
				t.Errorf("Coalesce-Cache: %v; want 1 miss, 63 shared", count)
			}
			if got := metricValue(t, set, `coalesce_cache_shared_total{model="double",version="2"}`); got != "63" {
				t.Errorf("shared metric = %s; want 63", got)
			}
		})
	}
}

// TestDedupWaiterDeadline: a waiter whose own deadline passes gets 504
// at its deadline; the request it waited for and the other waiters go
// on and get the answer from one backend call.
func TestDedupWaiterDeadline(t *testing.T) {
	s, c, _ := testServerWith(t, cacheConfig(false, true))
	open := gate(t, s, "double")
	defer open()
	results := make(chan result, 2)
	var wg sync.WaitGroup
	wg.Go(func() { r, _ := doErr(c, "POST", "/v2/models/double/infer", []byte(dedupBody)); results <- r })
	for deadline := time.Now().Add(10 * time.Second); fake(t, s, "double").Calls.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first request never reached the backend")
		}
	}
	wg.Go(func() { r, _ := doErr(c, "POST", "/v2/models/double/infer", []byte(dedupBody)); results <- r })
	waitJoined(t, s, "double", 1)
	start := time.Now()
	r := do(t, c, "POST", "/v2/models/double/infer", []byte(dedupBody), "Coalesce-Timeout", "30ms")
	if r.status != 504 || r.header["Coalesce-Cache"] != "" || !strings.Contains(r.body, "deadline (30ms)") {
		t.Errorf("impatient waiter: %d %s; want 504 naming its 30ms deadline", r.status, r.body)
	}
	if e := time.Since(start); e > time.Second {
		t.Errorf("impatient waiter answered after %v; want at its 30ms deadline", e)
	}
	open()
	wg.Wait()
	close(results)
	for r := range results {
		if r.status != 200 || r.body != dedupWant {
			t.Errorf("leader or patient waiter: %d %s; want 200", r.status, r.body)
		}
	}
	if n := fake(t, s, "double").Calls.Load(); n != 1 {
		t.Errorf("%d backend calls; want 1", n)
	}
}

// TestDedupLeaderDeadline: when the request in flight fails for a reason
// of its own (its shorter deadline), its waiter is computed afresh
// within its own deadline.
func TestDedupLeaderDeadline(t *testing.T) {
	s, c, _ := testServerWith(t, cacheConfig(true, true))
	open := gate(t, s, "double")
	defer open()
	leader := make(chan result, 1)
	go func() {
		r, _ := doErr(c, "POST", "/v2/models/double/infer", []byte(dedupBody), "Coalesce-Timeout", "500ms")
		leader <- r
	}()
	for deadline := time.Now().Add(10 * time.Second); fake(t, s, "double").Calls.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first request never reached the backend")
		}
	}
	waiter := make(chan result, 1)
	go func() { r, _ := doErr(c, "POST", "/v2/models/double/infer", []byte(dedupBody)); waiter <- r }()
	waitJoined(t, s, "double", 1)
	if r := <-leader; r.status != 504 {
		t.Errorf("leader: %d %s; want 504 at its 500ms deadline", r.status, r.body)
	}
	open() // the waiter's own computation may run now
	if r := <-waiter; r.status != 200 || r.body != dedupWant || r.header["Coalesce-Cache"] != "miss" {
		t.Errorf("waiter of a leader that expired: %d %s (%s); want 200, computed afresh (miss)", r.status, r.body, r.header["Coalesce-Cache"])
	}
	if n := fake(t, s, "double").Calls.Load(); n != 2 {
		t.Errorf("%d backend calls; want 2 (the expired leader's, the waiter's)", n)
	}
}

// TestFailureNeverCached: a failing backend's answers are not stored,
// and a request identical to a failing one in flight shares its failure.
func TestFailureNeverCached(t *testing.T) {
	s, c, _ := testServerWith(t, cacheConfig(true, true))
	f := fake(t, s, "multi")
	f.Run = func(context.Context, []*tensor.Tensor) ([]*tensor.Tensor, error) {
		return nil, errors.New("backend broke")
	}
	body := []byte(`{"inputs":[{"name":"a","shape":[1,2],"datatype":"FP32","data":[1,2]},{"name":"b","shape":[1,2],"datatype":"INT32","data":[3,4]}]}`)
	for i := range 3 {
		r := do(t, c, "POST", "/v2/models/multi/infer", body)
		if r.status != 500 || !strings.Contains(r.body, "backend broke") {
			t.Errorf("request %d: %d %s; want 500 with the backend's error", i, r.status, r.body)
		}
	}
	e, _ := s.snap.Load().get("multi", "")
	if n := f.Calls.Load(); n != 3 || e.cache.Len() != 0 {
		t.Errorf("%d backend calls, %d entries; want 3 calls, nothing stored", n, e.cache.Len())
	}
}

// TestCacheReplacedVersion: a new load of the served versions makes the
// old answers unreachable at once and frees them; the cache series
// continue on the new load.
func TestCacheReplacedVersion(t *testing.T) {
	s, c, set := testServerWith(t, cacheConfig(true, false))
	body := []byte(`{"features":[1,2,3,4]}`)
	do(t, c, "POST", "/predict", body)
	if r := do(t, c, "POST", "/predict", body); r.header["Coalesce-Cache"] != "hit" {
		t.Fatalf("repeat before the reload: %q; want hit", r.header["Coalesce-Cache"])
	}
	old, _ := s.snap.Load().get("double", "")
	must(t, s.Update(fakemodel.Registry(t)))
	if old.cache.Len() != 0 || old.cache.Bytes() != 0 {
		t.Errorf("retired version's cache holds %d entries, %d bytes; want none", old.cache.Len(), old.cache.Bytes())
	}
	l := `{model="double",version="2"}`
	if got := metricValue(t, set, "coalesce_cache_entries"+l); got != "0" {
		t.Errorf("entries after the reload = %s; want 0", got)
	}
	if r := do(t, c, "POST", "/predict", body); r.status != 200 || r.header["Coalesce-Cache"] != "miss" {
		t.Errorf("after the reload: %d %q; want a miss on the new generation", r.status, r.header["Coalesce-Cache"])
	}
	if got := metricValue(t, set, "coalesce_cache_entries"+l); got != "1" {
		t.Errorf("entries = %s; want 1", got)
	}
	// A registry without double drops its series.
	must(t, s.Update(fakemodel.Registry(t).Without("double", "1").Without("double", "2")))
	if got := metricValue(t, set, "coalesce_cache_entries"+l); got != "absent" {
		t.Errorf("entries of a removed model = %s; want the series removed", got)
	}
}

// TestCacheBudgets: models with cache_bytes take theirs, the others
// share the rest, versions split their model's; more than
// cache.max_bytes is refused.
func TestCacheBudgets(t *testing.T) {
	cfg := cacheConfig(false, false)
	cfg.Cache.MaxBytes = 64 << 20
	reg := fakemodel.Registry(t)
	on := true
	for _, m := range reg.All() {
		switch m.Name {
		case "multi":
			m.Config.CacheBytes = 16 << 20
		case "double", "zip":
			m.Config.Cache = &on
		}
	}
	s := &Server{cfg: cfg}
	b, err := s.cacheBudgets(reg)
	must(t, err)
	got := map[string]int64{}
	var sum int64
	for m, n := range b {
		got[m.Name+"/"+m.Version] = n
		sum += n
	}
	want := map[string]int64{"multi/1": 16 << 20, "zip/1": 24 << 20, "double/1": 12 << 20, "double/2": 12 << 20}
	if fmt.Sprint(got) != fmt.Sprint(want) || sum > int64(cfg.Cache.MaxBytes) {
		t.Errorf("budgets %v (sum %d); want %v", got, sum, want)
	}
	for _, m := range reg.All() {
		if m.Name == "zip" {
			m.Config.CacheBytes = 49 << 20
		}
	}
	if _, err := s.cacheBudgets(reg); err == nil || !strings.Contains(err.Error(), "cache.max_bytes") {
		t.Errorf("cacheBudgets over the global budget: %v; want an error naming cache.max_bytes", err)
	}
}
