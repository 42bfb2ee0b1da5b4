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

	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/internal/app"
	"github.com/valyala/fasthttp"
)

// Start serves the models of modelsDir until the test ends and returns the
// data-plane address and the admin plane's /metrics URL.
func Start(tb testing.TB, modelsDir string) (addr, metricsURL string) {
	tb.Helper()
	cfg := config.Default()
	cfg.Models.Repository = modelsDir
	cfg.HTTP.MaxConnections = 100
	cfg.Limits = config.Limits{MaxBodyBytes: 1 << 20, MaxTensorElements: 1 << 16, MaxJSONDepth: 8}
	a, err := app.New(&cfg, "test", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Close(context.Background()) }) // runs after the servers below shut down
	addr = serve(tb, a.Data.Handler)
	return addr, "http://" + serve(tb, a.Admin.Handler) + "/metrics"
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
