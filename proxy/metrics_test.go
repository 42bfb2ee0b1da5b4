package proxy

import (
	"strings"
	"testing"
	"time"
)

// TestRequestMetricsByVersion: requests count under the version that
// answered them (by number, label or the highest), requests that resolve
// no version under model="" and version=""; a retired version's request
// series go with it, and come back when the version is served again.
func TestRequestMetricsByVersion(t *testing.T) {
	s, c, set := testServerWith(t, patientConfig())
	body := []byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}`)
	for _, r := range []struct {
		path    string
		headers []string
		status  int
	}{
		{"/v2/models/double/infer", nil, 200},                                        // highest: 2
		{"/v2/models/double/infer", []string{"Coalesce-Model-Label", "stable"}, 200}, // 1
		{"/v2/models/double/versions/1/infer", nil, 200},                             // 1
		{"/predict?label=stable", nil, 200},                                          // 1
		{"/v2/models/double/versions/9/infer", nil, 404},                             // none
		{"/v2/models/double/infer", []string{"Coalesce-Model-Label", "nope"}, 404},   // none
		{"/v1/models/double/labels/stable:predict", nil, 400},                        // 1, bad body
	} {
		b := body
		switch {
		case strings.HasPrefix(r.path, "/v1"):
			b = []byte(`{"x":1}`)
		case strings.HasPrefix(r.path, "/predict"):
			b = []byte(`{"features":[1,2,3,4]}`)
		}
		if got := do(t, c, "POST", r.path, b, r.headers...); got.status != r.status {
			t.Fatalf("POST %s %v = %d %s; want %d", r.path, r.headers, got.status, got.body, r.status)
		}
	}
	for name, want := range map[string]string{
		`coalesce_requests_total{model="double",version="2",protocol="v2",code="200"}`:      "1",
		`coalesce_requests_total{model="double",version="1",protocol="v2",code="200"}`:      "2",
		`coalesce_requests_total{model="double",version="1",protocol="predict",code="200"}`: "1",
		`coalesce_requests_total{model="double",version="1",protocol="tfs",code="400"}`:     "1",
		`coalesce_requests_total{model="",version="",protocol="v2",code="404"}`:             "2",
		`coalesce_request_duration_seconds_count{model="double",version="1",protocol="v2"}`: "2",
	} {
		if got := metricValue(t, set, name); got != want {
			t.Errorf("%s = %s; want %s", name, got, want)
		}
	}

	reg := s.snap.Load().reg
	v1 := reg.Versions("double")[0]
	must(t, s.Update(reg.Without("double", "1")))
	s.retiring.Wait()
	for _, family := range []string{"coalesce_requests_total", "coalesce_request_duration_seconds"} {
		if got := seriesNames(set, family+`{model="double",version="1",`); len(got) != 0 {
			t.Errorf("retired version 1 still has %d %s series: %v", len(got), family, got)
		}
		if got := seriesNames(set, family+`{model="double",version="2",`); len(got) == 0 {
			t.Errorf("version 2 lost its %s series with version 1's retirement", family)
		}
	}
	must(t, s.Update(s.snap.Load().reg.With(reload(v1, "1", 0))))
	if r := do(t, c, "POST", "/v2/models/double/versions/1/infer", body); r.status != 200 {
		t.Fatalf("version 1 served again = %d %s; want 200", r.status, r.body)
	}
	if got := metricValue(t, set, `coalesce_requests_total{model="double",version="1",protocol="v2",code="200"}`); got != "1" {
		t.Errorf("version 1 served again has counted %s requests; want 1 (new series)", got)
	}
}

// TestRequestMetricsAllocs: counting a request under its version's
// cached handles allocates nothing.
func TestRequestMetricsAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocations are not representative under -race; make test runs this without it (NORACE_TESTS)")
	}
	s, _, _ := testServer(t)
	e, err := s.snap.Load().get("double", "1")
	must(t, err)
	start := time.Now()
	if n := testing.AllocsPerRun(100, func() {
		s.met.observe(e.requestMetrics(), protoV2, 200, start)
		s.met.observe(nil, protoOther, 404, start)
	}); n != 0 {
		t.Errorf("observe allocates %.0f times per request; want 0", n)
	}
}
