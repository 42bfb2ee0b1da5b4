package upstream

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
)

const doubleYAML = "protocol: kserve-v2\nversion: \"1\"\nmax_batch_size: 8\n" +
	"inputs: [{name: x, datatype: FP32, dims: [4]}]\noutputs: [{name: y, datatype: FP32, dims: [4]}, {name: cls, datatype: INT64}]\n"

var inferBody = []byte(`{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`)

// TestUnreachableAtStart: an upstream that refuses connections does not
// stop start-up; the model is not ready (V2 ready 503, TF Serving status
// not AVAILABLE) until a replica answers its probe, and then it serves.
func TestUnreachableAtStart(t *testing.T) {
	f := newFaulty(t, reference(t))
	f.set(modeRefuse)
	pol := testPolicy()
	pol.Probe.Interval = 20 * time.Millisecond
	repo := writeRepo(t, map[string]string{"double/1/" + File: doubleYAML + "endpoints: [http://a:1]\n"})
	c, set := front(t, repo, pol, f.Dial)
	if s, _, _ := post(t, c, "GET", "/v2/models/double/ready", nil); s != 503 {
		t.Errorf("V2 ready with the upstream down = %d; want 503", s)
	}
	if s, b, _ := post(t, c, "GET", "/v1/models/double", nil); s != 200 || !bytes.Contains(b, []byte(`"state":"LOADING"`)) {
		t.Errorf("TF Serving status with the upstream down = %d %s; want not AVAILABLE", s, b)
	}
	if s, _, _ := post(t, c, "GET", "/v2/health/ready", nil); s != 200 {
		t.Errorf("server readiness = %d; want 200 (its in-process state is ready)", s)
	}
	if s, b, _ := post(t, c, "POST", "/v2/models/double/infer", inferBody); s != 502 {
		t.Errorf("infer with the upstream refusing = %d %s; want 502", s, b)
	}
	f.set(modeOK)
	waitFor(t, "the model to become ready", func() bool {
		s, _, _ := post(t, c, "GET", "/v2/models/double/ready", nil)
		return s == 200
	})
	if s, b, _ := post(t, c, "GET", "/v1/models/double", nil); !bytes.Contains(b, []byte(`"state":"AVAILABLE"`)) {
		t.Errorf("TF Serving status once the upstream answers = %d %s; want AVAILABLE", s, b)
	}
	if s, b, _ := post(t, c, "POST", "/v2/models/double/infer", inferBody); s != 200 {
		t.Errorf("infer once the upstream answers = %d %s; want 200", s, b)
	}
	if v := counter(set, `coalesce_upstream_ready{model="double",version="1"}`); v != 1 {
		t.Errorf("coalesce_upstream_ready = %v; want 1", v)
	}
}

// TestAllOpenAnswers503AtOnce: once every replica's breaker is open,
// requests get 503 with Retry-After (the remaining open time, rounded up)
// before they are queued, and nothing connects to the replicas.
func TestAllOpenAnswers503AtOnce(t *testing.T) {
	ref := reference(t)
	fs := map[string]*faulty{"a": newFaulty(t, ref), "b": newFaulty(t, ref)}
	for _, f := range fs {
		f.set(modeRefuse)
	}
	pol := testPolicy()
	pol.Breaker.OpenTimeout = 3 * time.Second
	repo := writeRepo(t, map[string]string{"double/1/" + File: doubleYAML + "endpoints: [http://a:1, http://b:1]\n"})
	c, set := front(t, repo, pol, router(fs))
	statuses := map[int]int{}
	for range 2 * pol.Breaker.ConsecutiveFailures {
		s, _, _ := post(t, c, "POST", "/v2/models/double/infer", inferBody)
		statuses[s]++
	}
	if statuses[502] == 0 {
		t.Errorf("statuses while the breakers trip = %v; want 502s", statuses)
	}
	dials := fs["a"].dials.Load() + fs["b"].dials.Load()
	for range 50 {
		s, b, h := post(t, c, "POST", "/v2/models/double/infer", inferBody)
		if s != 503 || string(h.Peek("Retry-After")) != "3" || !strings.Contains(string(b), "circuit breaker is open") {
			t.Fatalf("with every breaker open = %d %s (Retry-After %q); want 503 with Retry-After 3", s, b, h.Peek("Retry-After"))
		}
	}
	if d := fs["a"].dials.Load() + fs["b"].dials.Load() - dials; d != 0 {
		t.Errorf("%d connection attempts while every breaker was open; want 0", d)
	}
	if n := counter(set, `coalesce_upstream_rejected_total{model="double",version="1"}`); n < 50 {
		t.Errorf("rejected_total = %v; want at least 50", n)
	}
	if n := counter(set, `coalesce_upstream_breaker_state{model="double",version="1",endpoint="http://a:1"}`); n != 2 {
		t.Errorf("breaker_state = %v; want 2 (open)", n)
	}
}

// TestMetricsLiveWithTheVersion: the series are created with the backend,
// kept while a new load of the same version uses them, and removed when
// the last one closes.
func TestMetricsLiveWithTheVersion(t *testing.T) {
	set := metrics.NewSet()
	dir := writeRepo(t, map[string]string{"double/1/" + File: doubleYAML + "endpoints: [http://a:1]\n"})
	load := Loader(Options{Defaults: testPolicy(), Metrics: set, Log: quiet, Dial: func(string) (net.Conn, error) { return nil, net.ErrClosed }})
	path := dir + "/double/1/" + File
	opts := backends.LoadOptions{Model: "double", Version: "1"}
	old, err := load(path, opts)
	must(t, err)
	name := `coalesce_upstream_requests_total{model="double",version="1",endpoint="http://a:1"}`
	has := func() bool {
		var sb strings.Builder
		set.WritePrometheus(&sb)
		return strings.Contains(sb.String(), name)
	}
	if !has() {
		t.Fatal("series missing after load")
	}
	next, err := load(path, opts)
	must(t, err)
	old.Close()
	if !has() {
		t.Error("series removed while a new load of the version uses them")
	}
	next.Close()
	if has() {
		t.Error("series kept after the last load closed")
	}
}

// TestConfigErrors: upstream.yaml mistakes name the key.
func TestConfigErrors(t *testing.T) {
	for _, tt := range []struct{ yaml, want string }{
		{"protocol: grpc\nendpoints: [http://a:1]\n", "protocol"},
		{"protocol: kserve-v2\n", "endpoints"},
		{"protocol: kserve-v2\nendpoints: [https://a:1]\n", "endpoints[0]"},
		{"protocol: predict\nendpoints: [http://a:1]\n", "predict protocol has no metadata"},
		{"protocol: predict\nendpoints: [http://a:1]\nmax_batch_size: 4\n", "max_batch_size"},
		{"protocol: kserve-v2\nendpoints: [http://a:1]\nbreaker: {failure_ratio: 2}\n", "breaker.failure_ratio"},
		{"protocol: kserve-v2\nendpoints: [http://a:1]\nretyr: {}\n", "unknown key"},
		{"protocol: kserve-v2\nendpoints: [http://a:1]\ninputs: [{name: x, datatype: FP33}]\noutputs: [{name: y, datatype: FP32}]\n", "inputs[0].datatype"},
	} {
		dir := writeRepo(t, map[string]string{File: tt.yaml})
		_, err := Loader(Options{Defaults: config.DefaultUpstream()})(dir+"/"+File, backends.LoadOptions{Model: "m", Version: "1"})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v; want one naming %s", tt.yaml, err, tt.want)
		}
	}
}
