package main

import (
	"context"
	"encoding/json"
	"image/png"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coalesce-ml/coalesce/bench/internal/inproc"
	"github.com/coalesce-ml/coalesce/bench/loadgen"
	"github.com/coalesce-ml/coalesce/bench/report"
	"github.com/coalesce-ml/coalesce/bench/targets"
	"github.com/coalesce-ml/coalesce/bench/workload"
)

const modelsDir = "../models"

// inProcessCoalesce serves the shipped models on 127.0.0.1, with its
// admin handler, in this process.
func inProcessCoalesce(t *testing.T) server {
	t.Helper()
	addr, metricsURL := inproc.Start(t, modelsDir)
	return server{name: "coalesce", addr: addr, pid: os.Getpid(), metricsURL: metricsURL}
}

// TestSmokeSuite is a few seconds of the whole pipeline: in-process
// Coalesce and the bare fasthttp ceiling, measured interleaved in closed
// and open loop, summarised and written as a report with charts.
func TestSmokeSuite(t *testing.T) {
	ctx := context.Background()
	coalesce := inProcessCoalesce(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go targets.ServeNoop(ln) //nolint:errcheck // ends when the listener closes
	t.Cleanup(func() { ln.Close() })
	noop := server{name: "noop-fasthttp", addr: ln.Addr().String()}

	r := &report.Report{Header: header("go test ./bench", &Scenario{Name: "smoke", Baseline: "coalesce"})}
	for _, l := range []load{{mode: loadgen.Closed, level: 4}, {mode: loadgen.Open, level: 300, conns: 4, poisson: true}} {
		for rep := 0; rep < 2; rep++ {
			for _, s := range []server{coalesce, noop} {
				reqs, err := workload.Build(workload.Spec{Model: "digits-mlp", ModelsDir: modelsDir, Protocol: workload.Predict, Path: "/predict?model=digits-mlp", Count: 64}, s.addr)
				if err != nil {
					t.Fatal(err)
				}
				l := l
				l.scenario, l.protocol, l.rep, l.reqs = "predict-digits", workload.Predict, rep, reqs
				l.warmup, l.duration, l.maxRequests = 50*time.Millisecond, 400*time.Millisecond, 5000
				run, err := measure(ctx, s, l, io.Discard)
				if err != nil {
					t.Fatal(err)
				}
				if run.OK == 0 || run.OK != run.Requests {
					t.Fatalf("%s %v: %d OK of %d (errors %v)", s.name, l.mode, run.OK, run.Requests, run.Errors)
				}
				if s.name == "coalesce" && (run.Server["inference_calls"] < 0.9*float64(run.OK) || run.ServerCPU <= 0) {
					t.Errorf("coalesce server view = %v, CPU %v; want ≥ %d inference calls and CPU > 0", run.Server, run.ServerCPU, run.OK)
				}
				r.Runs = append(r.Runs, run)
			}
		}
	}
	r.Points, r.Ratios = report.Summarize(r.Runs, "coalesce")
	if len(r.Points) != 4 || len(r.Ratios) != 2 {
		t.Fatalf("%d points, %d ratios; want 4 and 2", len(r.Points), len(r.Ratios))
	}
	dir := t.TempDir()
	files, err := report.Write(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	var pngs int
	for _, f := range files {
		switch filepath.Ext(f) {
		case ".png":
			fh, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := png.Decode(fh); err != nil {
				t.Errorf("%s: %v", f, err)
			}
			fh.Close()
			pngs++
		case ".json":
			raw, _ := os.ReadFile(f)
			var back report.Report
			if err := json.Unmarshal(raw, &back); err != nil || len(back.Runs) != len(r.Runs) {
				t.Errorf("results.json: %v, %d runs", err, len(back.Runs))
			}
		case ".md":
			raw, _ := os.ReadFile(f)
			if !strings.Contains(string(raw), "noop-fasthttp") || !strings.Contains(string(raw), "go test ./bench") {
				t.Errorf("report.md lacks the targets or the command:\n%s", raw)
			}
		}
	}
	if pngs < 2 {
		t.Errorf("%d charts; want a throughput-latency chart and a percentile chart", pngs)
	}
}

func TestScenarioFiles(t *testing.T) {
	files, _ := filepath.Glob("scenarios/*.yaml")
	if len(files) == 0 {
		t.Fatal("no scenario files")
	}
	for _, f := range files {
		if _, err := LoadScenario(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	dir := t.TempDir()
	for _, bad := range []struct{ yml, want string }{
		{"duration: 1s\nworkloadz: []\n", "workloadz"},
		{"duration: soon\n", "not a duration"},
		{"duration: 1s\ntargets: [triton]\n", `unknown target "triton"`},
		{"duration: 1s\nworkloads:\n  - name: x\n    protocol: grpc\n    closed: [1]\n", `protocol "grpc"`},
		{"duration: 1s\nworkloads:\n  - name: x\n    protocol: predict\n", "no load levels"},
	} {
		p := filepath.Join(dir, "s.yaml")
		os.WriteFile(p, []byte(bad.yml), 0o644)
		if _, err := LoadScenario(p); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("LoadScenario(%q) = %v; want an error containing %q", bad.yml, err, bad.want)
		}
	}
	if !speaks("coalesce", workload.V2Binary, []int{4}) || speaks("flask", workload.V2JSON, nil) || speaks("gunicorn", workload.Predict, []int{1, 2}) {
		t.Error("speaks() is wrong about which target serves what")
	}
}
