package lifecycle_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	rtmetrics "runtime/metrics"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/backends/cpu"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/proxy"
	"github.com/coalesce-ml/coalesce/tensor"
)

// TestShadowFigures measures what a shadow costs the primary's answers:
// the p50 and p99 of digits-mlp (the real engine) at a fixed offered rate,
// with no shadow (twice: off and off2, identical, show the noise of the
// measure), with a shadow of share 1 (every answered request is copied to
// version 2, the same model) and of share 0.1, and with a slow shadow of
// share 1 (version 2 holds every batch for 20 ms, so that its queue fills
// and copies are dropped). The five are models of one server, measured
// in interleaved rounds (the machine is shared and its load moves within
// seconds); each round's p50 and p99 are kept, and the medians over the
// rounds and the median of the per-round ratios to the round's no-shadow
// p99 are reported. Offered load is paced (each sender at its own
// schedule, not waiting for a slow answer beyond its next slot), since a
// closed loop at saturation measures the CPU the shadow takes, not the
// delay it adds to an answer. It runs only when COALESCE_FIGURES=1:
//
//	COALESCE_FIGURES=1 go test -count=1 -run TestShadowFigures -v -timeout 20m ./lifecycle
//
// COALESCE_FIGURES_RATE (requests/s, default 4000), COALESCE_FIGURES_ROUNDS
// (default 10: each mode twice in each position of the rotating order) and COALESCE_FIGURES_PHASE (default 3s) change the load;
// COALESCE_FIGURES_INTERVAL sets the shadows' shadow.interval.
// COALESCE_FIGURES_MODES (comma-separated, the first being the reference
// of the ratios) measures a subset. Each mode's runtime scheduling
// latencies, GC cycles and user CPU are logged; under go test -trace each
// phase ("phase <mode>") and each request ("request") is a trace region.
func TestShadowFigures(t *testing.T) {
	if os.Getenv("COALESCE_FIGURES") != "1" {
		t.Skip("set COALESCE_FIGURES=1 to measure")
	}
	phase, rate, rounds := 3*time.Second, 4000, 10
	if d, err := time.ParseDuration(os.Getenv("COALESCE_FIGURES_PHASE")); err == nil {
		phase = d
	}
	if n, err := strconv.Atoi(os.Getenv("COALESCE_FIGURES_RATE")); err == nil && n > 0 {
		rate = n
	}
	if n, err := strconv.Atoi(os.Getenv("COALESCE_FIGURES_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	interval := "" // the default shadow.interval
	if d, err := time.ParseDuration(os.Getenv("COALESCE_FIGURES_INTERVAL")); err == nil {
		interval = ", interval: " + d.String()
	}
	dir := t.TempDir()
	src := filepath.Join("..", "models", "digits-mlp")
	conf, err := os.ReadFile(filepath.Join(src, "config.yaml"))
	must(t, err)
	for name, extra := range map[string]string{
		"off":   "version_policy: {latest: 2}\n",
		"off2":  "version_policy: {latest: 2}\n",
		"on":    "version_policy: {latest: 2}\nshadow: {version: 2, share: 1, queue: 64" + interval + "}\n",
		"share": "version_policy: {latest: 2}\nshadow: {version: 2, share: 0.1, queue: 64" + interval + "}\n",
		"slow":  "version_policy: {latest: 2}\nshadow: {version: 2, share: 1, queue: 64" + interval + "}\n"} {
		copyFile(t, filepath.Join(src, "golden.json"), filepath.Join(dir, name, "golden.json"))
		for _, v := range []string{"1", "2"} {
			copyFile(t, filepath.Join(src, "1", "model.onnx"), filepath.Join(dir, name, v, "model.onnx"))
		}
		must(t, os.WriteFile(filepath.Join(dir, name, "config.yaml"), append(slices.Clone(conf), "\n"+extra...), 0o644))
	}
	cfg := config.Default()
	cfg.Models.Repository = dir
	cfg.HTTP.RequestTimeout = 30 * time.Second
	cfg.HTTP.MaxConnections = 200
	cfg.Limits.InflightBytes = 1 << 30
	cfg.Shutdown.GracePeriod = time.Minute
	reg, err := backends.LoadRepository(dir, cpu.Loaders(cpu.Options{Kernels: "auto"}))
	must(t, err)
	slow, err := reg.Get("slow", "2")
	must(t, err)
	reg = reg.With(&backends.ModelVersion{Name: slow.Name, Version: slow.Version, Path: slow.Path, Config: slow.Config,
		Backend: slowBackend{slow.Backend, 20 * time.Millisecond}, Meta: slow.Meta})
	set := metrics.NewSet()
	srv, err := proxy.New(&cfg, "figures", reg, set, slog.New(slog.NewTextHandler(io.Discard, nil)))
	must(t, err)
	ln := fasthttputil.NewInmemoryListener()
	hs := srv.HTTPServer()
	go hs.Serve(ln) //nolint:errcheck // returns when the listener closes
	defer func() { hs.Shutdown(); ln.Close(); srv.Close(context.Background()) }()
	c := &fasthttp.HostClient{Addr: "test", Dial: func(string) (net.Conn, error) { return ln.Dial() }, MaxConns: 200}
	body := goldenBody(t, filepath.Join(src, "golden.json"))

	modes := []string{"off", "off2", "on", "share", "slow"}
	if m := os.Getenv("COALESCE_FIGURES_MODES"); m != "" {
		modes = strings.Split(m, ",") // the first is the reference of the ratios
	}
	sched := map[string]*schedStats{}
	p50s, p99s := map[string][]time.Duration{}, map[string][]time.Duration{}
	ratios := map[string][]float64{}
	paced(t, c, "/v2/models/off/versions/1/infer", body, rate, phase) // warm-up: connections, cost model, heap
	for r := range rounds {
		var line []string
		// Each round starts at another mode, so that no mode always
		// follows the same one (a shadow's queued copies, a slow
		// shadow's held batch) or always comes first.
		order := append(slices.Clone(modes[r%len(modes):]), modes[:r%len(modes)]...)
		for _, mode := range order {
			before := readSched()
			ph := trace.StartRegion(context.Background(), "phase "+mode) // the phases of a go test -trace
			lat := paced(t, c, "/v2/models/"+mode+"/versions/1/infer", body, rate, phase)
			ph.End()
			if sched[mode] == nil {
				sched[mode] = &schedStats{}
			}
			sched[mode].add(before, readSched())
			slices.Sort(lat)
			p50s[mode] = append(p50s[mode], lat[len(lat)/2])
			p99s[mode] = append(p99s[mode], lat[len(lat)*99/100])
			line = append(line, mode+" p50 "+lat[len(lat)/2].String()+" p99 "+lat[len(lat)*99/100].String()+" ("+strconv.Itoa(len(lat))+")")
		}
		for _, mode := range modes[1:] {
			ratios[mode] = append(ratios[mode], float64(p99s[mode][r])/float64(p99s[modes[0]][r]))
		}
		t.Logf("round %d: %s", r+1, strings.Join(line, ", "))
	}
	med := func(d []time.Duration) time.Duration { d = slices.Clone(d); slices.Sort(d); return d[len(d)/2] }
	medf := func(f []float64) float64 { f = slices.Clone(f); slices.Sort(f); return f[len(f)/2] }
	for _, mode := range modes {
		t.Logf("%s: median p50 %v, median p99 %v (rounds' p99 %v)", mode, med(p50s[mode]), med(p99s[mode]), p99s[mode])
	}
	for _, mode := range modes {
		t.Logf("%s: runtime %s", mode, sched[mode])
	}
	for _, mode := range modes[1:] {
		t.Logf("%s ÷ "+modes[0]+": p50 %.3fx, p99 %.3fx (ratio of medians); median of the rounds' p99 ratios %.3fx (%.2f)", mode,
			float64(med(p50s[mode]))/float64(med(p50s[modes[0]])), float64(med(p99s[mode]))/float64(med(p99s[modes[0]])), medf(ratios[mode]), ratios[mode])
	}
	var sb strings.Builder
	set.WritePrometheus(&sb)
	t.Logf("shadow metrics:\n%s", grepLines(grepLines(sb.String(), "coalesce_shadow_"), "_total"))
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		t.Logf("load average: %s", strings.TrimSpace(string(la)))
	}
}

// paced sends body to path at rate requests/s for d from 32 senders, each
// on its own schedule (a sender behind its schedule sends at once, so
// that a slow answer delays the ones after it, as an open loop's would
// queue), and returns the latencies from send to answer. Any answer but
// 200 fails the test.
func paced(t *testing.T, c *fasthttp.HostClient, path, body string, rate int, d time.Duration) []time.Duration {
	const senders = 32
	interval := time.Duration(senders) * time.Second / time.Duration(rate)
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	for s := range senders {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			var lat []time.Duration
			next := start.Add(interval * time.Duration(s) / senders)
			for next.Sub(start) < d {
				if w := time.Until(next); w > 0 {
					time.Sleep(w)
				}
				req.Reset()
				req.Header.SetMethod("POST")
				req.SetRequestURI("http://test" + path)
				req.SetBodyString(body)
				sent := time.Now()
				var rg *trace.Region
				if trace.IsEnabled() {
					rg = trace.StartRegion(context.Background(), "request")
				}
				err := c.DoTimeout(req, resp, time.Minute)
				lat = append(lat, time.Since(sent))
				if rg != nil {
					rg.End()
				}
				if err != nil || resp.StatusCode() != 200 {
					t.Errorf("POST %s = %v %d %s", path, err, resp.StatusCode(), resp.Body())
					return
				}
				next = next.Add(interval)
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(all) == 0 {
		t.Fatalf("no answers from %s", path)
	}
	return all
}

// slowBackend holds every batch for delay before running it.
type slowBackend struct {
	backends.Backend
	delay time.Duration
}

func (b slowBackend) Infer(ctx context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	time.Sleep(b.delay)
	return b.Backend.Infer(ctx, in)
}

// schedSample is what readSched reads of the runtime's metrics.
type schedSample struct {
	lat          *rtmetrics.Float64Histogram // /sched/latencies:seconds
	gcs, cpuUser float64
}

func readSched() schedSample {
	s := []rtmetrics.Sample{{Name: "/sched/latencies:seconds"}, {Name: "/gc/cycles/total:gc-cycles"}, {Name: "/cpu/classes/user:cpu-seconds"}}
	rtmetrics.Read(s)
	h := s[0].Value.Float64Histogram()
	return schedSample{lat: &rtmetrics.Float64Histogram{Counts: slices.Clone(h.Counts), Buckets: h.Buckets},
		gcs: float64(s[1].Value.Uint64()), cpuUser: s[2].Value.Float64()}
}

// schedStats sums, over a mode's phases, the runtime's scheduling
// latencies (time goroutines spent runnable before running), its GC
// cycles and its user CPU (estimated by the runtime).
type schedStats struct {
	counts       []uint64
	buckets      []float64
	gcs, cpuUser float64
}

func (st *schedStats) add(a, b schedSample) {
	if st.counts == nil {
		st.counts, st.buckets = make([]uint64, len(b.lat.Counts)), b.lat.Buckets
	}
	for i := range st.counts {
		st.counts[i] += b.lat.Counts[i] - a.lat.Counts[i]
	}
	st.gcs += b.gcs - a.gcs
	st.cpuUser += b.cpuUser - a.cpuUser
}

// quantile returns the upper bound of the bucket holding quantile q.
func (st *schedStats) quantile(q float64) float64 {
	var n uint64
	for _, c := range st.counts {
		n += c
	}
	var acc uint64
	for i, c := range st.counts {
		acc += c
		if float64(acc) >= q*float64(n) {
			return st.buckets[i+1]
		}
	}
	return math.Inf(1)
}

func (st *schedStats) String() string {
	if st == nil {
		return "-"
	}
	var n, over uint64
	for i, c := range st.counts {
		n += c
		if st.buckets[i] >= 20e-6 {
			over += c
		}
	}
	return fmt.Sprintf("scheduling latency p50 %.1fµs p99 %.1fµs p99.9 %.1fµs, %.2f%% of %d ≥20µs; GC cycles %.0f; user CPU %.2fs",
		st.quantile(0.5)*1e6, st.quantile(0.99)*1e6, st.quantile(0.999)*1e6, 100*float64(over)/float64(max(n, 1)), n, st.gcs, st.cpuUser)
}
