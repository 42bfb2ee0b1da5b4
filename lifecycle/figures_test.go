package lifecycle_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/backends/cpu"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/lifecycle"
	"github.com/coalesce-ml/coalesce/proxy"
)

// TestReloadFigures measures what README's results table reports, on
// digits-mlp (the real engine) under 64 closed-loop clients, in rounds
// that interleave the two sides of each comparison (the machine is shared
// and its load moves within seconds): the p99 while versions are swapped
// (4 reloads spread over each phase, 20 in all) against the steady state
// just before; 20 reloads back to back; the RSS and heap in use after the
// reloads against before; and the p99 of a model whose requests are
// copied to a shadow (share 0.05 and 1) against an identical model
// without one. It runs only when COALESCE_FIGURES=1:
//
//	COALESCE_FIGURES=1 go test -run TestReloadFigures -v -timeout 20m ./lifecycle
//
// COALESCE_FIGURES_PHASE sets the length of a phase (default 3s).
func TestReloadFigures(t *testing.T) {
	if os.Getenv("COALESCE_FIGURES") != "1" {
		t.Skip("set COALESCE_FIGURES=1 to measure")
	}
	phase := 3 * time.Second
	if d, err := time.ParseDuration(os.Getenv("COALESCE_FIGURES_PHASE")); err == nil {
		phase = d
	}
	const rounds = 5
	dir := t.TempDir()
	src := filepath.Join("..", "models", "digits-mlp")
	conf, err := os.ReadFile(filepath.Join(src, "config.yaml"))
	must(t, err)
	// mlp: reloaded; plain, shadow5, shadow100: version 1 serves, version
	// 2 shadows it with share 0 (none), 0.05 and 1.
	for name, extra := range map[string]string{"mlp": "", "plain": "version_policy: {latest: 2}\n",
		"shadow5":   "version_policy: {latest: 2}\nshadow: {version: 2, share: 0.05, queue: 64}\n",
		"shadow100": "version_policy: {latest: 2}\nshadow: {version: 2, share: 1, queue: 64}\n"} {
		copyFile(t, filepath.Join(src, "golden.json"), filepath.Join(dir, name, "golden.json"))
		copyFile(t, filepath.Join(src, "1", "model.onnx"), filepath.Join(dir, name, "1", "model.onnx"))
		if name != "mlp" {
			copyFile(t, filepath.Join(src, "1", "model.onnx"), filepath.Join(dir, name, "2", "model.onnx"))
		}
		must(t, os.WriteFile(filepath.Join(dir, name, "config.yaml"), append(slices.Clone(conf), "\n"+extra...), 0o644))
	}

	cfg := config.Default()
	cfg.Models.Repository = dir
	cfg.HTTP.RequestTimeout = 30 * time.Second
	cfg.HTTP.MaxConnections = 200
	cfg.Limits.InflightBytes = 1 << 30
	cfg.Shutdown.GracePeriod = time.Minute
	loaders := cpu.Loaders(cpu.Options{Kernels: "auto"})
	reg, err := backends.LoadRepository(dir, loaders)
	must(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	set := metrics.NewSet()
	srv, err := proxy.New(&cfg, "figures", reg, set, log)
	must(t, err)
	m := lifecycle.New(&cfg, srv, loaders, set, log)
	ln := fasthttputil.NewInmemoryListener()
	hs := srv.HTTPServer()
	go hs.Serve(ln) //nolint:errcheck // returns when the listener closes
	defer func() { m.Close(); hs.Shutdown(); ln.Close(); srv.Close(context.Background()) }()
	e := &env{dir: dir, cfg: &cfg, srv: srv, m: m, set: set,
		c: &fasthttp.HostClient{Addr: "test", Dial: func(string) (net.Conn, error) { return ln.Dial() }, MaxConns: 200}}

	body := goldenBody(t, filepath.Join(src, "golden.json"))
	// run loads path for a warm-up of phase/5, then records the
	// latencies while during runs (or for phase).
	run := func(path string, during func()) []time.Duration {
		l := startRaw(e, 64, path, body)
		time.Sleep(phase / 5)
		l.duringOn.Store(true)
		if during != nil {
			during()
		} else {
			time.Sleep(phase)
		}
		l.finish(t)
		return l.during
	}
	v := 1
	reload := func() {
		v++
		copyFile(t, filepath.Join(src, "1", "model.onnx"), filepath.Join(dir, "mlp", strconv.Itoa(v), "model.onnx"))
		must(t, m.Sync())
	}
	const mlp = "/v2/models/mlp/infer"
	run(mlp, nil) // connections, cost model, heap at their working size
	rssBefore, heapBefore := memory(t)
	var ratios []float64
	var steadyAll, swapAll []time.Duration
	for r := range rounds {
		steady := run(mlp, nil)
		swaps := run(mlp, func() {
			for range 4 {
				reload()
				time.Sleep(phase / 4)
			}
		})
		ratios = append(ratios, float64(p99(swaps))/float64(p99(steady)))
		steadyAll, swapAll = append(steadyAll, steady...), append(swapAll, swaps...)
		t.Logf("round %d: steady p99 %v (%d requests), during 4 reloads p99 %v (%d): %.2fx", r+1, p99(steady), len(steady), p99(swaps), len(swaps), ratios[r])
	}
	slices.Sort(ratios)
	t.Logf("reloads: median ratio of p99 during swaps to steady %.2fx (rounds %.2f); pooled p99 %v steady, %v during 20 swaps",
		ratios[rounds/2], ratios, p99(steadyAll), p99(swapAll))
	start := time.Now()
	burst := run(mlp, func() {
		for range 20 {
			reload()
		}
	})
	t.Logf("20 reloads back to back in %v: p99 %v (%d requests)", time.Since(start).Round(time.Millisecond), p99(burst), len(burst))
	run(mlp, nil)
	time.Sleep(2 * time.Second) // retired versions drain and close
	rssAfter, heapAfter := memory(t)
	t.Logf("after %d reloads: RSS %d -> %d KiB (%+.1f %%), heap in use %d -> %d KiB (%+.1f %%)", v-1,
		rssBefore>>10, rssAfter>>10, pct(rssBefore, rssAfter), heapBefore>>10, heapAfter>>10, pct(heapBefore, heapAfter))

	for _, name := range []string{"shadow5", "shadow100"} {
		var rs []float64
		for range rounds {
			base := run("/v2/models/plain/versions/1/infer", nil)
			with := run("/v2/models/"+name+"/versions/1/infer", nil)
			rs = append(rs, float64(p99(with))/float64(p99(base)))
		}
		slices.Sort(rs)
		t.Logf("%s: median ratio of primary p99 with the shadow to without %.2fx (rounds %.2f)", name, rs[rounds/2], rs)
	}
	var sb strings.Builder
	set.WritePrometheus(&sb)
	t.Logf("shadow metrics:\n%s", grepLines(grepLines(sb.String(), "coalesce_shadow_"), "_total"))
}

func pct(before, after int64) float64 { return 100 * float64(after-before) / float64(before) }

// startRaw is startLoad with a fixed body, answers checked for 200 only.
func startRaw(e *env, clients int, path, body string) *load {
	l := &load{stop: make(chan struct{})}
	for range clients {
		l.wg.Go(func() {
			var lat []time.Duration
			for {
				select {
				case <-l.stop:
					l.mu.Lock()
					l.during = append(l.during, lat...)
					l.mu.Unlock()
					return
				default:
				}
				start := time.Now()
				code, resp, err := e.post(path, body)
				if l.duringOn.Load() {
					lat = append(lat, time.Since(start))
				}
				l.count.Add(1)
				if err == nil && code != 200 {
					err = fmt.Errorf("POST %s = %d %s", path, code, resp)
				}
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 5 {
						l.errs = append(l.errs, err.Error())
					}
					l.mu.Unlock()
				}
			}
		})
	}
	return l
}

func goldenBody(t *testing.T, path string) string {
	raw, err := os.ReadFile(path)
	must(t, err)
	var g struct {
		Inputs map[string]struct {
			Shape []int64   `json:"shape"`
			Data  []float64 `json:"data"`
		} `json:"inputs"`
	}
	must(t, json.Unmarshal(raw, &g))
	in := g.Inputs["input"]
	row, _ := json.Marshal(in.Data[:in.Shape[1]])
	return fmt.Sprintf(`{"inputs":[{"name":"input","datatype":"FP32","shape":[1,%d],"data":%s}]}`, in.Shape[1], row)
}

func copyFile(t *testing.T, from, to string) {
	b, err := os.ReadFile(from)
	must(t, err)
	must(t, os.MkdirAll(filepath.Dir(to), 0o755))
	must(t, os.WriteFile(to, b, 0o644))
}

// memory returns the process's resident set and the Go heap in use after
// a full GC that returns freed memory to the OS.
func memory(t *testing.T) (rss, heap int64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	f, err := os.Open("/proc/self/status")
	must(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, int64(ms.HeapInuse)
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0, 0
}

// TestReloadMemory reloads digits-mlp 100 times without traffic and logs
// the RSS and heap in use every 20 reloads: memory that grew with reloads
// would show here without the noise of a load. COALESCE_FIGURES=1 runs it.
func TestReloadMemory(t *testing.T) {
	if os.Getenv("COALESCE_FIGURES") != "1" {
		t.Skip("set COALESCE_FIGURES=1 to measure")
	}
	dir := t.TempDir()
	src := filepath.Join("..", "models", "digits-mlp")
	copyFile(t, filepath.Join(src, "config.yaml"), filepath.Join(dir, "mlp", "config.yaml"))
	copyFile(t, filepath.Join(src, "golden.json"), filepath.Join(dir, "mlp", "golden.json"))
	copyFile(t, filepath.Join(src, "1", "model.onnx"), filepath.Join(dir, "mlp", "1", "model.onnx"))
	cfg := config.Default()
	cfg.Models.Repository = dir
	loaders := cpu.Loaders(cpu.Options{Kernels: "auto"})
	reg, err := backends.LoadRepository(dir, loaders)
	must(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	set := metrics.NewSet()
	srv, err := proxy.New(&cfg, "figures", reg, set, log)
	must(t, err)
	defer srv.Close(context.Background())
	m := lifecycle.New(&cfg, srv, loaders, set, log)
	defer m.Close()
	for v := 2; v <= 101; v++ {
		copyFile(t, filepath.Join(src, "1", "model.onnx"), filepath.Join(dir, "mlp", strconv.Itoa(v), "model.onnx"))
		must(t, m.Sync())
		must(t, os.RemoveAll(filepath.Join(dir, "mlp", strconv.Itoa(v-1))))
		if (v-1)%20 == 0 || v == 2 {
			time.Sleep(200 * time.Millisecond) // the retired version closes
			rss, heap := memory(t)
			t.Logf("after %3d reloads: RSS %d KiB, heap in use %d KiB", v-1, rss>>10, heap>>10)
		}
	}
}
