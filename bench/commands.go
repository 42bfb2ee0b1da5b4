package main

import (
	"bufio"
	"cmp"
	"context"
	"flag"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/coalesce-ml/coalesce/bench/grpcload"
	"github.com/coalesce-ml/coalesce/bench/loadgen"
	"github.com/coalesce-ml/coalesce/bench/report"
	"github.com/coalesce-ml/coalesce/bench/targets"
	"github.com/coalesce-ml/coalesce/bench/workload"
)

// runCmd measures one server that is already running.
func runCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench run", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "server address host:port")
	name := fs.String("name", "target", "label of the server in the report")
	protocol := fs.String("protocol", "predict", "predict, v2-json, v2-binary, tfs, grpc (KServe V2 gRPC ModelInfer, raw_input_contents; -addr is the gRPC port) or grpc-typed (fp32_contents)")
	grpcConns := fs.Int("grpc-conns", 1, "gRPC: HTTP/2 connections the -c streams share (1: all on one, as gRPC clients do; 0: one per stream)")
	grpcWindow := fs.Int("grpc-window", 0, "gRPC: fixed flow-control window of the client's connections in bytes, turning off BDP estimation (0: grpc-go's dynamic windows; lean: 1 MiB per stream, 16 MiB per connection)")
	grpcClient := fs.String("grpc-client", "grpc-go", "gRPC: the client, grpc-go or lean (the tool's own HTTP/2 unary client: callers write and read the connection themselves, no writer and reader goroutines)")
	model := fs.String("model", "digits-mlp", "model whose golden rows make the bodies")
	models := fs.String("models", "models", "model repository holding <model>/golden.json")
	path := fs.String("path", "", "request path (default: the protocol's path for -model)")
	switchPath := fs.String("switch-path", "", "open loop: a switchback run between -path (arm 0) and this path (arm 1), alternating every -block; results.json's arms hold each arm's latency")
	switchAddr := fs.String("switch-addr", "", "switchback: arm 1's server, host:port (default: -addr): compares two servers, e.g. with and without a shadow")
	block := fs.Duration("block", 200*time.Millisecond, "switchback: the length of one arm's block")
	settle := fs.Duration("settle", 40*time.Millisecond, "switchback: requests intended this soon after a block starts are sent but left out of the arms' figures")
	batch := fs.String("batch", "1", "rows per request, a comma-separated mix drawn uniformly, e.g. 1,1,4,16")
	repeat := fs.Float64("repeat", 0, "share of requests (0..1) that repeat a hot set of 8 inputs")
	pool := fs.Int("pool", 0, "requests in the pool each connection cycles through (0: 512); raise it so that a response cache sees no repeats")
	conns := fs.String("c", "16", "closed loop: comma-separated connection counts to sweep")
	rates := fs.String("rate", "", "open loop: comma-separated arrival rates (req/s) to sweep; replaces -c")
	openConns := fs.Int("open-conns", 64, "open loop: connections (concurrency cap)")
	poisson := fs.Bool("poisson", true, "open loop: Poisson arrivals (false: constant interval)")
	warmup := fs.Duration("warmup", time.Second, "warm-up per run, not measured")
	duration := fs.Duration("d", 5*time.Second, "measured duration per run")
	maxReq := fs.Int64("n", 0, "stop a run after this many measured requests (0: no limit)")
	reps := fs.Int("reps", 1, "repetitions of every level")
	pid := fs.Int("pid", 0, "server PID: its CPU (and its children's) is measured from /proc")
	metricsURL := fs.String("metrics", "", "server /metrics URL: scraped before and after each run")
	out := fs.String("out", "bench/results", "directory under which the report is written")
	var headers []string
	fs.Func("header", `header added to every request, "Name: value" (repeatable), e.g. an API key`, func(v string) error {
		name, value, ok := strings.Cut(v, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return fmt.Errorf("%q; want Name: value", v)
		}
		headers = append(headers, strings.TrimSpace(name), strings.TrimSpace(value))
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	mix, err := ints(*batch)
	if err != nil {
		return fmt.Errorf("-batch: %w", err)
	}
	reqs, err := workload.Build(workload.Spec{Model: *model, ModelsDir: *models, Protocol: *protocol, Path: *path, Batch: mix, RepeatShare: *repeat, Count: *pool, Headers: headers}, *addr)
	if err != nil {
		return err
	}
	var sw *loadgen.Switch
	if *switchPath != "" {
		if *rates == "" {
			return fmt.Errorf("-switch-path needs an open loop (-rate)")
		}
		if *protocol == workload.GRPC || *protocol == workload.GRPCTyped {
			return fmt.Errorf("-switch-path: HTTP protocols only")
		}
		other, err := workload.Build(workload.Spec{Model: *model, ModelsDir: *models, Protocol: *protocol, Path: *switchPath, Batch: mix, RepeatShare: *repeat, Count: *pool, Headers: headers}, cmp.Or(*switchAddr, *addr))
		if err != nil {
			return err
		}
		sw = &loadgen.Switch{Requests: other, Block: *block, Settle: *settle, Addr: *switchAddr}
	}
	var loads []load
	if *rates != "" {
		rs, err := floats(*rates)
		if err != nil {
			return fmt.Errorf("-rate: %w", err)
		}
		for _, r := range rs {
			loads = append(loads, load{mode: loadgen.Open, level: r, conns: *openConns, poisson: *poisson})
		}
	} else {
		cs, err := ints(*conns)
		if err != nil {
			return fmt.Errorf("-c: %w", err)
		}
		for _, c := range cs {
			loads = append(loads, load{mode: loadgen.Closed, level: float64(c)})
		}
	}
	var gc *grpcload.Config
	if *protocol == workload.GRPC || *protocol == workload.GRPCTyped {
		if *grpcConns < 0 || *grpcWindow < 0 {
			return fmt.Errorf("-grpc-conns %d, -grpc-window %d; want 0 or more", *grpcConns, *grpcWindow)
		}
		if *grpcClient != "grpc-go" && *grpcClient != "lean" {
			return fmt.Errorf("-grpc-client %q; want grpc-go or lean", *grpcClient)
		}
		gc = &grpcload.Config{Addr: *addr, Channels: *grpcConns, StaticWindow: int32(*grpcWindow), Lean: *grpcClient == "lean"}
		for i := 0; i+1 < len(headers); i += 2 {
			gc.Metadata = append(gc.Metadata, strings.ToLower(headers[i]), headers[i+1])
		}
	}
	s := server{name: *name, addr: *addr, pid: *pid, metricsURL: *metricsURL}
	r := &report.Report{Header: header(commandLine(append([]string{"run"}, args...)), &Scenario{Name: "run"})}
	for _, l := range loads {
		for rep := 0; rep < *reps; rep++ {
			l := l
			l.scenario, l.protocol, l.rep, l.reqs, l.grpc = *protocol, *protocol, rep, reqs, gc
			l.warmup, l.duration, l.maxRequests = *warmup, *duration, *maxReq
			l.sw = sw
			run, err := measure(ctx, s, l, os.Stderr)
			if err != nil {
				return err
			}
			if err := allFailed(run, *addr); err != nil {
				return err
			}
			if len(run.Errors) > 0 {
				fmt.Fprintf(os.Stderr, "errors: %s\n", describeErrors(run.Errors))
			}
			r.Runs = append(r.Runs, run)
		}
	}
	r.Points, r.Ratios = report.Summarize(r.Runs, "")
	dir := filepath.Join(*out, time.Now().Format("20060102-150405")+"-run")
	files, err := report.Write(dir, r)
	if err != nil {
		return err
	}
	if err := report.WriteMarkdown(os.Stdout, r); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "report written:\n  %s\n", strings.Join(files, "\n  "))
	return nil
}

// allFailed returns an error naming the causes when no request of run
// succeeded: the figures of such a run (a server that is down, a wrong
// address or path) describe nothing.
func allFailed(run report.Run, addr string) error {
	if run.OK > 0 {
		return nil
	}
	errs := maps.Clone(run.Errors)
	if errs == nil {
		errs = map[string]int64{}
	}
	if run.Shed > 0 {
		errs["shed (429/503)"] = run.Shed
	}
	if len(errs) == 0 {
		return fmt.Errorf("no request to %s was answered within the run", addr)
	}
	return fmt.Errorf("every request to %s failed: %s", addr, describeErrors(errs))
}

// describeErrors lists error kinds with their counts, most frequent
// first, at most three of them: "dial: connection refused ×858".
func describeErrors(errs map[string]int64) string {
	kinds := make([]string, 0, len(errs))
	var total int64
	for k, n := range errs {
		kinds = append(kinds, k)
		total += n
	}
	sort.Slice(kinds, func(i, j int) bool {
		if errs[kinds[i]] != errs[kinds[j]] {
			return errs[kinds[i]] > errs[kinds[j]]
		}
		return kinds[i] < kinds[j]
	})
	var parts []string
	for i, k := range kinds {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("%d more kinds", len(kinds)-3))
			break
		}
		what := k
		if _, err := strconv.Atoi(k); err == nil {
			what = "status " + k
		}
		parts = append(parts, fmt.Sprintf("%s ×%d", what, errs[k]))
	}
	return fmt.Sprintf("%d errors: %s", total, strings.Join(parts, ", "))
}

// noopCmd serves the bare fasthttp ceiling until ctx ends.
func noopCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench noop", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:18080", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); ln.Close() }()
	if err := targets.ServeNoop(ln); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func floats(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || !(n > 0) {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// header describes this machine, this commit and this command.
func header(command string, sc *Scenario) report.Header {
	h := report.Header{
		Title:    "Coalesce benchmark: " + sc.Name,
		Date:     time.Now().UTC(),
		Commit:   gitCommit(),
		Command:  command,
		Baseline: sc.Baseline,
		Machine: report.Machine{
			CPU: cpuModel(), Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
			MemoryGiB: memGiB(), Go: runtime.Version(),
		},
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Machine.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	h.Notes = append(h.Notes, "client and servers share this machine's cores; every figure is load generator + server on one box")
	return h
}

func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		c += "-dirty"
	}
	return c
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func memGiB() float64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return float64(int(kb/1024/1024*10+0.5)) / 10
		}
	}
	return 0
}
