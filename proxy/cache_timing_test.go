package proxy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/backends/cpu"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

// digitsBodies returns n different /predict bodies for digits-mlp: the
// example row with its first three pixels replaced by the digits of i in
// base 17 (n ≤ 4913).
func digitsBodies(b *testing.B, n int) [][]byte {
	raw, err := os.ReadFile("../models/digits-mlp/examples/predict.json")
	if err != nil {
		b.Skipf("digits-mlp example absent: %v", err)
	}
	var ex struct{ Features []float64 }
	if err := json.Unmarshal(raw, &ex); err != nil {
		b.Fatal(err)
	}
	bodies := make([][]byte, n)
	for i := range bodies {
		f := append([]float64(nil), ex.Features...)
		f[0], f[1], f[2] = float64(i%17), float64(i/17%17), float64(i/289%17)
		body := []byte(`{"features":[`)
		for j, v := range f {
			if j > 0 {
				body = append(body, ',')
			}
			body = strconv.AppendFloat(body, v, 'g', -1, 64)
		}
		bodies[i] = append(body, "]}"...)
	}
	return bodies
}

// BenchmarkCacheDigits measures one POST /predict on the real digits-mlp
// model through the handler, on one goroutine without sockets: with the
// cache off; on, with every request a miss (4096 different bodies
// cycling through a cache that holds about 1000, so every request also
// evicts one); on with dedup as well; and a hit (one body repeated).
// hits/op counts Coalesce-Cache: hit answers.
func BenchmarkCacheDigits(b *testing.B) {
	bodies := digitsBodies(b, 4096)
	for _, c := range []struct {
		name   string
		cache  config.Cache
		repeat bool
	}{
		{"off", config.Cache{}, false},
		{"miss", config.Cache{Enabled: true, MaxBytes: 1 << 20}, false},
		{"miss-dedup", config.Cache{Enabled: true, MaxBytes: 1 << 20, Dedup: true}, false},
		{"hit", config.Cache{Enabled: true, MaxBytes: 1 << 20}, true},
		{"off-repeat", config.Cache{}, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			s := digitsServer(b, c.cache)
			var req fasthttp.Request
			req.Header.SetMethod("POST")
			req.SetRequestURI("/predict")
			var ctx fasthttp.RequestCtx
			addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
			hits := 0
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if c.repeat {
					req.SetBody(bodies[0])
				} else {
					req.SetBody(bodies[i%len(bodies)])
				}
				i++
				ctx.Init(&req, addr, nil)
				s.Handler(&ctx)
				if ctx.Response.StatusCode() != 200 {
					b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
				if string(ctx.Response.Header.Peek("Coalesce-Cache")) == "hit" {
					hits++
				}
			}
			b.ReportMetric(float64(hits)/float64(i), "hits/op")
		})
	}
}

// digitsServer serves the model repository with digits-mlp as the
// default model and the given cache configuration.
func digitsServer(b *testing.B, cc config.Cache) *Server {
	reg, err := backends.LoadRepository("../models", cpu.Loaders(cpu.Options{}))
	if err != nil {
		b.Fatal(err)
	}
	cfg := config.Default()
	cfg.Models.Default = "digits-mlp"
	cfg.Limits = config.Limits{MaxBodyBytes: 1 << 20, MaxTensorElements: 1 << 20, MaxJSONDepth: 8}
	cfg.Cache = cc
	s, err := New(&cfg, "bench", reg, metrics.NewSet(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// heavy is a backend whose every call keeps a core busy for 1ms, one
// row per call, two calls at once: a model where inference dominates.
type heavy struct {
	meta  backends.Metadata
	calls atomic.Int64
}

func newHeavy() *heavy {
	return &heavy{meta: backends.Metadata{Platform: "fake",
		Inputs:       []backends.TensorSpec{{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 4}}},
		Outputs:      []backends.TensorSpec{{Name: "y", DType: tensor.FP32, Shape: []int64{-1, 4}}},
		MaxBatchSize: 1, Concurrency: 2}}
}

func (h *heavy) Metadata() *backends.Metadata { return &h.meta }
func (h *heavy) Close() error                 { return nil }
func (h *heavy) Infer(_ context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	h.calls.Add(1)
	x := 1.0
	for start := time.Now(); time.Since(start) < time.Millisecond; {
		for range 100 {
			x = x*1.0000001 + 1e-9
		}
	}
	out := tensor.New("y", tensor.FP32, in[0].Shape)
	for i, v := range in[0].Float32s() {
		out.Float32s()[i] = v + float32(x-x)
	}
	return []*tensor.Tensor{out}, nil
}

// BenchmarkCacheRepeats is end to end over HTTP (fasthttp client and
// server on an in-memory listener, no kernel sockets): 64 clients send
// V2 JSON requests to a model whose every call takes 1ms of CPU; 90 % of
// the requests repeat one of 8 inputs, the rest are all different.
// ns/op is wall time per request over all clients; compare cache on and
// off.
func BenchmarkCacheRepeats(b *testing.B) {
	const hot = 8
	body := func(i int, repeat bool) []byte {
		v := i % hot
		if !repeat {
			v = hot + i
		}
		return []byte(`{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[` + strconv.Itoa(v) + `,1,2,3]}]}`)
	}
	for _, c := range []struct {
		name  string
		cache config.Cache
	}{
		{"off", config.Cache{}},
		{"on", config.Cache{Enabled: true, MaxBytes: 64 << 20, Dedup: true}},
	} {
		b.Run(c.name, func(b *testing.B) {
			hv := newHeavy()
			m := &backends.ModelVersion{Name: "heavy", Version: "1", Backend: hv, Config: config.ModelConfig{QueueCapacity: 256}}
			m.Meta = m.Backend.Metadata()
			reg := (&backends.Registry{}).With(m)
			cfg := config.Default()
			cfg.Cache = c.cache
			cfg.Models.Default = "heavy"
			cfg.HTTP.RequestTimeout = time.Minute
			s, err := New(&cfg, "bench", reg, metrics.NewSet(), slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			ln := fasthttputil.NewInmemoryListener()
			srv := s.HTTPServer()
			go srv.Serve(ln) //nolint:errcheck // returns when the listener closes
			defer func() { srv.Shutdown(); ln.Close(); s.Close(context.Background()) }()
			client := &fasthttp.HostClient{Addr: "bench", MaxConns: 64, Dial: func(string) (net.Conn, error) { return ln.Dial() }}
			var mu sync.Mutex
			next := 0
			b.SetParallelism(32) // 64 clients on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(resp)
				req.Header.SetMethod("POST")
				req.SetRequestURI("http://bench/v2/models/heavy/infer")
				for pb.Next() {
					mu.Lock()
					i := next
					next++
					mu.Unlock()
					req.SetBody(body(i, i%10 != 0))
					if err := client.Do(req, resp); err != nil || resp.StatusCode() != 200 {
						b.Errorf("%v %d %s", err, resp.StatusCode(), resp.Body())
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(hv.calls.Load())/float64(b.N), "calls/op")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}
