// Package inproc starts a Coalesce server inside a test process, serving a
// model repository on 127.0.0.1, so that the bench tool's tests can load
// it without building the binary.
package inproc

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/backends/cpu"
	"github.com/coalesce-ml/coalesce/proxy"
)

// Start serves the models of modelsDir until the test ends and returns the
// data-plane address and the admin plane's /metrics URL.
func Start(tb testing.TB, modelsDir string) (addr, metricsURL string) {
	tb.Helper()
	reg, err := backends.LoadRepository(modelsDir, cpu.Loaders(cpu.Options{}))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { reg.Close() })
	set := metrics.NewSet()
	s, err := proxy.New(proxy.Config{RequestTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second,
		WriteTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second, MaxConnections: 100,
		Limits: proxy.Limits{MaxBodyBytes: 1 << 20, MaxTensorElements: 1 << 16, MaxJSONDepth: 8}},
		reg, set, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close(context.Background()) }) // runs after the servers below shut down
	addr = serve(tb, s.HTTPServer().Handler)
	return addr, "http://" + serve(tb, s.AdminHandler(set, false)) + "/metrics"
}

func serve(tb testing.TB, h fasthttp.RequestHandler) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	tb.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}
