package proxy

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// errorMessage returns the message of a {"error": "..."} body, failing
// the test when the body has any other form.
func errorMessage(t *testing.T, r result) string {
	t.Helper()
	if ct := r.header["Content-Type"]; ct != "application/json" {
		t.Errorf("Content-Type = %q; want application/json", ct)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatalf("body %q is not JSON: %v", r.body, err)
	}
	msg, ok := got["error"].(string)
	if !ok || len(got) != 1 {
		t.Fatalf("body = %s; want exactly {\"error\": \"...\"}", r.body)
	}
	return msg
}

func TestPanicIsRecovered(t *testing.T) {
	_, c, _ := testServer(t)
	tests := []struct{ name, path, body string }{
		{"v2", "/v2/models/panic/infer", `{"inputs":[{"name":"x","shape":[1,1],"datatype":"FP32","data":[1]}]}`},
		{"tfs", "/v1/models/panic:predict", `{"instances":[[1]]}`},
		{"predict", "/predict?model=panic", `{"features":[1]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, c, "POST", tt.path, []byte(tt.body))
			if r.status != 500 {
				t.Errorf("POST %s status = %d; want 500 (body %s)", tt.path, r.status, r.body)
			}
			if msg := errorMessage(t, r); !strings.Contains(msg, "internal error") || !strings.Contains(msg, "boom") {
				t.Errorf("error = %q; want it to name an internal error and the panic value", msg)
			}
			// The server, and the connection pool, still work.
			r = do(t, c, "POST", "/v2/models/double/infer", []byte(`{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"cls"}]}`))
			const want = `{"model_name":"double","model_version":"2","outputs":[{"name":"cls","datatype":"INT64","shape":[1],"data":[3]}]}`
			if r.status != 200 || r.body != want {
				t.Errorf("after a panic: POST infer = %d %s; want 200 %s", r.status, r.body, want)
			}
		})
	}
}

func TestDeadlineIs504(t *testing.T) {
	s, c, _ := testServer(t)
	timeout := s.cfg.HTTP.RequestTimeout
	tests := []struct{ name, path, body string }{
		{"v2", "/v2/models/slow/infer", `{"inputs":[{"name":"x","shape":[1,1],"datatype":"FP32","data":[1]}]}`},
		{"tfs", "/v1/models/slow:predict", `{"instances":[[1]]}`},
		{"predict", "/predict?model=slow", `{"features":[1]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			r := do(t, c, "POST", tt.path, []byte(tt.body))
			elapsed := time.Since(start)
			if r.status != 504 {
				t.Errorf("POST %s status = %d; want 504 (body %s)", tt.path, r.status, r.body)
			}
			msg := errorMessage(t, r)
			for _, w := range []string{"model slow", "deadline", timeout.String()} {
				if !strings.Contains(msg, w) {
					t.Errorf("error = %q; want it to contain %q", msg, w)
				}
			}
			// The deadline starts before the backend call, so the answer
			// comes at the timeout, not before it, and not much later.
			if elapsed < timeout || elapsed > timeout+2*time.Second {
				t.Errorf("answer took %v; want about the request timeout %v", elapsed, timeout)
			}
		})
	}
}

// promLine matches one sample line of the Prometheus text format
// (https://prometheus.io/docs/instrumenting/exposition_formats/), which
// allows a space after the commas between labels (VictoriaMetrics writes
// one in go_info_ext) and an optional timestamp.
var promLine = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(, ?[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*,?\})? (-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|NaN|[-+]Inf)( -?[0-9]+)?$`)

// checkPromText checks that every line of a Prometheus text exposition
// is a comment or a well-formed sample, and that no series repeats.
func checkPromText(t *testing.T, text string) {
	t.Helper()
	seen := map[string]bool{}
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if strings.HasPrefix(line, "# HELP ") || strings.HasPrefix(line, "# TYPE ") {
			continue
		}
		if !promLine.MatchString(line) {
			t.Errorf("line %d %q is not a Prometheus sample", i+1, line)
			continue
		}
		series := line[:strings.LastIndexByte(line, ' ')]
		if seen[series] {
			t.Errorf("line %d: series %s appears twice", i+1, series)
		}
		seen[series] = true
	}
}

func TestMetrics(t *testing.T) {
	s, c, set := testServer(t)
	v2 := []byte(`{"inputs":[{"name":"x","shape":[2,4],"datatype":"FP32","data":[1,2,3,4,5,6,7,8]}]}`)
	for range 3 {
		if r := do(t, c, "POST", "/v2/models/double/infer", v2); r.status != 200 {
			t.Fatalf("v2 infer = %d %s; want 200", r.status, r.body)
		}
	}
	for range 2 {
		if r := do(t, c, "POST", "/predict", []byte(`{"features":[1,2,3,4]}`)); r.status != 200 {
			t.Fatalf("predict = %d %s; want 200", r.status, r.body)
		}
	}
	do(t, c, "POST", "/v2/models/double/infer", []byte(`{}`))            // 400 double
	do(t, c, "POST", "/v2/models/nope/infer", v2)                        // 404, no model
	do(t, c, "GET", "/nope", nil)                                        // 404, no protocol
	do(t, c, "POST", "/v1/models/double:predict", []byte(`{"x":1}`))     // 400 double tfs
	do(t, c, "POST", "/v1/models/double:predict?a=b", []byte(`{"x":1}`)) // 400 double tfs

	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	text := buf.String()
	checkPromText(t, text)
	for _, want := range []string{
		`coalesce_requests_total{model="double",version="2",protocol="v2",code="200"} 3`,
		`coalesce_requests_total{model="double",version="2",protocol="v2",code="400"} 1`,
		`coalesce_requests_total{model="double",version="2",protocol="predict",code="200"} 2`,
		`coalesce_requests_total{model="double",version="2",protocol="tfs",code="400"} 2`,
		`coalesce_requests_total{model="",version="",protocol="v2",code="404"} 1`,
		`coalesce_requests_total{model="",version="",protocol="other",code="404"} 1`,
		`coalesce_requests_total{model="multi",version="1",protocol="v2",code="200"} 0`,
		`coalesce_request_duration_seconds_count{model="double",version="2",protocol="predict"} 2`,
		`coalesce_request_duration_seconds_count{model="double",version="2",protocol="v2"} 4`,
		`coalesce_request_duration_seconds_bucket{model="double",version="2",protocol="predict",le="+Inf"} 2`,
		// One backend execution per batch: these sequential requests ran
		// alone, on double's latest version.
		`coalesce_inference_calls_total{model="double",version="2"} 5`,
		`coalesce_inference_rows_total{model="double",version="2"} 8`,
		`coalesce_inference_duration_seconds_count{model="double",version="2"} 5`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
	buckets := regexp.MustCompile(`(?m)^coalesce_request_duration_seconds_bucket\{model="double",version="2",protocol="predict",le="([^"]+)"\} ([0-9]+)$`).FindAllStringSubmatch(text, -1)
	if len(buckets) != len(latencyBuckets)+1 {
		t.Errorf("predict latency histogram has %d buckets; want %d", len(buckets), len(latencyBuckets)+1)
	}
	prev := -1
	for _, b := range buckets {
		n, _ := strconv.Atoi(b[2])
		if n < prev {
			t.Errorf("bucket le=%s = %d < %d of the bucket before; want cumulative counts", b[1], n, prev)
		}
		prev = n
	}

	// The admin handler serves the same set plus process metrics, in the
	// same format.
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/metrics")
	s.AdminHandler(set, false)(&ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("GET /metrics = %d; want 200", ctx.Response.StatusCode())
	}
	admin := string(ctx.Response.Body())
	checkPromText(t, admin)
	if !strings.Contains(admin, `coalesce_requests_total{model="double",version="2",protocol="v2",code="200"} 3`+"\n") {
		t.Errorf("GET /metrics lacks the data-plane counters")
	}
}

func TestDraining(t *testing.T) {
	s, c, _ := testServer(t)
	infer := []byte(`{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"cls"}]}`)
	if r := do(t, c, "POST", "/v2/models/double/infer", infer); r.status != 200 || r.header["Connection"] == "close" {
		t.Fatalf("before draining: infer = %d, Connection %q; want 200 and keep-alive", r.status, r.header["Connection"])
	}
	s.SetDraining()
	tests := []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/v2/health/ready", "", 503},
		{"GET", "/v2/models/double/ready", "", 503},
		{"GET", "/v2/health/live", "", 200},
		{"POST", "/v2/models/double/infer", string(infer), 200},
		{"POST", "/v1/models/double:predict", `{"instances":[[1,2,3,4]]}`, 200},
		{"POST", "/predict", `{"features":[1,2,3,4]}`, 200},
		{"POST", "/v2/models/double/infer", `{}`, 400},
		{"POST", "/v2/models/panic/infer", `{"inputs":[{"name":"x","shape":[1,1],"datatype":"FP32","data":[1]}]}`, 500},
	}
	for _, tt := range tests {
		var body []byte
		if tt.body != "" {
			body = []byte(tt.body)
		}
		r := do(t, c, tt.method, tt.path, body)
		if r.status != tt.status {
			t.Errorf("draining: %s %s = %d %s; want %d", tt.method, tt.path, r.status, r.body, tt.status)
		}
		if r.header["Connection"] != "close" {
			t.Errorf("draining: %s %s Connection = %q; want close", tt.method, tt.path, r.header["Connection"])
		}
		if tt.status == 503 && r.header["Retry-After"] == "" {
			t.Errorf("draining: %s %s has no Retry-After", tt.method, tt.path)
		}
	}
	// The admin plane mirrors readiness.
	for path, want := range map[string]int{"/v2/health/ready": 503, "/v2/health/live": 200} {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(path)
		s.AdminHandler(nil, false)(&ctx)
		if got := ctx.Response.StatusCode(); got != want {
			t.Errorf("draining: admin GET %s = %d; want %d", path, got, want)
		}
	}
}

// concurrentCase returns request number i of goroutine g and the exact
// response it must get. Inputs differ for every (g, i), so a response
// built from another request's buffers cannot pass.
func concurrentCase(g, i int) (path string, body []byte, headers []string, want string) {
	v := g*1000 + i + 1
	f := func(x int) string { return strconv.Itoa(x) }
	// x = a row of double whose maximum sits at position p; y = 2x.
	p := v % 4
	row := []int{v, v + 1, v + 2, v + 3}
	row[p], row[3] = row[3], row[p]
	x := f(row[0]) + "," + f(row[1]) + "," + f(row[2]) + "," + f(row[3])
	y := f(2*row[0]) + "," + f(2*row[1]) + "," + f(2*row[2]) + "," + f(2*row[3])
	switch i % 5 {
	case 0: // V2 JSON
		id := f(g) + "-" + f(i)
		return "/v2/models/double/infer",
			[]byte(`{"id":"` + id + `","inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[` + x + `]}]}`), nil,
			`{"model_name":"double","model_version":"2","id":"` + id + `","outputs":[{"name":"y","datatype":"FP32","shape":[1,4],"data":[` + y + `]},{"name":"cls","datatype":"INT64","shape":[1],"data":[` + f(p) + `]}]}`
	case 1: // V2 binary in, binary y out
		hdr := `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}`
		body = []byte(hdr)
		out := `{"model_name":"double","model_version":"2","outputs":[{"name":"y","datatype":"FP32","shape":[1,4],"parameters":{"binary_data_size":16}}]}`
		for _, r := range row {
			body = binary.LittleEndian.AppendUint32(body, math.Float32bits(float32(r)))
			out += string(binary.LittleEndian.AppendUint32(nil, math.Float32bits(float32(2*r))))
		}
		return "/v2/models/double/infer", body, []string{"Inference-Header-Content-Length", strconv.Itoa(len(hdr))}, out
	case 2: // TF Serving rows, two inputs
		return "/v1/models/multi:predict",
			[]byte(`{"instances":[{"a":[` + f(v) + `,0.5],"b":[` + f(v) + `,` + f(g) + `]}]}`), nil,
			`{"predictions":[[` + f(2*v) + `,` + strconv.FormatFloat(0.5+float64(g), 'g', -1, 64) + `]]}`
	case 3: // TF Serving columnar
		return "/v1/models/double:predict", []byte(`{"inputs":[[` + x + `]]}`), nil,
			`{"outputs":{"y":[[` + y + `]],"cls":[` + f(p) + `]}}`
	default: // seed protocol, two rows
		q := (p + 1) % 4
		row2 := []string{"0", "0", "0", "0"}
		row2[q] = f(v)
		return "/predict", []byte(`{"features":[[` + x + `],[` + strings.Join(row2, ",") + `]]}`), nil,
			`{"prediction":["` + string(rune('a'+p)) + `","` + string(rune('a'+q)) + `"]}`
	}
}

func TestConcurrentRequests(t *testing.T) {
	_, c, _ := testServerWith(t, patientConfig())
	const goroutines, perGoroutine = 8, 50
	runConcurrent(t, c, goroutines, perGoroutine, concurrentCase)
}
