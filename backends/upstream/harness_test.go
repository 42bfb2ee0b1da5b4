package upstream

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"go.uber.org/goleak"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/internal/fakemodel"
	"github.com/coalesce-ml/coalesce/proxy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp's package-level coarse clock and idle-connection
		// cleaners of closed clients finish on their own schedule.
		goleak.IgnoreTopFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreTopFunction("time.Sleep"),
	)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// serverConfig is the configuration of the in-process Coalesce servers of
// these tests.
func serverConfig() *config.Config {
	cfg := config.Default()
	cfg.Models.Default = "double"
	cfg.HTTP.RequestTimeout = 5 * time.Second
	cfg.HTTP.ReadTimeout, cfg.HTTP.WriteTimeout, cfg.HTTP.IdleTimeout = 5*time.Second, 5*time.Second, 5*time.Second
	cfg.Batching = config.Batching{Enabled: true, MaxQueueDelay: time.Millisecond, PriorityLevels: 1}
	cfg.Limits = config.Limits{MaxBodyBytes: 1 << 20, MaxTensorElements: 1 << 16, MaxJSONDepth: 8}
	cfg.Shutdown.GracePeriod = 5 * time.Second
	return &cfg
}

// serve runs h on an in-memory listener until the test ends and returns
// a dial function for it.
func serve(t testing.TB, h fasthttp.RequestHandler) func() (net.Conn, error) {
	t.Helper()
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: h, ReadTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second, Logger: nopLogger{}}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }() //nolint:errcheck // returns when the listener closes
	t.Cleanup(func() { srv.Shutdown(); ln.Close(); <-done })
	return ln.Dial
}

// nopLogger drops fasthttp's messages (the faults make it complain).
type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

// reference starts the reference upstream: a second Coalesce server
// (proxy.Server) on the fake models, and returns its handler.
func reference(t testing.TB) fasthttp.RequestHandler {
	t.Helper()
	s, err := proxy.New(serverConfig(), "upstream", fakemodel.Registry(t), metrics.NewSet(), quiet)
	must(t, err)
	t.Cleanup(func() { s.Close(context.Background()) })
	return s.Handler
}

// Fault modes of faulty, switched at any time with set.
const (
	modeOK      = iota // pass to the reference upstream
	modeRefuse         // connections are refused
	modeHang           // requests are never answered (until the test ends)
	modeSlow           // answered after slowBy
	modeGarbage        // 200 with a body that is not a response
	mode500            // 500 {"error": "boom"}
	mode503            // 503 {"error": "overloaded"}
	modeMidBody        // 200 headers and half a body, then the connection closes
)

// faulty is a fault-injecting upstream: the reference upstream behind a
// switch of failure modes.
type faulty struct {
	mode    atomic.Int32
	slowBy  time.Duration
	calls   atomic.Int64 // inference calls (POST) received
	dials   atomic.Int64 // connection attempts, refused ones included
	release chan struct{}
	dial    func() (net.Conn, error)
}

func newFaulty(t testing.TB, next fasthttp.RequestHandler) *faulty {
	t.Helper()
	f := &faulty{slowBy: 300 * time.Millisecond, release: make(chan struct{})}
	f.dial = serve(t, func(ctx *fasthttp.RequestCtx) {
		if ctx.IsPost() {
			f.calls.Add(1)
		}
		switch f.mode.Load() {
		case modeRefuse: // a request on a connection made before the server went down
			ctx.HijackSetNoResponse(true)
			ctx.Hijack(func(net.Conn) {})
			return
		case modeHang:
			select {
			case <-f.release:
			case <-time.After(10 * time.Second):
			}
			return
		case modeSlow:
			time.Sleep(f.slowBy)
		case modeGarbage:
			if !ctx.IsPost() { // a broken server fails its probes too
				ctx.Error("broken", fasthttp.StatusInternalServerError)
				return
			}
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"outputs":[{"name":"y","datatype":"FP32","shape":[1,4],"data":[1,2,`)
			return
		case mode500:
			ctx.Error(`{"error":"boom"}`, fasthttp.StatusInternalServerError)
			return
		case mode503:
			ctx.Error(`{"error":"overloaded"}`, fasthttp.StatusServiceUnavailable)
			return
		case modeMidBody:
			ctx.HijackSetNoResponse(true)
			ctx.Hijack(func(c net.Conn) {
				c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"outputs\":[{\"name\":")) //nolint:errcheck // the peer sees what it sees
			})
			return
		}
		next(ctx)
	})
	t.Cleanup(func() { close(f.release) })
	return f
}

func (f *faulty) set(mode int32) { f.mode.Store(mode) }

// Dial is the fasthttp.DialFunc of an upstream backend calling f.
func (f *faulty) Dial(string) (net.Conn, error) {
	f.dials.Add(1)
	if f.mode.Load() == modeRefuse {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	return f.dial()
}

// router dials the faulty upstream named by the address's host, for
// backends with several replicas (http://a:1, http://b:1, ...).
func router(replicas map[string]*faulty) func(string) (net.Conn, error) {
	return func(addr string) (net.Conn, error) {
		host, _, _ := net.SplitHostPort(addr)
		return replicas[host].Dial(addr)
	}
}

// testPolicy is a policy for tests: fast probes, small breakers, retries
// off, ejection off; tests change what they exercise.
func testPolicy() config.Upstream {
	p := config.DefaultUpstream()
	p.Client.PerTryTimeout = time.Second
	p.Breaker = config.UpstreamBreaker{ConsecutiveFailures: 3, FailureRatio: 0, MinRequests: 100, Interval: time.Minute, OpenTimeout: 150 * time.Millisecond, HalfOpenProbes: 1}
	p.Ejection.ConsecutiveErrors = 0
	p.Retry.MaxRetries = 0
	p.Probe = config.UpstreamProbe{Interval: time.Hour, Timeout: 200 * time.Millisecond} // tests probe by hand
	return p
}

// doubleModel is upstream.yaml's content for the reference's "double"
// model (x FP32 [-1,4] -> y FP32 [-1,4], cls INT64 [-1]) at endpoints.
func doubleModel(t testing.TB, protocol string, endpoints ...string) *config.UpstreamModel {
	t.Helper()
	p := testPolicy()
	m := &config.UpstreamModel{Protocol: protocol, Endpoints: endpoints, Model: "double", Version: "1",
		Inputs:  []config.TensorConfig{{Name: "x", DataType: "FP32", Dims: []int64{4}}},
		Outputs: []config.TensorConfig{{Name: "y", DataType: "FP32", Dims: []int64{4}}, {Name: "cls", DataType: "INT64"}},
		Client:  p.Client, Breaker: p.Breaker, Ejection: p.Ejection, Retry: p.Retry, Probe: p.Probe}
	must(t, m.Validate())
	return m
}

// newTestBackend builds a backend for cfg dialling with dial; the test
// closes it.
func newTestBackend(t testing.TB, cfg *config.UpstreamModel, dial func(string) (net.Conn, error), now func() time.Time) (*Backend, *metrics.Set) {
	t.Helper()
	set := metrics.NewSet()
	b, err := New(cfg, backends.LoadOptions{Model: "double", Version: "1"}, Options{Metrics: set, Log: quiet, Dial: dial, Now: now})
	must(t, err)
	t.Cleanup(func() { b.Close() })
	return b, set
}

// writeRepo writes a model repository of upstream versions: files maps
// "<model>/<version>/upstream.yaml" (or "<model>/config.yaml") to content.
func writeRepo(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(content), 0o644))
	}
	return dir
}

// front starts a Coalesce server whose models are the upstream versions
// of repo, dialling with dial, and returns a client for it and its
// metrics set.
func front(t testing.TB, repo string, pol config.Upstream, dial func(string) (net.Conn, error)) (*fasthttp.HostClient, *metrics.Set) {
	t.Helper()
	set := metrics.NewSet()
	loaders := map[string]backends.Loader{File: Loader(Options{Defaults: pol, Metrics: set, Log: quiet, Dial: dial})}
	reg, err := backends.LoadRepository(repo, loaders)
	must(t, err)
	cfg := serverConfig()
	cfg.Models.Default = reg.Names()[0]
	s, err := proxy.New(cfg, "front", reg, set, quiet)
	must(t, err)
	t.Cleanup(func() { s.Close(context.Background()) })
	d := serve(t, s.Handler)
	return client(d), set
}

func client(dial func() (net.Conn, error)) *fasthttp.HostClient {
	return &fasthttp.HostClient{Addr: "test", Dial: func(string) (net.Conn, error) { return dial() }}
}

// post sends body to path and returns status, body and headers.
func post(t testing.TB, c *fasthttp.HostClient, method, path string, body []byte, headers ...string) (int, []byte, *fasthttp.ResponseHeader) {
	t.Helper()
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
	must(t, c.DoTimeout(req, resp, 10*time.Second))
	h := new(fasthttp.ResponseHeader)
	resp.Header.CopyTo(h)
	return resp.StatusCode(), append([]byte(nil), resp.Body()...), h
}

// counter reads a series of set (0 when absent).
func counter(set *metrics.Set, name string) float64 {
	var sb strings.Builder
	set.WritePrometheus(&sb)
	for _, line := range strings.Split(sb.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}
