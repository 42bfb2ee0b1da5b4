package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/coalesce-ml/coalesce/internal/fakemodel"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// BenchmarkHandlerConn measures one request through the whole data-plane
// server (fasthttp's connection loop with HTTPServer's settings, the
// Listener, the handler) on one keep-alive connection over an in-memory
// listener: what BenchmarkHandler leaves out, such as reading the body
// from the connection and the connection hooks.
func BenchmarkHandlerConn(b *testing.B) {
	cfg := testConfig()
	cfg.HTTP.RequestTimeout = 5 * time.Second
	cfg.Batching.PriorityLevels = 1
	s, err := New(cfg, "bench", fakemodel.Registry(b), metrics.NewSet(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	must(b, err)
	defer s.Close(context.Background())
	for _, c := range []struct{ name, path, body string }{
		{"predict", "/predict", `{"features":[1,5,2,3]}`},
		{"v2", "/v2/models/double/infer", `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,5,2,3]}]}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			ln := fasthttputil.NewInmemoryListener()
			srv := s.HTTPServer()
			go srv.Serve(s.Listener(ln)) //nolint:errcheck // returns when the listener closes
			defer func() { srv.Shutdown(); ln.Close() }()
			hc := &fasthttp.HostClient{Addr: "bench", Dial: func(string) (net.Conn, error) { return ln.Dial() }}
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.Header.SetMethod("POST")
			req.SetRequestURI("http://bench" + c.path)
			req.SetBodyString(c.body)
			b.ReportAllocs()
			for b.Loop() {
				if err := hc.Do(req, resp); err != nil || resp.StatusCode() != 200 {
					b.Fatalf("POST %s = %d %s %v", c.path, resp.StatusCode(), resp.Body(), err)
				}
			}
		})
	}
}
