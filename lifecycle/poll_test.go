package lifecycle

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/internal/fakemodel"
	"github.com/coalesce-ml/coalesce/tensor"
)

// fakeTarget serves a registry without serving requests.
type fakeTarget struct {
	reg atomic.Pointer[backends.Registry]
}

func (f *fakeTarget) Registry() *backends.Registry { return f.reg.Load() }
func (f *fakeTarget) Update(reg *backends.Registry) error {
	if len(reg.Names()) == 0 {
		return errors.New("models: none to serve")
	}
	old := f.reg.Swap(reg)
	for _, mv := range old.All() {
		if !slices.Contains(reg.All(), mv) {
			mv.Backend.Close()
		}
	}
	return nil
}

// TestPollWaitsForTheRepositoryToSettle: in poll mode a model file
// written in two parts is loaded once, whole, after the settle delay (the
// test fires it), never half-written; Rescan (SIGHUP) loads at once.
func TestPollWaitsForTheRepositoryToSettle(t *testing.T) {
	dir := t.TempDir()
	write := func(v, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, "double", v), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "double", v, "model.fake"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("1", "double-1")
	var mu sync.Mutex
	var seen []string
	loaders := map[string]backends.Loader{"model.fake": func(path string, _ backends.LoadOptions) (backends.Backend, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		seen = append(seen, string(b))
		mu.Unlock()
		if !strings.HasPrefix(string(b), "double-") {
			return nil, errors.New("half-written")
		}
		return fakemodel.Models["double"](), nil
	}}
	cfg := config.Default()
	cfg.Models.Repository, cfg.Models.Control, cfg.Models.SettleDelay = dir, "poll", time.Hour
	reg, err := backends.LoadRepository(dir, loaders)
	if err != nil {
		t.Fatal(err)
	}
	target := &fakeTarget{}
	target.reg.Store(reg)
	defer func() { target.Registry().Close() }()
	m := New(&cfg, target, loaders, metrics.NewSet(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	// The settle timer is the test's: each event asks for one; only the
	// latest counts.
	var tmu sync.Mutex
	var timers int
	var latest chan time.Time
	m.after = func(time.Duration) <-chan time.Time {
		tmu.Lock()
		defer tmu.Unlock()
		timers++
		latest = make(chan time.Time, 1)
		return latest
	}
	fire := func() {
		tmu.Lock()
		defer tmu.Unlock()
		if latest != nil {
			select {
			case latest <- time.Time{}:
			default:
			}
		}
	}
	timersNow := func() int { tmu.Lock(); defer tmu.Unlock(); return timers }
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	write("2", "dou") // the first half of the copy
	waitUntil(func() bool { return timersNow() > 0 })
	mu.Lock()
	loadedEarly := len(seen)
	mu.Unlock()
	if loadedEarly > 1 { // version 1, at start
		t.Fatalf("a file was loaded before the repository settled: %v", seen)
	}
	write("2", "double-2") // the copy completes
	waitUntil(func() bool { fire(); return m.state("double", "2") == Ready })
	mu.Lock()
	if slices.Contains(seen, "dou") {
		t.Errorf("the half-written file was loaded: loads %q", seen)
	}
	mu.Unlock()
	if got := target.Registry().Versions("double"); len(got) != 1 || got[0].Version != "2" {
		t.Errorf("served versions after the copy: %d; want version 2 alone", len(got))
	}

	write("3", "double-3")
	m.Rescan() // SIGHUP: no settle delay
	waitUntil(func() bool { return m.state("double", "3") == Ready })

	// Deleting the newest version brings the one before back (latest: 1),
	// and the deleted one leaves the index.
	if err := os.RemoveAll(filepath.Join(dir, "double", "3")); err != nil {
		t.Fatal(err)
	}
	waitUntil(func() bool { fire(); return m.state("double", "2") == Ready && m.state("double", "3") == "" })
	if got := target.Registry().Versions("double"); len(got) != 1 || got[0].Version != "2" {
		t.Errorf("served versions after deleting version 3: %d; want version 2 alone", len(got))
	}
}

func (m *Manager) state(name, version string) State {
	m.smu.Lock()
	defer m.smu.Unlock()
	if st := m.status[key{name, version}]; st != nil {
		return st.State
	}
	return ""
}

func waitUntil(cond func() bool) {
	for !cond() {
		time.Sleep(time.Millisecond)
	}
}

// TestBatchSizes: 1, preferred and max, without repeats, capped by the
// model's own limit.
func TestBatchSizes(t *testing.T) {
	f := func(maxCfg, preferred, maxModel int, want ...int) {
		t.Helper()
		eff := config.Effective{Batching: config.Batching{MaxBatchSize: maxCfg, PreferredBatchSize: preferred}}
		if got := BatchSizes(eff, &backends.Metadata{MaxBatchSize: maxModel}); !slices.Equal(got, want) {
			t.Errorf("BatchSizes(max %d, preferred %d, model max %d) = %v; want %v", maxCfg, preferred, maxModel, got, want)
		}
	}
	f(0, 0, 0, 1, 64)
	f(32, 8, 0, 1, 8, 32)
	f(32, 8, 16, 1, 8, 16)
	f(0, 0, 1, 1)
	f(8, 8, 0, 1, 8)
}

// TestWarmUsesGoldenRows: warm-up feeds the model its golden rows, cycled
// to each batch size.
func TestWarmUsesGoldenRows(t *testing.T) {
	dir := t.TempDir()
	golden := `{"inputs":{"x":{"datatype":"FP32","shape":[2,4],"data":[1,2,3,4,5,6,7,8]}}}`
	if err := os.WriteFile(filepath.Join(dir, "golden.json"), []byte(golden), 0o644); err != nil {
		t.Fatal(err)
	}
	b := fakemodel.Models["double"]()
	var firsts []float32
	run := b.Run
	b.Run = func(ctx context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
		x := in[0].Float32s()
		firsts = append(firsts, x[0], x[len(x)-1])
		return run(ctx, in)
	}
	mv := &backends.ModelVersion{Name: "double", Version: "1", Backend: b, Meta: b.Metadata()}
	if err := Warm(mv, []int{1, 3}, readGolden(dir), time.Minute); err != nil {
		t.Fatal(err)
	}
	// Batch 1: row 0 (1..4); batch 3: rows 0, 1, 0 (ends with 4).
	if want := []float32{1, 4, 1, 4}; !slices.Equal(firsts, want) {
		t.Errorf("warm-up inputs (first, last) = %v; want %v", firsts, want)
	}
	if b.MaxRows.Load() != 3 {
		t.Errorf("largest warm-up batch = %d; want 3", b.MaxRows.Load())
	}
}
