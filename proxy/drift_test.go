package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/coalesce-ml/coalesce/drift"
	"github.com/coalesce-ml/coalesce/internal/fakemodel"
)

// zipProfile is a profile of the fake zip model: x's three columns with
// edges at 0 and 4, and its label output.
const zipProfile = `{"version": 1, "model": "zip", "rows": 100,
 "features": [
  {"name": "x0", "tensor": "x", "column": 0, "kind": "numeric", "edges": [0, 4], "ref": [0.25, 0.5, 0.25, 0]},
  {"name": "x1", "tensor": "x", "column": 1, "kind": "numeric", "edges": [0, 4], "ref": [0.25, 0.5, 0.25, 0]},
  {"name": "x2", "tensor": "x", "column": 2, "kind": "numeric", "edges": [0, 4], "ref": [0.25, 0.5, 0.25, 0]}],
 "outputs": [{"name": "label", "tensor": "label", "column": 0, "kind": "categorical", "categories": ["0", "1", "2"], "ref": [0.4, 0.3, 0.3, 0, 0]}]}`

// driftServer serves the fake models with a profile for zip, sampling
// every request, the response cache on.
func driftServer(t *testing.T) (*Server, *fasthttp.HostClient, *metrics.Set) {
	t.Helper()
	reg := fakemodel.Registry(t)
	m, err := reg.Get("zip", "")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(filepath.Dir(filepath.Dir(m.Path)), "profile.json"), []byte(zipProfile), 0o644))
	cfg := patientConfig()
	cfg.Drift.SampleRate = 1
	cfg.Drift.MinSamples = 10
	cfg.Cache.Enabled = true
	set := metrics.NewSet()
	s, err := New(cfg, "test", reg, set, slog.New(slog.NewTextHandler(io.Discard, nil)))
	must(t, err)
	ln := fasthttputil.NewInmemoryListener()
	srv := s.HTTPServer()
	go srv.Serve(ln) //nolint:errcheck // returns when the listener closes
	t.Cleanup(func() { srv.Shutdown(); ln.Close(); s.Close(context.Background()) })
	return s, &fasthttp.HostClient{Addr: "test", Dial: func(string) (net.Conn, error) { return ln.Dial() }}, set
}

func admin(t *testing.T, s *Server, set *metrics.Set, method, path, body string) (int, string) {
	t.Helper()
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(path)
	ctx.Request.SetBodyString(body)
	s.AdminHandler(set, false)(&ctx)
	return ctx.Response.StatusCode(), string(ctx.Response.Body())
}

// TestDriftSamplesRequestsAndCacheHits: every answered request (cache
// hits too) is counted with the values it had when it was answered, the
// admin endpoint ranks features, and feedback joins by X-Request-Id.
func TestDriftSamplesRequestsAndCacheHits(t *testing.T) {
	s, c, set := driftServer(t)
	for i := range 40 {
		body := `{"features":[1,5,2]}` // x1 in the top bin; label 1
		if i >= 20 {
			body = `{"features":[9,-1,2]}` // x0 top, x1 bottom; label 0
		}
		r := do(t, c, "POST", "/predict?model=zip", []byte(body), "X-Request-Id", fmt.Sprintf("req-%d", i))
		if r.status != 200 {
			t.Fatalf("predict = %d %s", r.status, r.body)
		}
	}
	status, body := admin(t, s, set, "GET", "/admin/drift/zip", "")
	if status != 200 {
		t.Fatalf("GET /admin/drift/zip = %d %s", status, body)
	}
	var got struct {
		Versions []drift.Report `json:"versions"`
	}
	must(t, json.Unmarshal([]byte(body), &got))
	if len(got.Versions) != 1 {
		t.Fatalf("versions = %d; want 1: %s", len(got.Versions), body)
	}
	rep := got.Versions[0]
	if rep.Samples+rep.Dropped != 40 {
		t.Fatalf("window_samples %d + dropped %d; want 40 (38 of them cache hits)", rep.Samples, rep.Dropped)
	}
	share := func(list []drift.FeatureReport, name, bin string) float64 {
		for _, f := range list {
			for _, b := range f.Bins {
				if f.Name == name && b.Bin == bin {
					return b.Window
				}
			}
		}
		t.Fatalf("no bin %s of %s in %s", bin, name, body)
		return 0
	}
	if rep.Dropped == 0 {
		for _, c := range []struct {
			name, bin string
			want      float64
		}{{"x0", "(0, 4]", 0.5}, {"x0", "> 4", 0.5}, {"x1", "> 4", 0.5}, {"x1", "<= 0", 0.5}, {"x2", "(0, 4]", 1}} {
			if got := share(rep.Features, c.name, c.bin); got != c.want {
				t.Errorf("%s bin %s: window share %v; want %v", c.name, c.bin, got, c.want)
			}
		}
		if got := share(rep.Outputs, "label", "1"); got != 0.5 {
			t.Errorf("label 1: window share %v; want 0.5", got)
		}
	}
	for i := 1; i < len(rep.Features); i++ {
		if rep.Features[i-1].PSI < rep.Features[i].PSI || rep.Features[0].Name != "x1" {
			t.Fatalf("features not ranked by PSI, x1 (all in the empty-ish tails) first: %+v", rep.Features)
		}
	}

	f := func(method, path, body string, status int, want string) {
		t.Helper()
		got, b := admin(t, s, set, method, path, body)
		if got != status || !strings.Contains(b, want) {
			t.Errorf("%s %s %s = %d %s; want %d containing %q", method, path, body, got, b, status, want)
		}
	}
	f("POST", "/admin/feedback/zip", `{"id":"req-3","truth":1}`, 200, `"joined":true`)
	f("POST", "/admin/feedback/zip", `{"id":"req-3","truth":1}`, 409, "arrived already")
	f("POST", "/admin/feedback/zip", `{"id":"req-30","truth":"2"}`, 200, `"version":"1"`)
	f("POST", "/admin/feedback/zip", `{"id":"nope","truth":1}`, 404, "no sampled prediction")
	f("POST", "/admin/feedback/zip", `{"truth":1}`, 400, `want {\"id\"`)
	f("POST", "/admin/feedback/zip", `{"id":"req-4","truth":"x"}`, 400, "finite number")
	f("GET", "/admin/feedback/zip", "", 405, "want POST")
	f("GET", "/admin/drift/double", "", 404, "not served with drift detection")
	f("GET", "/admin/drift/zip", "", 200, `"feedback":{"output":"label","window_samples":2,"metric":"accuracy","value":0.5}`)
}

// TestDriftSeriesFollowTheVersion: the drift series live as long as the
// version: a reload without the profile removes them.
func TestDriftSeriesFollowTheVersion(t *testing.T) {
	s, c, set := driftServer(t)
	do(t, c, "POST", "/predict?model=zip", []byte(`{"features":[1,5,2]}`))
	_, body := admin(t, s, set, "GET", "/metrics", "")
	if !strings.Contains(body, `coalesce_drift_window_samples{model="zip",version="1"}`) {
		t.Fatalf("no drift series after loading zip with a profile:\n%s", body)
	}
	must(t, s.Update(fakemodel.Registry(t))) // new loads, no profile
	_, body = admin(t, s, set, "GET", "/metrics", "")
	if strings.Contains(body, "coalesce_drift_") || strings.Contains(body, "coalesce_feedback_") {
		t.Errorf("drift series left after the version was replaced by one without a profile:\n%s", body)
	}
	do(t, c, "POST", "/predict?model=zip", []byte(`{"features":[1,5,2]}`)) // no handle, no panic
}

// TestFeedbackByGeneratedRequestID: a sampled request that sent no
// X-Request-Id is kept under the id generated for it, the one its answer
// carries, so that the application can post the truth for it.
func TestFeedbackByGeneratedRequestID(t *testing.T) {
	s, c, set := driftServer(t)
	r := do(t, c, "POST", "/predict?model=zip", []byte(`{"features":[1,5,2]}`))
	id := r.header["X-Request-Id"]
	if r.status != 200 || len(id) != 32 {
		t.Fatalf("predict = %d %s, X-Request-Id %q; want 200 and a generated 32-hex id", r.status, r.body, id)
	}
	status, body := admin(t, s, set, "POST", "/admin/feedback/zip", `{"id":"`+id+`","truth":1}`)
	if status != 200 || !strings.Contains(body, `"joined":true`) {
		t.Errorf("feedback for the generated id = %d %s; want 200 joined", status, body)
	}
}
