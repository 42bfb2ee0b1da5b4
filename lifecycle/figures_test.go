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

// TestReloadFigures measures what README's results table reports: the p99
// of 64 closed-loop clients on digits-mlp (the real engine) in steady
// state and during 20 reloads of a new version, and the RSS before and
// after them; and the p99 with a shadow copying every request against
// none. It runs only when COALESCE_FIGURES=1:
//
//	COALESCE_FIGURES=1 go test -run TestReloadFigures -v -timeout 10m ./lifecycle
func TestReloadFigures(t *testing.T) {
	if os.Getenv("COALESCE_FIGURES") != "1" {
		t.Skip("set COALESCE_FIGURES=1 to measure")
	}
	phase := 5 * time.Second
	if d, err := time.ParseDuration(os.Getenv("COALESCE_FIGURES_PHASE")); err == nil {
		phase = d
	}
	dir := t.TempDir()
	src := filepath.Join("..", "models", "digits-mlp")
	copyFile(t, filepath.Join(src, "config.yaml"), filepath.Join(dir, "digits-mlp", "config.yaml"))
	copyFile(t, filepath.Join(src, "golden.json"), filepath.Join(dir, "digits-mlp", "golden.json"))
	copyFile(t, filepath.Join(src, "1", "model.onnx"), filepath.Join(dir, "digits-mlp", "1", "model.onnx"))

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
	run := func(d time.Duration, during func()) (p99v time.Duration, n int) {
		l := startRaw(e, 64, "/v2/models/digits-mlp/infer", body)
		time.Sleep(d / 5) // warm the connections and the cost model
		l.duringOn.Store(true)
		if during != nil {
			during()
		} else {
			time.Sleep(d)
		}
		l.finish(t)
		return p99(l.during), len(l.during)
	}
	steady, n1 := run(phase, nil)
	rssBefore := rss(t)
	v := 1
	reload := func() {
		v++
		copyFile(t, filepath.Join(src, "1", "model.onnx"), filepath.Join(dir, "digits-mlp", strconv.Itoa(v), "model.onnx"))
		must(t, m.Sync())
	}
	// 20 reloads back to back (the worst case), then 20 spread over a
	// phase (one every phase/20).
	start := time.Now()
	burst, n2 := run(0, func() {
		for range 20 {
			reload()
		}
	})
	took := time.Since(start)
	spread, n3 := run(0, func() {
		for range 20 {
			reload()
			time.Sleep(phase / 20)
		}
	})
	steady2, n4 := run(phase, nil)
	time.Sleep(2 * time.Second) // retired versions drain and close
	rssAfter := rss(t)
	t.Logf("steady p99 %v (%d requests); 20 reloads back to back (%v): p99 %v (%d requests, %.2fx); 20 reloads over %v: p99 %v (%d requests, %.2fx); steady after %v (%d)",
		steady, n1, took.Round(time.Millisecond), burst, n2, float64(burst)/float64(steady), phase, spread, n3, float64(spread)/float64(steady), steady2, n4)
	t.Logf("RSS under load before %d KiB, after 40 reloads %d KiB: %+.1f %%", rssBefore>>10, rssAfter>>10, 100*float64(rssAfter-rssBefore)/float64(rssBefore))

	// Shadow: the same model as version v+1 shadowing v, against no
	// shadow (the step above).
	copyFile(t, filepath.Join(src, "1", "model.onnx"), filepath.Join(dir, "digits-mlp", strconv.Itoa(v+1), "model.onnx"))
	conf, err := os.ReadFile(filepath.Join(dir, "digits-mlp", "config.yaml"))
	must(t, err)
	for _, share := range []string{"0.05", "1"} {
		must(t, os.WriteFile(filepath.Join(dir, "digits-mlp", "config.yaml"), append(slices.Clone(conf),
			[]byte(fmt.Sprintf("\nversion_policy: {latest: 2}\nshadow: {version: %d, share: %s, queue: 64}\n", v+1, share))...), 0o644))
		must(t, m.Sync())
		l := startRaw(e, 64, fmt.Sprintf("/v2/models/digits-mlp/versions/%d/infer", v), body)
		time.Sleep(phase / 5)
		l.duringOn.Store(true)
		time.Sleep(phase)
		l.finish(t)
		t.Logf("shadow share %s: primary p99 %v (%d requests) vs %v without: %.2fx", share, p99(l.during), len(l.during), steady2, float64(p99(l.during))/float64(steady2))
	}
	var sb strings.Builder
	set.WritePrometheus(&sb)
	t.Logf("shadow metrics:\n%s", grepLines(sb.String(), "coalesce_shadow_"))
}

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

// rss returns the process's resident set after a full GC that returns
// freed memory to the OS.
func rss(t *testing.T) int64 {
	runtime.GC()
	debug.FreeOSMemory()
	f, err := os.Open("/proc/self/status")
	must(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}
