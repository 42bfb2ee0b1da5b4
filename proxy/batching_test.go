package proxy

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// TestQueueingErrors drives the "slow" fake model (one worker that holds
// every batch until its deadline, a queue of 2 rows) into each of the
// batcher's refusals, over HTTP.
func TestQueueingErrors(t *testing.T) {
	_, c, _ := testServer(t)
	body := []byte(`{"features":[1]}`)
	var wg sync.WaitGroup
	results := make(chan result, 3)
	// The first request occupies the worker for the 200ms request timeout.
	wg.Add(1)
	go func() { defer wg.Done(); r, _ := doErr(c, "POST", "/predict?model=slow", body); results <- r }()
	time.Sleep(30 * time.Millisecond)
	// A queued request whose own deadline (50ms) passes while it waits is
	// answered 504 at its deadline, long before the worker frees.
	start := time.Now()
	r := do(t, c, "POST", "/predict?model=slow", body, "Coalesce-Timeout", "50ms")
	if r.status != 504 || !strings.Contains(errorMessage(t, r), "deadline (50ms)") {
		t.Errorf("queued past its deadline: %d %s; want 504 naming the 50ms deadline", r.status, r.body)
	}
	if e := time.Since(start); e >= 150*time.Millisecond {
		t.Errorf("the expired request was answered after %v; want at its 50ms deadline", e)
	}
	// Two more fill the queue of 2 rows; the next is shed at once.
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); r, _ := doErr(c, "POST", "/predict?model=slow", body); results <- r }()
	}
	time.Sleep(30 * time.Millisecond)
	r = do(t, c, "POST", "/predict?model=slow", body)
	if r.status != 503 || r.header["Retry-After"] == "" || !strings.Contains(errorMessage(t, r), "queue is full") {
		t.Errorf("queue full: %d %s (Retry-After %q); want 503 with Retry-After", r.status, r.body, r.header["Retry-After"])
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r.status != 504 {
			t.Errorf("a request held until its deadline: %d %s; want 504", r.status, r.body)
		}
	}
}

// TestSchedulingHints checks the client's deadline and priority controls.
func TestSchedulingHints(t *testing.T) {
	_, c, _ := testServer(t)
	v2 := func(params string) []byte {
		return []byte(`{"parameters":{` + params + `},"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"cls"}]}`)
	}
	tests := []struct {
		name    string
		path    string
		body    []byte
		headers []string
		status  int
		want    string
	}{
		{"v2 timeout and priority", "/v2/models/double/infer", v2(`"timeout":100000,"priority":1`), nil, 200, `"data":[3]`},
		{"v2 priority 0 is the default", "/v2/models/double/infer", v2(`"priority":0`), nil, 200, `"data":[3]`},
		{"header hints", "/predict", []byte(`{"features":[1,2,3,4]}`), []string{"Coalesce-Timeout", "1s", "Coalesce-Priority", "2"}, 200, `"d"`},
		{"header timeout in ms", "/predict", []byte(`{"features":[1,2,3,4]}`), []string{"Coalesce-Timeout", "250"}, 200, `"d"`},
		{"v2 timeout not a number", "/v2/models/double/infer", v2(`"timeout":"soon"`), nil, 400, "parameters.timeout"},
		{"v2 negative timeout", "/v2/models/double/infer", v2(`"timeout":-5`), nil, 400, "microseconds"},
		{"v2 priority not an integer", "/v2/models/double/infer", v2(`"priority":1.5`), nil, 400, "parameters.priority"},
		{"v2 priority above the levels", "/v2/models/double/infer", v2(`"priority":3`), nil, 400, "priority 3"},
		{"bad timeout header", "/v1/models/double:predict", []byte(`{"instances":[[1,2,3,4]]}`), []string{"Coalesce-Timeout", "soon"}, 400, "Coalesce-Timeout"},
		{"zero timeout header", "/predict", []byte(`{"features":[1,2,3,4]}`), []string{"Coalesce-Timeout", "0s"}, 400, "positive"},
		{"bad priority header", "/predict", []byte(`{"features":[1,2,3,4]}`), []string{"Coalesce-Priority", "high"}, 400, "Coalesce-Priority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, c, "POST", tt.path, tt.body, tt.headers...)
			if r.status != tt.status || !strings.Contains(r.body, tt.want) {
				t.Errorf("POST %s = %d %s; want %d containing %q", tt.path, r.status, r.body, tt.status, tt.want)
			}
		})
	}
}

func TestMaxInflightShedsAtTheEdge(t *testing.T) {
	s, c, _ := testServer(t)
	s.cfg.HTTP.MaxInflight = 1
	held := make(chan result, 1)
	go func() { r, _ := doErr(c, "POST", "/predict?model=slow", []byte(`{"features":[1]}`)); held <- r }()
	deadline := time.Now().Add(2 * time.Second)
	for s.inflight.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	r := do(t, c, "POST", "/predict", []byte(`{"features":[1,2,3,4]}`))
	if r.status != 503 || r.header["Retry-After"] == "" || !strings.Contains(errorMessage(t, r), "http.max_inflight") {
		t.Errorf("second request while one is in flight: %d %s; want 503 naming http.max_inflight", r.status, r.body)
	}
	if r := do(t, c, "GET", "/v2/health/ready", nil); r.status != 200 {
		t.Errorf("GET readiness = %d; want 200: only POSTs count", r.status)
	}
	<-held
	if r := do(t, c, "POST", "/predict", []byte(`{"features":[1,2,3,4]}`)); r.status != 200 {
		t.Errorf("after the slow request ended: %d %s; want 200", r.status, r.body)
	}
}
