package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/internal/fakemodel"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testLimits() config.Limits {
	return config.Limits{MaxBodyBytes: 1 << 16, MaxTensorElements: 1000, MaxJSONDepth: 8}
}

// testConfig is the configuration of testServer: the fake models' default
// model is double, requests have 200ms, batching waits up to 1ms.
func testConfig() *config.Config {
	cfg := config.Default()
	cfg.Models.Default = "double"
	cfg.HTTP.RequestTimeout = 200 * time.Millisecond
	cfg.HTTP.ReadTimeout, cfg.HTTP.WriteTimeout, cfg.HTTP.IdleTimeout = 5*time.Second, 5*time.Second, 5*time.Second
	cfg.HTTP.MaxConnections = 100
	cfg.Batching = config.Batching{Enabled: true, MaxQueueDelay: time.Millisecond, PriorityLevels: 2}
	cfg.Limits = testLimits()
	cfg.Shutdown.GracePeriod = 5 * time.Second
	return &cfg
}

// testServer starts a Server on the fake models over an in-memory
// listener and returns it with a client for it.
func testServer(t testing.TB) (*Server, *fasthttp.HostClient, *metrics.Set) {
	t.Helper()
	return testServerWith(t, testConfig())
}

// patientConfig is testConfig with a 10s request deadline, for tests of
// concurrency and correctness that a loaded machine must not turn into
// tests of admission control (which sheds what cannot meet 200ms).
func patientConfig() *config.Config {
	cfg := testConfig()
	cfg.HTTP.RequestTimeout = 10 * time.Second
	return cfg
}

// testServerWith is testServer with configuration cfg.
func testServerWith(t testing.TB, cfg *config.Config) (*Server, *fasthttp.HostClient, *metrics.Set) {
	t.Helper()
	set := metrics.NewSet()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(cfg, "test", fakemodel.Registry(t), set, log)
	must(t, err)
	ln := fasthttputil.NewInmemoryListener()
	srv := s.HTTPServer()
	go srv.Serve(ln) //nolint:errcheck // returns when the listener closes
	t.Cleanup(func() { srv.Shutdown(); ln.Close(); s.Close(context.Background()) })
	c := &fasthttp.HostClient{Addr: "test", Dial: func(string) (net.Conn, error) { return ln.Dial() }}
	return s, c, set
}

// do sends one request and returns status, body and the response
// headers of interest.
type result struct {
	status int
	body   string
	header map[string]string
}

func do(t testing.TB, c *fasthttp.HostClient, method, path string, body []byte, headers ...string) result {
	t.Helper()
	r, err := doErr(c, method, path, body, headers...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// doErr is do for goroutines other than the test's: it returns errors
// instead of failing the test.
func doErr(c *fasthttp.HostClient, method, path string, body []byte, headers ...string) (result, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://test" + path)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if body != nil {
		req.SetBody(body)
	}
	if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
		return result{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	r := result{status: resp.StatusCode(), body: string(resp.Body()), header: map[string]string{}}
	for _, h := range []string{"Content-Type", "Inference-Header-Content-Length", "Allow", "Retry-After", "Connection", "Coalesce-Cache", "X-Request-Id"} {
		if v := resp.Header.Peek(h); v != nil {
			r.header[h] = string(v)
		}
	}
	return r, nil
}

// endpointCase is one request and its exact answer; want "" is an empty
// body.
type endpointCase struct {
	name, method, path, body string
	status                   int
	want                     string
}

// runEndpointCases sends each case and checks status and exact body, and
// that a non-empty body is valid JSON.
func runEndpointCases(t *testing.T, c *fasthttp.HostClient, tests []endpointCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body []byte
			if tt.body != "" {
				body = []byte(tt.body)
			}
			r := do(t, c, tt.method, tt.path, body)
			if r.status != tt.status || r.body != tt.want {
				t.Errorf("%s %s = %d %s; want %d %s", tt.method, tt.path, r.status, r.body, tt.status, tt.want)
			}
			if r.body != "" && !json.Valid([]byte(r.body)) {
				t.Errorf("body is not valid JSON: %s", r.body)
			}
		})
	}
}

// runConcurrent sends goroutines × perGoroutine requests from concurrent
// goroutines, request i of goroutine g built by next, each of which must
// get exactly its own 200 answer; it reports the first ten failures.
func runConcurrent(t *testing.T, c *fasthttp.HostClient, goroutines, perGoroutine int,
	next func(g, i int) (path string, body []byte, headers []string, want string)) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*perGoroutine)
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				path, body, headers, want := next(g, i)
				r, err := doErr(c, "POST", path, body, headers...)
				if err != nil {
					errs <- err
					continue
				}
				if r.status != 200 || r.body != want {
					errs <- fmt.Errorf("goroutine %d request %d: POST %s = %d %q; want 200 %q", g, i, path, r.status, r.body, want)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 10 {
			t.Error(err)
		}
	}
	if n > 10 {
		t.Errorf("... and %d more errors", n-10)
	}
}
