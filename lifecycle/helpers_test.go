package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"go.uber.org/goleak"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/internal/fakemodel"
	"github.com/coalesce-ml/coalesce/lifecycle"
	"github.com/coalesce-ml/coalesce/proxy"
	"github.com/coalesce-ml/coalesce/tensor"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp's own timers, which outlive servers and clients.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fakeLoaders load model.fake files by their content: "double..." is the
// fake double model (anything after the name makes a distinct file),
// "corrupt" fails to load, "badwarm" loads but fails every call,
// "half" is a file cut short (fails to load). seen records every content
// loaded.
type fakeLoaders struct {
	mu   sync.Mutex
	seen []string
	// gate, when not nil, holds the load of a file "gated" until it is
	// closed; held, when not nil, holds every batch of a version loaded
	// from "held" (once it is warm) until it is closed, and calls counts
	// the batches that reached it. Set them before the loads.
	gate, held chan struct{}
	calls      atomic.Int64
}

func (f *fakeLoaders) loaders() map[string]backends.Loader {
	return map[string]backends.Loader{"model.fake": func(path string, _ backends.LoadOptions) (backends.Backend, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		content := string(b)
		f.mu.Lock()
		f.seen = append(f.seen, content)
		f.mu.Unlock()
		switch {
		case strings.HasPrefix(content, "double"):
			return fakemodel.Models["double"](), nil
		case content == "gated":
			<-f.gate
			return fakemodel.Models["double"](), nil
		case content == "held":
			bk := fakemodel.Models["double"]()
			run := bk.Run
			bk.Run = func(ctx context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
				if f.held != nil && f.calls.Add(1) > 0 {
					<-f.held
				}
				return run(ctx, in)
			}
			return bk, nil
		case content == "badwarm":
			bk := fakemodel.Models["double"]()
			bk.Run = func(context.Context, []*tensor.Tensor) ([]*tensor.Tensor, error) {
				return nil, errors.New("kernel exploded")
			}
			return bk, nil
		}
		return nil, fmt.Errorf("%s: not a model file (%d bytes)", path, len(b))
	}}
}

func (f *fakeLoaders) loaded() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.seen)
}

// writeVersion writes <dir>/<model>/<version>/model.fake with content.
func writeVersion(t testing.TB, dir, model, version, content string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Join(dir, model, version), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, model, version, "model.fake"), []byte(content), 0o644))
}

// env is a server on a repository of fake models with a Manager, its
// data plane over an in-memory listener, and its admin handler.
type env struct {
	dir   string
	cfg   *config.Config
	srv   *proxy.Server
	m     *lifecycle.Manager
	set   *metrics.Set
	fake  *fakeLoaders
	c     *fasthttp.HostClient
	admin fasthttp.RequestHandler
}

// newEnv starts a server in control mode on the repository dir (which
// must hold at least one model).
func newEnv(t *testing.T, dir, control string) *env {
	t.Helper()
	cfg := config.Default()
	cfg.Models.Repository = dir
	cfg.Models.Control = control
	cfg.Models.Default = "double"
	// Long deadlines: these tests are about swaps on a loaded machine,
	// not about admission control.
	cfg.HTTP.RequestTimeout = time.Minute
	cfg.HTTP.MaxConnections = 200
	cfg.Limits.InflightBytes = 1 << 30
	cfg.Batching.MaxBatchSize = 8
	cfg.Batching.QueueCapacity = 1024
	cfg.Shutdown.GracePeriod = time.Minute
	e := &env{dir: dir, cfg: &cfg, set: metrics.NewSet(), fake: &fakeLoaders{}}
	reg, err := backends.LoadRepository(dir, e.fake.loaders())
	must(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e.srv, err = proxy.New(e.cfg, "test", reg, e.set, log)
	must(t, err)
	e.m = lifecycle.New(e.cfg, e.srv, e.fake.loaders(), e.set, log)
	e.srv.SetRepository(e.m)
	e.admin = e.srv.AdminHandler(e.set, false)
	ln := fasthttputil.NewInmemoryListener()
	hs := e.srv.HTTPServer()
	go hs.Serve(ln) //nolint:errcheck // returns when the listener closes
	t.Cleanup(func() {
		e.m.Close()
		hs.Shutdown()
		ln.Close()
		e.srv.Close(context.Background())
	})
	e.c = &fasthttp.HostClient{Addr: "test", Dial: func(string) (net.Conn, error) { return ln.Dial() }, MaxConns: 200}
	return e
}

// post sends body to path and returns status and body.
func (e *env) post(path, body string, headers ...string) (int, string, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod("POST")
	req.SetRequestURI("http://test" + path)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	req.SetBodyString(body)
	if err := e.c.DoTimeout(req, resp, 2*time.Minute); err != nil {
		return 0, "", err
	}
	return resp.StatusCode(), string(resp.Body()), nil
}

// adminPost calls the admin handler directly.
func (e *env) adminPost(path, body string) (int, string) {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("POST")
	ctx.Request.SetRequestURI(path)
	ctx.Request.SetBodyString(body)
	e.admin(&ctx)
	return ctx.Response.StatusCode(), string(ctx.Response.Body())
}

// status returns the index entry of name/version, or a zero Status.
func (e *env) status(name, version string) lifecycle.Status {
	for _, st := range e.m.Index() {
		if st.Name == name && st.Version == version {
			return st
		}
	}
	return lifecycle.Status{}
}

// load runs clients closed-loop clients, each sending the double model
// x = [g, i, 0, 0] unversioned over V2 and checking y = 2x, until stop is
// closed; it returns the latencies and the failures (non-200 or wrong
// answers, the first few kept).
type load struct {
	wg       sync.WaitGroup
	stop     chan struct{}
	failed   atomic.Int64
	count    atomic.Int64 // requests answered
	mu       sync.Mutex
	errs     []string
	lat      []time.Duration
	duringOn atomic.Bool // latencies are recorded into during while set
	during   []time.Duration
}

func startLoad(e *env, clients int, path string) *load {
	l := &load{stop: make(chan struct{})}
	for g := range clients {
		l.wg.Go(func() {
			var lat, during []time.Duration
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					l.mu.Lock()
					l.lat = append(l.lat, lat...)
					l.during = append(l.during, during...)
					l.mu.Unlock()
					return
				default:
				}
				body := fmt.Sprintf(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[%d,%d,0,0]}]}`, g, i%1000)
				want := fmt.Sprintf(`"data":[%d,%d,0,0]}`, 2*g, 2*(i%1000))
				start := time.Now()
				code, resp, err := e.post(path, body)
				d := time.Since(start)
				l.count.Add(1)
				if l.duringOn.Load() {
					during = append(during, d)
				} else {
					lat = append(lat, d)
				}
				if err == nil && (code != 200 || !strings.Contains(resp, want)) {
					err = fmt.Errorf("POST %s = %d %s; want 200 with %s", path, code, resp, want)
				}
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 5 {
						l.errs = append(l.errs, err.Error())
					}
					l.mu.Unlock()
				}
			}
		})
	}
	return l
}

// finish stops the clients and fails t on any failed request.
func (l *load) finish(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	for _, e := range l.errs {
		t.Error(e)
	}
	if n := l.failed.Load(); n > 0 {
		t.Fatalf("%d requests failed; want 0", n)
	}
}

func p99(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)*99/100]
}

// waitFor polls cond until it holds (no deadline: the test binary's
// -timeout bounds a hang).
func waitFor(cond func() bool) {
	for !cond() {
		time.Sleep(time.Millisecond)
	}
}

// get sends a GET to the data plane.
func (e *env) get(path string) (int, string) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://test" + path)
	if err := e.c.DoTimeout(req, resp, time.Minute); err != nil {
		return 0, err.Error()
	}
	return resp.StatusCode(), string(resp.Body())
}

func removeVersion(dir, model, version string) error {
	return os.RemoveAll(filepath.Join(dir, model, version))
}

// grepLines returns the lines of s containing substr.
func grepLines(s, substr string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
