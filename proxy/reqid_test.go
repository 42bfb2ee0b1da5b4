package proxy

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestValidRequestID(t *testing.T) {
	f := func(id string, want bool) {
		t.Helper()
		if got := validRequestID([]byte(id)); got != want {
			t.Errorf("validRequestID(%q) = %v; want %v", id, got, want)
		}
	}
	f("abc-1", true)
	f("3f2b8c1e-2a4d-4c6e-9f00-1234567890ab", true)
	f("a+b/c=d_e.f:g@h", true)
	f(strings.Repeat("x", maxRequestIDLen), true)
	f("", false)
	f(strings.Repeat("x", maxRequestIDLen+1), false)
	f("a b", false)
	f(`a"b`, false)
	f("a\nb", false)
	f("a\x00b", false)
	f("é", false)
}

func TestValidTraceParent(t *testing.T) {
	const ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	f := func(tp string, want bool) {
		t.Helper()
		if got := validTraceParent([]byte(tp)); got != want {
			t.Errorf("validTraceParent(%q) = %v; want %v", tp, got, want)
		}
	}
	f(ok, true)
	f("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true)
	f("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", true) // a later version may append
	f("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true)
	f(ok+"-extra", false)                                                // version 00 has exactly 55 characters
	f("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", false) // a later version's extension starts with "-"
	f("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false)  // version ff is invalid
	f("00-00000000000000000000000000000000-00f067aa0ba902b7-01", false)  // zero trace id
	f("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false)  // zero parent id
	f("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false)  // upper case
	f("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", false)     // no flags
	f("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", false)  // separators
	f("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", false)  // not hex
	f("", false)
}

// TestRequestIDEchoed: every data-plane answer, errors and 404s included,
// carries X-Request-Id: the client's when valid, else a new one, different
// for every request.
func TestRequestIDEchoed(t *testing.T) {
	_, c, _ := testServer(t)
	gen := regexp.MustCompile(`^[0-9a-f]{32}$`)
	get := func(method, path string, body []byte, headers ...string) string {
		t.Helper()
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.Header.SetMethod(method)
		req.SetRequestURI("http://test" + path)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		req.SetBody(body)
		must(t, c.Do(req, resp))
		return string(resp.Header.Peek(headerRequestID))
	}
	predict := []byte(`{"features": [1, 5, 2, 3]}`)
	if got := get("POST", "/predict", predict, "X-Request-Id", "client-id-7"); got != "client-id-7" {
		t.Errorf("POST /predict with X-Request-Id client-id-7 echoed %q; want client-id-7", got)
	}
	if got := get("GET", "/nope", nil, "X-Request-Id", "e-404"); got != "e-404" {
		t.Errorf("GET /nope echoed %q; want e-404 (errors too)", got)
	}
	if got := get("POST", "/predict", []byte("{bad"), "X-Request-Id", "e-400"); got != "e-400" {
		t.Errorf("POST /predict with a bad body echoed %q; want e-400", got)
	}
	seen := map[string]bool{}
	for _, sent := range []string{"", "", "has space", strings.Repeat("x", 200), `q"uote`} {
		got := get("POST", "/predict", predict, "X-Request-Id", sent)
		if !gen.MatchString(got) {
			t.Errorf("X-Request-Id %q: echoed %q; want a generated id of 32 hex digits", sent, got)
		}
		if seen[got] {
			t.Errorf("generated id %q twice", got)
		}
		seen[got] = true
	}
}

// TestRequestIDStoredOnRequest: a generated id is put on the request, so
// that an upstream call made later in the handler sends the id the client
// gets back.
func TestRequestIDStoredOnRequest(t *testing.T) {
	var ctx fasthttp.RequestCtx
	id := string(requestID(&ctx))
	if got := string(ctx.Request.Header.Peek(headerRequestID)); got != id || len(id) != 32 {
		t.Fatalf("after requestID = %q, the request's X-Request-Id is %q; want the same 32 digits", id, got)
	}
	if again := string(requestID(&ctx)); again != id {
		t.Errorf("second requestID = %q; want %q", again, id)
	}
}

func TestTraceParentDropsInvalid(t *testing.T) {
	const ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.Set("traceparent", ok)
	ctx.Request.Header.Set("tracestate", "congo=t61rcWkgMzE")
	if got := string(traceParent(&ctx)); got != ok {
		t.Errorf("traceParent = %q; want %q passed through", got, ok)
	}
	if got := string(ctx.Request.Header.Peek("tracestate")); got == "" {
		t.Error("a valid traceparent's tracestate was dropped")
	}
	ctx.Request.Header.Set("traceparent", "00-bogus")
	if got := traceParent(&ctx); got != nil {
		t.Errorf("traceParent of an invalid header = %q; want nil", got)
	}
	for _, h := range []string{"traceparent", "tracestate"} {
		if v := ctx.Request.Header.Peek(h); v != nil {
			t.Errorf("after an invalid traceparent the request still has %s: %q; want it dropped", h, v)
		}
	}
}

// TestAccessLog: with log.access_sample 1 every request writes one JSON
// line with its id, trace id, model, version, protocol, status and
// latency, and never its body; with 0, none.
func TestAccessLog(t *testing.T) {
	for _, sample := range []float64{0, 1} {
		cfg := testConfig()
		cfg.Log.AccessSample = sample
		var buf bytes.Buffer
		s, c, _ := testServerWith(t, cfg)
		s.log = slog.New(slog.NewJSONHandler(&buf, nil))
		const secret = "987654.25"
		do(t, c, "POST", "/predict", []byte(`{"features": [`+secret+`, 5, 2, 3]}`),
			"X-Request-Id", "log-1", "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		do(t, c, "GET", "/nope", nil)
		var lines []map[string]any
		for _, l := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
			var m map[string]any
			if len(l) == 0 {
				continue
			}
			must(t, json.Unmarshal(l, &m))
			if m["msg"] == "access" {
				lines = append(lines, m)
			}
		}
		if sample == 0 {
			if len(lines) != 0 {
				t.Errorf("access_sample 0 wrote %d access lines; want none", len(lines))
			}
			continue
		}
		if len(lines) != 2 {
			t.Fatalf("access_sample 1 wrote %d access lines; want 2:\n%s", len(lines), buf.String())
		}
		want := map[string]any{"request_id": "log-1", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "model": "double",
			"version": "2", "protocol": "predict", "status": 200.0, "method": "POST", "path": "/predict"}
		for k, v := range want {
			if lines[0][k] != v {
				t.Errorf("access line %s = %v; want %v (line %v)", k, lines[0][k], v, lines[0])
			}
		}
		if l, ok := lines[0]["latency_seconds"].(float64); !ok || l <= 0 {
			t.Errorf("latency_seconds = %v; want a positive number", lines[0]["latency_seconds"])
		}
		if strings.Contains(buf.String(), secret) {
			t.Errorf("the access log contains the request body's %s:\n%s", secret, buf.String())
		}
		if lines[1]["status"] != 404.0 || lines[1]["model"] != nil || len(lines[1]["request_id"].(string)) != 32 {
			t.Errorf("access line of GET /nope = %v; want status 404, no model, a generated id", lines[1])
		}
	}
}

// TestFinishRequestAllocs: with the access log off, the request-id work
// allocates nothing once the headers' buffers are warm.
func TestFinishRequestAllocs(t *testing.T) {
	s, _, _ := testServer(t)
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.Set(headerRequestID, "abc")
	s.finishRequest(&ctx, ctx.Time(), protoPredict, nil)
	if n := testing.AllocsPerRun(100, func() { s.finishRequest(&ctx, ctx.Time(), protoPredict, nil) }); n != 0 {
		t.Errorf("finishRequest with a client id allocates %v times; want 0", n)
	}
	n := testing.AllocsPerRun(100, func() {
		ctx.Request.Header.Del(headerRequestID)
		s.finishRequest(&ctx, ctx.Time(), protoPredict, nil)
	})
	if n != 0 {
		t.Errorf("finishRequest generating an id allocates %v times; want 0", n)
	}
}

func BenchmarkFinishRequest(b *testing.B) {
	s, _, _ := testServer(b)
	var ctx fasthttp.RequestCtx
	b.ReportAllocs()
	for b.Loop() {
		ctx.Request.Header.Del(headerRequestID)
		s.finishRequest(&ctx, ctx.Time(), protoPredict, nil)
	}
}
