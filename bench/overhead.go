package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/coalesce-ml/coalesce/bench/loadgen"
	"github.com/coalesce-ml/coalesce/bench/report"
	"github.com/coalesce-ml/coalesce/bench/targets"
	"github.com/coalesce-ml/coalesce/bench/workload"
)

// wrkScript makes wrk POST the body file named by BENCH_BODY.
const wrkScript = `local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
`

var wrkRPS = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

// measureOverhead compares the tool's closed loop with wrk's against the
// bare fasthttp server, interleaved (wrk, ours, wrk, ours, ...), with the
// same body, connections and duration. The note says why it was skipped.
func measureOverhead(ctx context.Context, sc *Scenario, noop *targets.Target, f suiteFlags, work string) (*report.Overhead, string, error) {
	if noop == nil {
		return nil, "overhead against wrk: skipped, the noop-fasthttp target is not running", nil
	}
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		return nil, "overhead against wrk: skipped, wrk is not installed (apt-get install -y wrk)", nil
	}
	o := sc.Overhead
	reqs, err := workload.Build(workload.Spec{Model: sc.Model, ModelsDir: f.models, Protocol: workload.Predict, Path: "/predict", Count: 1}, noop.Addr)
	if err != nil {
		return nil, "", err
	}
	body := filepath.Join(work, "overhead-body.json")
	script := filepath.Join(work, "post.lua")
	if err := os.WriteFile(body, reqs[0].Body, 0o644); err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return nil, "", err
	}
	threads := min(runtime.GOMAXPROCS(0), o.Connections)
	res := &report.Overhead{Server: noop.Name, Connections: o.Connections, Seconds: o.Duration.Seconds()}
	var ratios []float64
	for rep := 0; rep < o.Reps; rep++ {
		fmt.Fprintf(os.Stderr, "overhead #%d: wrk -t%d -c%d -d%v\n", rep+1, threads, o.Connections, o.Duration.Duration)
		cmd := exec.CommandContext(ctx, wrk, "-t"+strconv.Itoa(threads), "-c"+strconv.Itoa(o.Connections),
			"-d"+strconv.Itoa(max(1, int(o.Duration.Seconds())))+"s", "-s", script, "http://"+noop.Addr+"/predict")
		cmd.Env = append(os.Environ(), "BENCH_BODY="+body)
		out, err := cmd.CombinedOutput()
		m := wrkRPS.FindSubmatch(out)
		if err != nil || m == nil {
			return nil, "", fmt.Errorf("wrk: %v\n%s", err, out)
		}
		w, _ := strconv.ParseFloat(string(m[1]), 64)
		ours, err := loadgen.Run(ctx, loadgen.Config{Addr: noop.Addr, Requests: reqs, Connections: o.Connections,
			Duration: time.Duration(max(1, int(o.Duration.Seconds()))) * time.Second, Progress: f.progress,
			Label: fmt.Sprintf("overhead ours c=%d #%d", o.Connections, rep+1)})
		if err != nil {
			return nil, "", err
		}
		rps := float64(ours.Requests) / ours.Seconds
		res.Wrk = append(res.Wrk, w)
		res.Ours = append(res.Ours, rps)
		if w > 0 {
			ratios = append(ratios, rps/w)
		}
	}
	slices.Sort(ratios)
	if n := len(ratios); n > 0 {
		res.Ratio = (ratios[(n-1)/2] + ratios[n/2]) / 2
	}
	return res, "", nil
}
