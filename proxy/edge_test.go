package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/internal/fakemodel"
	"github.com/coalesce-ml/coalesce/tensor"
)

// edgeEnv is a data-plane server on 127.0.0.1 serving Server.Listener,
// with the fake double model and a gate model: gate: x FP32 [-1,1] ->
// y = x, each call held until the test closes gate.
type edgeEnv struct {
	s       *Server
	hs      *fasthttp.Server
	addr    string
	gate    chan struct{} // closing it lets every gate call finish
	entered chan struct{} // one value per gate call that started
}

// edgeOpts are the edge settings a test varies: limits.inflight_bytes and
// shutdown.idle_timeout.
type edgeOpts struct {
	InflightBytes int64
	DrainIdle     time.Duration
}

func newEdgeEnv(t *testing.T, maxConns int, ec edgeOpts) *edgeEnv {
	return newEdgeEnvWith(t, func(c *config.Config) { c.HTTP.MaxConnections = maxConns }, ec)
}

// newEdgeEnvWith is newEdgeEnv with the configuration changed by mod.
func newEdgeEnvWith(t *testing.T, mod func(*config.Config), ec edgeOpts) *edgeEnv {
	t.Helper()
	e := &edgeEnv{gate: make(chan struct{}), entered: make(chan struct{}, 64)}
	dir := t.TempDir()
	for _, m := range []string{"double", "gate"} {
		must(t, os.MkdirAll(filepath.Join(dir, m, "1"), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, m, "1", "model."+m), nil, 0o644))
	}
	gate := &fakemodel.Backend{
		Meta: backends.Metadata{Platform: "fake", Concurrency: 16, MaxBatchSize: 1,
			Inputs:  []backends.TensorSpec{{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 1}}},
			Outputs: []backends.TensorSpec{{Name: "y", DType: tensor.FP32, Shape: []int64{-1, 1}}}},
		Run: func(ctx context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
			e.entered <- struct{}{}
			select {
			case <-e.gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			y := *in[0]
			y.Name = "y"
			return []*tensor.Tensor{&y}, nil
		},
	}
	reg, err := backends.LoadRepository(dir, map[string]backends.Loader{
		"model.double": func(string, backends.LoadOptions) (backends.Backend, error) { return fakemodel.Models["double"](), nil },
		"model.gate":   func(string, backends.LoadOptions) (backends.Backend, error) { return gate, nil },
	})
	must(t, err)
	cfg := config.Default()
	cfg.Models.Default = "double"
	cfg.HTTP.RequestTimeout = 5 * time.Second
	cfg.HTTP.ReadTimeout, cfg.HTTP.WriteTimeout, cfg.HTTP.IdleTimeout = 5*time.Second, 5*time.Second, 5*time.Second
	cfg.HTTP.MaxConnections = 100
	cfg.Batching = config.Batching{Enabled: false, PriorityLevels: 1}
	cfg.Limits = config.Limits{MaxBodyBytes: 1 << 20, MaxTensorElements: 1 << 20, MaxJSONDepth: 8}
	cfg.Limits.InflightBytes = config.ByteSize(ec.InflightBytes)
	cfg.Shutdown.IdleTimeout = ec.DrainIdle
	mod(&cfg)
	e.s, err = New(&cfg, "test", reg, metrics.NewSet(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	must(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	e.addr = ln.Addr().String()
	e.hs = e.s.HTTPServer()
	go e.hs.Serve(e.s.Listener(ln)) //nolint:errcheck // returns when the listener closes
	t.Cleanup(func() {
		select {
		case <-e.gate:
		default:
			close(e.gate)
		}
		e.hs.Shutdown()
		ln.Close()
		e.s.Close(context.Background())
	})
	return e
}

// rawConn is a client connection that writes raw HTTP/1.1 and reads
// whole responses, to control exactly what is sent when.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func (e *edgeEnv) dial(t *testing.T) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", e.addr)
	must(t, err)
	t.Cleanup(func() { c.Close() })
	return &rawConn{c, bufio.NewReader(c)}
}

func (c *rawConn) send(t *testing.T, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if _, err := io.WriteString(c, p); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
}

// response reads one response; it fails the test after 5s.
func (c *rawConn) response(t *testing.T) *fasthttp.Response {
	t.Helper()
	resp := &fasthttp.Response{}
	must(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	if err := resp.Read(c.br); err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	return resp
}

// closedByServer reports whether the server closed the connection
// without sending anything more, waiting up to 5s.
func (c *rawConn) closedByServer(t *testing.T) bool {
	t.Helper()
	must(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	b, err := c.br.ReadByte()
	if err == nil {
		t.Errorf("read %q; want the connection closed", b)
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// head returns the request line and headers of a request with a body of
// n bytes (-1: chunked).
func head(method, path string, n int, extra ...string) string {
	h := method + " " + path + " HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
	if n >= 0 {
		h += "Content-Length: " + strconv.Itoa(n) + "\r\n"
	} else {
		h += "Transfer-Encoding: chunked\r\n"
	}
	for _, x := range extra {
		h += x + "\r\n"
	}
	return h + "\r\n"
}

const (
	predictBody   = `{"features":[1,5,2,3]}`
	predictAnswer = `{"prediction":[[2,10,4,6]]}`
)

// waitFor polls cond for up to 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func checkStatus(t *testing.T, what string, resp *fasthttp.Response, status int, bodyHas string, close bool) {
	t.Helper()
	if resp.StatusCode() != status || !strings.Contains(string(resp.Body()), bodyHas) || resp.ConnectionClose() != close {
		t.Errorf("%s = %d %s (Connection: close %v); want %d with %q (Connection: close %v)",
			what, resp.StatusCode(), resp.Body(), resp.ConnectionClose(), status, bodyHas, close)
	}
}

// TestBudgetAdmission holds part of the in-flight byte budget with a
// request whose body is half sent, and checks that requests that do not
// fit are answered 503 from their headers alone, whatever the framing,
// and that the budget comes back on every path.
func TestBudgetAdmission(t *testing.T) {
	e := newEdgeEnvWith(t, func(c *config.Config) { c.Limits.MaxBodyBytes = 24000 }, edgeOpts{InflightBytes: 30000})
	used := func() int64 { return e.s.edge.budget.used.Load() }

	// A: 20000 bytes announced, 9000 sent: the budget is charged when
	// the headers are in.
	a := e.dial(t)
	a.send(t, head("POST", "/predict", 20000), strings.Repeat(" ", 9000))
	waitFor(t, "A admitted", func() bool { return used() == 20000 })

	over := func(t *testing.T, c *rawConn) {
		t.Helper()
		resp := c.response(t)
		checkStatus(t, "over budget", resp, 503, "limits.inflight_bytes", true)
		if string(resp.Header.Peek("Retry-After")) == "" || string(resp.Header.ContentType()) != "application/json" {
			t.Errorf("503 headers %q; want Retry-After and a JSON body", resp.Header.String())
		}
		// The body was not read: the connection closes rather than
		// parse it as the next request.
		if !c.closedByServer(t) {
			t.Error("connection left open after a 503 with Connection: close")
		}
	}
	t.Run("content-length", func(t *testing.T) {
		b := e.dial(t)
		b.send(t, head("POST", "/predict", 20000)) // the headers alone
		over(t, b)
	})
	t.Run("expect 100-continue", func(t *testing.T) {
		b := e.dial(t)
		b.send(t, head("POST", "/predict", 20000, "Expect: 100-continue"))
		over(t, b)
	})
	t.Run("chunked", func(t *testing.T) {
		// Charged limits.max_body_bytes (24000), which does not fit.
		b := e.dial(t)
		b.send(t, head("POST", "/predict", -1), "5\r\n"+predictBody[:5]+"\r\n")
		over(t, b)
	})
	if n := used(); n != 20000 {
		t.Errorf("budget in use after refusals = %d; want 20000 (A's)", n)
	}

	// A's body completes: it is answered (400, it is not JSON) and the
	// budget is free again.
	a.send(t, strings.Repeat(" ", 20000-9000))
	checkStatus(t, "A", a.response(t), 400, "", false)
	waitFor(t, "budget released", func() bool { return used() == 0 })

	t.Run("expect 100-continue admitted", func(t *testing.T) {
		b := e.dial(t)
		b.send(t, head("POST", "/predict", len(predictBody), "Expect: 100-continue"))
		must(t, b.SetReadDeadline(time.Now().Add(5*time.Second)))
		line, err := b.br.ReadString('\n')
		if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
			t.Fatalf("interim response %q, %v; want 100 Continue", line, err)
		}
		if _, err := b.br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		b.send(t, predictBody)
		checkStatus(t, "admitted", b.response(t), 200, predictAnswer, false)
	})
	t.Run("chunked admitted", func(t *testing.T) {
		b := e.dial(t)
		b.send(t, head("POST", "/predict", -1), "5\r\n"+predictBody[:5]+"\r\n", strconv.FormatInt(int64(len(predictBody)-5), 16)+"\r\n"+predictBody[5:]+"\r\n0\r\n\r\n")
		checkStatus(t, "chunked", b.response(t), 200, predictAnswer, false)
	})
	waitFor(t, "budget released", func() bool { return used() == 0 })

	// Clients that go away mid-body give the budget back.
	t.Run("abandoned bodies", func(t *testing.T) {
		b := e.dial(t)
		b.send(t, head("POST", "/predict", 20000), strings.Repeat(" ", 100))
		waitFor(t, "admitted", func() bool { return used() == 20000 })
		b.Close()
		waitFor(t, "budget released after EOF mid-body", func() bool { return used() == 0 })

		b = e.dial(t)
		b.send(t, head("POST", "/predict", 20000, "Expect: 100-continue"))
		must(t, b.SetReadDeadline(time.Now().Add(5*time.Second)))
		if line, err := b.br.ReadString('\n'); err != nil || line != "HTTP/1.1 100 Continue\r\n" {
			t.Fatalf("interim response %q, %v; want 100 Continue", line, err)
		}
		b.Close()
		waitFor(t, "budget released after EOF instead of the body", func() bool { return used() == 0 })
	})
}

// TestBodyTooLarge checks that a body over limits.max_body_bytes gets 413
// before it is read, whatever its framing.
func TestBodyTooLarge(t *testing.T) {
	for _, budget := range []int64{0, 4 << 20} {
		e := newEdgeEnv(t, 100, edgeOpts{InflightBytes: budget})
		b := e.dial(t)
		b.send(t, head("POST", "/predict", 2<<20, "Expect: 100-continue"))
		checkStatus(t, "expect, over max_body_bytes", b.response(t), 413, "limits.max_body_bytes", true)
		b = e.dial(t)
		b.send(t, head("POST", "/predict", 2<<20))
		checkStatus(t, "over max_body_bytes", b.response(t), 413, "limits.max_body_bytes", true)
		b = e.dial(t)
		chunk := strings.Repeat(" ", 1<<16)
		b.send(t, head("POST", "/predict", -1))
		for range 20 { // 1.25 MiB in all; the answer comes before the end
			if _, err := io.WriteString(b, "10000\r\n"+chunk+"\r\n"); err != nil {
				break // the server answered and closed
			}
		}
		checkStatus(t, "chunked, over max_body_bytes", b.response(t), 413, "limits.max_body_bytes", true)
		waitFor(t, "budget released", func() bool { return e.s.edge.budget.used.Load() == 0 })
	}
}

// TestKeylessBodyNotRead checks that with API keys on, a request without
// a valid key is answered 401 from its headers: its body is neither read
// nor charged to limits.inflight_bytes, so callers without a key cannot
// fill the budget that keyed requests need (the request sends only its
// headers; before, it held its Content-Length of the budget waiting for
// a body, and the keyed request beside it got 503). Without a budget the
// body is not read either.
func TestKeylessBodyNotRead(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys.yaml")
	writeKeys(t, keys, keyFile(""))
	for _, budget := range []int64{0, 30000} {
		e := newEdgeEnvWith(t, func(c *config.Config) {
			c.Limits.MaxBodyBytes = 24000
			c.Auth.KeysFile = keys
			c.Auth.ReloadInterval = 0
		}, edgeOpts{InflightBytes: budget})
		for _, tc := range []struct{ name, header string }{
			{"missing", ""},
			{"invalid", "X-API-Key: " + keyOther},
		} {
			c := e.dial(t)
			var extra []string
			if tc.header != "" {
				extra = append(extra, tc.header)
			}
			c.send(t, head("POST", "/predict", 20000, extra...)) // the headers alone
			checkStatus(t, tc.name+" key", c.response(t), 401, "API key", true)
			if n := e.s.edge.budget.used.Load(); n != 0 {
				t.Errorf("budget %d: %s key holds %d bytes of the budget; want 0", budget, tc.name, n)
			}
			c = e.dial(t)
			c.send(t, head("POST", "/predict", 20000, append(extra, "Expect: 100-continue")...))
			checkStatus(t, tc.name+" key, expect 100-continue", c.response(t), 401, "API key", true)
		}
		// Health probes need no key, with or without a body.
		c := e.dial(t)
		c.send(t, head("POST", "/v2/health/live?x=1", 2), "{}")
		checkStatus(t, "health probe with a body", c.response(t), 405, "", false)
		// A keyed request is admitted and answered.
		c = e.dial(t)
		c.send(t, head("POST", "/predict", len(predictBody), "X-API-Key: "+keyApp), predictBody)
		checkStatus(t, "keyed", c.response(t), 200, predictAnswer, false)
	}
}

// TestArrivalIsFirstByte checks that a request's deadline counts from
// the arrival of its first byte, not from when its body was complete:
// a request whose body arrives after its deadline is not run.
func TestArrivalIsFirstByte(t *testing.T) {
	e := newEdgeEnv(t, 100, edgeOpts{})
	c := e.dial(t)
	c.send(t, head("POST", "/predict", len(predictBody), "Coalesce-Timeout: 200ms"))
	time.Sleep(500 * time.Millisecond) // a slow client: the body comes after the deadline
	c.send(t, predictBody)
	checkStatus(t, "body after the deadline", c.response(t), 504, "deadline", false)

	c.send(t, head("POST", "/predict", len(predictBody), "Coalesce-Timeout: 5s"), predictBody)
	checkStatus(t, "in time", c.response(t), 200, predictAnswer, false)
}

// TestBudgetReleasedWhenShed checks that a request answered before its
// handler's work (here shed by http.max_inflight) gives its charge back.
func TestBudgetReleasedWhenShed(t *testing.T) {
	e := newEdgeEnvWith(t, func(c *config.Config) { c.HTTP.MaxInflight = 1 }, edgeOpts{InflightBytes: 1 << 20})
	body := `{"features":[7]}`
	held := e.dial(t)
	held.send(t, head("POST", "/predict?model=gate", len(body)), body)
	<-e.entered
	c := e.dial(t)
	c.send(t, head("POST", "/predict", len(predictBody)), predictBody)
	checkStatus(t, "over http.max_inflight", c.response(t), 503, "http.max_inflight", false)
	if n := e.s.edge.budget.used.Load(); n != int64(len(body)) {
		t.Errorf("budget in use = %d; want %d, the held request's", n, len(body))
	}
	close(e.gate)
	checkStatus(t, "held", held.response(t), 200, `{"prediction":[7]}`, false)
	waitFor(t, "budget released", func() bool { return e.s.edge.budget.used.Load() == 0 })
}
