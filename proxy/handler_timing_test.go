package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/backends/cpu"
	"github.com/coalesce-ml/coalesce/config"
)

// BenchmarkHandler measures one request through the data-plane handler
// (decode, batcher, fake model, encode, metrics) without the network, per
// protocol; allocs/op is the request path's allocation count.
func BenchmarkHandler(b *testing.B) {
	s, _, _ := testServer(b)
	cases := []struct{ name, path, body string }{
		{"predict", "/predict", `{"features":[1,5,2,3]}`},
		{"v2", "/v2/models/double/infer", `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,5,2,3]}]}`},
		{"tfs", "/v1/models/double:predict", `{"instances":[[1,5,2,3]]}`},
		// Strings (BYTES) in and out, and a map output (Keys).
		{"v2-bytes", "/v2/models/strs/infer", `{"inputs":[{"name":"s","shape":[1,2],"datatype":"BYTES","data":["setosa","virginica"]}]}`},
		{"predict-map", "/predict?model=zip", `{"features":[1,5,2]}`},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			serveLoop(b, s, c.path, []byte(c.body), b.Loop)
		})
	}
}

// serveLoop sends POST path with body through s.Handler while next says
// so, failing b on any status but 200. It is BenchmarkHandler's loop, and
// each goroutine's in BenchmarkHandlerDigits.
func serveLoop(b *testing.B, s *Server, path string, body []byte, next func() bool) {
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI(path)
	req.SetBody(body)
	var ctx fasthttp.RequestCtx
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	for next() {
		ctx.Init(&req, addr, nil) // copies the request and restarts ctx.Time()
		s.Handler(&ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Errorf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			return
		}
	}
}

// BenchmarkHandlerDigits runs the seed's /predict on the real digits-mlp
// model (CPU engine) from 64 goroutines at once, without sockets: ns/op is
// wall time per request on all cores, so it measures the handler, the
// batcher and the engine under concurrency, with batching as the
// repository default configures it, off, and waiting for batches of 8
// (preferred_batch_size).
func BenchmarkHandlerDigits(b *testing.B) {
	body, err := os.ReadFile("../models/digits-mlp/examples/predict.json")
	if err != nil {
		b.Skipf("digits-mlp example absent: %v", err)
	}
	for _, c := range []struct {
		name string
		bc   config.Batching
	}{
		{"default", config.Batching{Enabled: true, MaxQueueDelay: time.Millisecond, PriorityLevels: 1}},
		{"off", config.Batching{Enabled: false, PriorityLevels: 1}},
		{"preferred=8", config.Batching{Enabled: true, MaxQueueDelay: time.Millisecond, PreferredBatchSize: 8, PriorityLevels: 1}},
	} {
		b.Run(c.name, func(b *testing.B) {
			reg, err := backends.LoadRepository("../models", cpu.Loaders(cpu.Options{}))
			if err != nil {
				b.Fatal(err)
			}
			cfg := config.Default()
			cfg.Models.Default = "digits-mlp"
			cfg.Batching = c.bc
			cfg.Limits = config.Limits{MaxBodyBytes: 1 << 20, MaxTensorElements: 1 << 20, MaxJSONDepth: 8}
			s, err := New(&cfg, "bench", reg, metrics.NewSet(), slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close(context.Background())
			b.SetParallelism(64 / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) { serveLoop(b, s, "/predict", body, pb.Next) })
		})
	}
}
