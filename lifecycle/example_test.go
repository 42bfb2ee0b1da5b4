package lifecycle_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/lifecycle"
	"github.com/coalesce-ml/coalesce/tensor"
)

// echo is a backend that returns its input.
type echo struct{ meta backends.Metadata }

func (b *echo) Metadata() *backends.Metadata { return &b.meta }
func (b *echo) Close() error                 { return nil }
func (b *echo) Infer(_ context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	return in, nil
}

// served is a Target that only holds the registry (proxy.Server is the
// real one).
type served struct {
	mu  sync.Mutex
	reg *backends.Registry
}

func (s *served) Registry() *backends.Registry { s.mu.Lock(); defer s.mu.Unlock(); return s.reg }
func (s *served) Update(reg *backends.Registry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reg = reg
	return nil
}

// A new version appears in the repository; Sync loads, warms and swaps it
// in and retires the old one (the version policy serves the latest); a
// broken one is reported and leaves version 2 serving.
func Example() {
	dir, _ := os.MkdirTemp("", "repo")
	defer os.RemoveAll(dir)
	write := func(v, content string) {
		os.MkdirAll(filepath.Join(dir, "echo", v), 0o755)
		os.WriteFile(filepath.Join(dir, "echo", v, "model.id"), []byte(content), 0o644)
	}
	loaders := map[string]backends.Loader{"model.id": func(path string, _ backends.LoadOptions) (backends.Backend, error) {
		if b, _ := os.ReadFile(path); string(b) != "ok" {
			return nil, fmt.Errorf("%s is not a model", filepath.Base(path))
		}
		spec := backends.TensorSpec{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 2}}
		return &echo{backends.Metadata{Inputs: []backends.TensorSpec{spec}, Outputs: []backends.TensorSpec{spec}, Concurrency: 1}}, nil
	}}
	write("1", "ok")
	reg, _ := backends.LoadRepository(dir, loaders)
	cfg := config.Default()
	cfg.Models.Repository = dir
	m := lifecycle.New(&cfg, &served{reg: reg}, loaders, metrics.NewSet(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer m.Close()

	write("2", "ok")
	m.Sync()
	write("3", "garbage")
	fmt.Println(m.Sync())
	for _, st := range m.Index() {
		fmt.Printf("%s/%s %s %q\n", st.Name, st.Version, st.State, st.Reason)
	}
	// Output:
	// model echo version 3: model.id is not a model
	// echo/1 UNAVAILABLE "unloaded"
	// echo/2 READY ""
	// echo/3 UNAVAILABLE "load: model echo version 3: model.id is not a model"
}
