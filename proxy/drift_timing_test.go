package proxy

import (
	"context"
	"io"
	"log/slog"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/backends/cpu"
	"github.com/coalesce-ml/coalesce/config"
)

// BenchmarkHandlerDrift is BenchmarkHandlerDigits/default (digits-mlp,
// 64 goroutines) with drift detection off and on at 10 % sampling
// (models/digits-mlp/profile.json: 64 input features, 21 outputs).
// cpu-ns/op is the process's CPU time (user + system, the aggregator
// included) per request, the figure the drift budget is about; compare
// medians of interleaved runs:
//
//	for i in 1 2 3 4 5 6 7 8; do for v in off on; do
//	  go test -run '^$' -bench "HandlerDrift/$v\$" -benchtime 20000x ./proxy/
//	done; done
func BenchmarkHandlerDrift(b *testing.B) {
	body, err := os.ReadFile("../models/digits-mlp/examples/predict.json")
	if err != nil {
		b.Skipf("digits-mlp example absent: %v", err)
	}
	for _, rate := range []struct {
		name string
		rate float64
	}{{"off", 0}, {"on", 0.1}} {
		b.Run(rate.name, func(b *testing.B) {
			reg, err := backends.LoadRepository("../models", cpu.Loaders(cpu.Options{}))
			if err != nil {
				b.Fatal(err)
			}
			cfg := config.Default()
			cfg.Models.Default = "digits-mlp"
			cfg.Batching = config.Batching{Enabled: true, MaxQueueDelay: time.Millisecond, PriorityLevels: 1}
			cfg.Limits = config.Limits{MaxBodyBytes: 1 << 20, MaxTensorElements: 1 << 20, MaxJSONDepth: 8}
			cfg.Drift.Enabled = rate.rate > 0
			cfg.Drift.SampleRate = rate.rate
			cfg.Drift.Interval = time.Second
			s, err := New(&cfg, "bench", reg, metrics.NewSet(), slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close(context.Background())
			e, _ := s.snap.Load().get("digits-mlp", "")
			if (e.drift != nil) != (rate.rate > 0) {
				b.Fatalf("drift handle %v; want one only when on", e.drift)
			}
			b.SetParallelism(64 / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			before := cpuTime()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) { serveLoop(b, s, "/predict", body, pb.Next) })
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-before)/float64(b.N), "cpu-ns/op")
			if e.drift != nil {
				rep := e.drift.Report()
				b.ReportMetric(float64(rep.Sampled)/float64(b.N), "sampled/op")
				b.ReportMetric(float64(rep.Dropped)/float64(b.N), "dropped/op")
			}
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
