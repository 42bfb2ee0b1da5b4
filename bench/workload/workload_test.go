package workload

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/backends/cpu"
	"github.com/coalesce-ml/coalesce/bench/loadgen"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/proxy"
)

const modelsDir = "../../models"

// startCoalesce serves the shipped models in-process on 127.0.0.1.
func startCoalesce(t *testing.T) string {
	t.Helper()
	reg, err := backends.LoadRepository(modelsDir, map[string]backends.Loader{
		"model.onnx": func(path string, mc config.Model) (backends.Backend, error) {
			return cpu.Load(path, cpu.Options{MaxBatchSize: mc.MaxBatchSize})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	s, err := proxy.New(proxy.Config{RequestTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second,
		WriteTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second, MaxConnections: 100,
		Limits: proxy.Limits{MaxBodyBytes: 1 << 20, MaxTensorElements: 1 << 16, MaxJSONDepth: 8}},
		reg, metrics.NewSet(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := s.HTTPServer()
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// TestEveryProtocolIsServed sends each protocol's pool, with a batch mix
// and repeats, to a real Coalesce server: every request must succeed.
func TestEveryProtocolIsServed(t *testing.T) {
	addr := startCoalesce(t)
	for _, proto := range []string{Predict, V2JSON, V2Binary, TFS} {
		for _, model := range []string{"digits-mlp", "iris-logreg"} {
			reqs, err := Build(Spec{Model: model, ModelsDir: modelsDir, Protocol: proto, Batch: []int{1, 2, 5}, RepeatShare: 0.3, Count: 40}, addr)
			if err != nil {
				t.Fatal(err)
			}
			res, err := loadgen.Run(context.Background(), loadgen.Config{Addr: addr, Requests: reqs, Connections: 2,
				Duration: 10 * time.Second, MaxRequests: int64(len(reqs))})
			if err != nil {
				t.Fatal(err)
			}
			if res.OK != res.Requests || res.Requests < int64(len(reqs)) {
				t.Errorf("%s %s: %d OK of %d answered (errors %v); want all of %d", proto, model, res.OK, res.Requests, res.Errors, len(reqs))
			}
		}
	}
}

func TestRepeatShare(t *testing.T) {
	distinct := func(share float64) int {
		reqs, err := Build(Spec{Model: "digits-mlp", ModelsDir: modelsDir, Protocol: Predict, RepeatShare: share, Count: 400, Seed: 1}, "h")
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, r := range reqs {
			seen[string(r.Body)] = true
		}
		return len(seen)
	}
	if n := distinct(0); n != 400 {
		t.Errorf("share 0: %d distinct bodies of 400; want all distinct", n)
	}
	if n := distinct(1); n > HotSet {
		t.Errorf("share 1: %d distinct bodies; want at most the hot set of %d", n, HotSet)
	}
	if n := distinct(0.5); n < 150 || n > 250+HotSet {
		t.Errorf("share 0.5: %d distinct bodies of 400; want about 200 + the hot set", n)
	}
}

func TestBuildErrors(t *testing.T) {
	for _, spec := range []Spec{
		{Model: "digits-mlp", ModelsDir: modelsDir, Protocol: "grpc"},
		{Model: "nope", ModelsDir: modelsDir, Protocol: Predict},
		{Model: "digits-mlp", ModelsDir: modelsDir, Protocol: Predict, Batch: []int{0}},
		{Model: "digits-mlp", ModelsDir: modelsDir, Protocol: Predict, RepeatShare: 2},
	} {
		if _, err := Build(spec, "h"); err == nil {
			t.Errorf("Build(%+v) = nil error", spec)
		}
	}
	reqs, _ := Build(Spec{Model: "iris-logreg", ModelsDir: modelsDir, Protocol: Predict, Path: "/predict", Count: 1}, "h")
	if !bytes.HasPrefix(reqs[0].Body, []byte(`{"features":[`)) || reqs[0].Path != "/predict" {
		t.Errorf("predict request = %s %s", reqs[0].Path, reqs[0].Body)
	}
}
