package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/coalesce-ml/coalesce/bench/loadgen"
	"github.com/coalesce-ml/coalesce/bench/report"
	"github.com/coalesce-ml/coalesce/bench/targets"
	"github.com/coalesce-ml/coalesce/bench/workload"
)

// suiteFlags are the flags of bench suite.
type suiteFlags struct {
	scenario, out, models, peers, coalesceBin, only string
	quick                                           bool
	progress                                        io.Writer
}

func suiteCmd(ctx context.Context, args []string) error {
	var f suiteFlags
	fs := flag.NewFlagSet("bench suite", flag.ContinueOnError)
	fs.StringVar(&f.scenario, "scenario", "bench/scenarios/standard.yaml", "scenario file")
	fs.StringVar(&f.out, "out", "bench/results", "directory under which a timestamped report directory is written")
	fs.StringVar(&f.models, "models", "models", "Coalesce model repository (golden rows are read from it too)")
	fs.StringVar(&f.peers, "peers", "../shared/peers", "the peers folder (Flask example, make_models.py); copied before use")
	fs.StringVar(&f.coalesceBin, "coalesce", "", "coalesce binary to measure (default: go build ./cmd/coalesce)")
	fs.StringVar(&f.only, "targets", "", "comma-separated subset of the scenario's targets")
	fs.BoolVar(&f.quick, "quick", false, "smoke run: 1 repetition, 1s runs, no warm-up")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f.progress = os.Stderr
	sc, err := LoadScenario(f.scenario)
	if err != nil {
		return err
	}
	r, err := runSuite(ctx, sc, f, commandLine(append([]string{"suite"}, args...)))
	if err != nil {
		return err
	}
	dir := filepath.Join(f.out, time.Now().Format("20060102-150405"))
	files, err := report.Write(dir, r)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "report written:\n  %s\n", strings.Join(files, "\n  "))
	return nil
}

// commandLine is the command as the user typed it, for the report header.
func commandLine(args []string) string {
	if c := os.Getenv("BENCH_COMMAND"); c != "" {
		return c
	}
	return "go run ./bench " + strings.Join(args, " ")
}

// runSuite starts the scenario's targets, measures every workload at every
// level, interleaving targets within each repetition, and returns the
// report (not yet written).
func runSuite(ctx context.Context, sc *Scenario, f suiteFlags, command string) (*report.Report, error) {
	if f.quick {
		sc.Reps, sc.Warmup.Duration, sc.Duration.Duration = 1, 0, time.Second
		if sc.Overhead != nil {
			sc.Overhead.Reps, sc.Overhead.Duration.Duration = 1, time.Second
		}
	}
	r := &report.Report{Header: header(command, sc)}
	work, err := os.MkdirTemp("", "coalesce-bench")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	wanted := sc.Targets
	if f.only != "" {
		wanted = strings.Split(f.only, ",")
	}
	running, notes, err := startTargets(ctx, sc, f, wanted, work)
	defer func() {
		for _, t := range running {
			t.Stop()
		}
	}()
	if err != nil {
		return nil, err
	}
	r.Header.Notes = append(r.Header.Notes, notes...)

	for i := range sc.Workloads {
		w := &sc.Workloads[i]
		var servers []server
		pools := map[string][]loadgen.Request{}
		for _, name := range sc.targetsFor(w) {
			t := running[name]
			if t == nil {
				continue
			}
			spec := workload.Spec{Model: sc.Model, ModelsDir: f.models, Protocol: w.Protocol, Batch: w.Batch, RepeatShare: w.RepeatShare, Seed: uint64(i) + 1}
			if !strings.HasPrefix(name, "coalesce") {
				spec.Path = "/predict" // the peers serve one model at /predict
			}
			reqs, err := workload.Build(spec, t.Addr)
			if err != nil {
				return nil, err
			}
			pools[name] = reqs
			servers = append(servers, fromTarget(t))
		}
		if len(servers) == 0 {
			r.Header.Notes = append(r.Header.Notes, fmt.Sprintf("workload %s: no running target speaks %s; skipped", w.Name, w.Protocol))
			continue
		}
		var loads []load
		for _, c := range w.Closed {
			loads = append(loads, load{mode: loadgen.Closed, level: float64(c)})
		}
		if w.Open != nil {
			for _, rate := range w.Open.Rates {
				loads = append(loads, load{mode: loadgen.Open, level: rate, conns: w.Open.Connections, poisson: w.Open.Poisson})
			}
		}
		for _, l := range loads {
			for rep := 0; rep < sc.Reps; rep++ {
				for _, s := range servers { // interleaved: A, B, C, A, B, C, ...
					l := l
					l.scenario, l.protocol, l.rep = w.Name, w.Protocol, rep
					l.reqs, l.warmup, l.duration = pools[s.name], sc.Warmup.Duration, sc.Duration.Duration
					run, err := measure(ctx, s, l, f.progress)
					if err != nil {
						return nil, fmt.Errorf("%s %s: %w", s.name, w.Name, err)
					}
					r.Runs = append(r.Runs, run)
				}
			}
		}
	}
	if sc.Overhead != nil {
		o, note, err := measureOverhead(ctx, sc, running["noop-fasthttp"], f, work)
		if err != nil {
			return nil, err
		}
		if note != "" {
			r.Header.Notes = append(r.Header.Notes, note)
		}
		r.Overhead = o
	}
	if len(sc.CoalesceArgs) > 0 || len(sc.CoalesceEnv) > 0 {
		r.Header.Notes = append(r.Header.Notes, fmt.Sprintf("Coalesce ran with extra flags %v and environment %v", sc.CoalesceArgs, sc.CoalesceEnv))
	}
	r.Points, r.Ratios = report.Summarize(r.Runs, sc.Baseline)
	return r, nil
}

// startTargets starts the wanted targets; peers that cannot run here are
// skipped with a note saying why.
func startTargets(ctx context.Context, sc *Scenario, f suiteFlags, wanted []string, work string) (map[string]*targets.Target, []string, error) {
	running := map[string]*targets.Target{}
	var notes []string
	var py *targets.Python
	var pyErr error
	for _, name := range sc.Targets {
		if !slices.Contains(wanted, name) {
			continue
		}
		fmt.Fprintf(os.Stderr, "starting %s...\n", name)
		var t *targets.Target
		var err error
		switch name {
		case "coalesce", "coalesce-nobatch":
			bin := f.coalesceBin
			if bin == "" {
				bin = filepath.Join(work, "coalesce")
				if _, err := os.Stat(bin); err != nil {
					if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/coalesce").CombinedOutput(); err != nil {
						return running, notes, fmt.Errorf("building coalesce: %v\n%s", err, out)
					}
				}
			}
			args := sc.CoalesceArgs
			if name == "coalesce-nobatch" {
				args = append(append([]string(nil), args...), "--batching.enabled=false")
			}
			t, err = targets.StartCoalesceEnv(ctx, bin, f.models, sc.CoalesceEnv, args...)
			if t != nil {
				t.Name = name
			}
		case "noop-fasthttp":
			self, err2 := os.Executable()
			if err2 != nil {
				return running, notes, err2
			}
			t, err = targets.StartNoop(ctx, self, "noop")
		case "flask", "gunicorn":
			if py == nil && pyErr == nil {
				if _, err := os.Stat(filepath.Join(f.peers, "flask_app.py")); err != nil {
					pyErr = &targets.SkippedError{Reason: fmt.Sprintf("the peers folder %s (flask_app.py) is not here; pass -peers", f.peers)}
				} else {
					py, pyErr = targets.PreparePython(ctx, f.peers, work)
				}
			}
			if pyErr != nil {
				var skip *targets.SkippedError
				if errors.As(pyErr, &skip) {
					notes = append(notes, fmt.Sprintf("skipped %s: %s", name, skip.Reason))
					continue
				}
				return running, notes, pyErr
			}
			if name == "flask" {
				t, err = py.StartFlask(ctx, "mlp_digits")
			} else {
				t, err = py.StartGunicorn(ctx, "mlp_digits", 2)
			}
		}
		if err != nil {
			return running, notes, fmt.Errorf("starting %s: %w", name, err)
		}
		running[name] = t
	}
	for _, name := range sc.Targets {
		if running[name] != nil && name != "coalesce" {
			notes = append(notes, peerNote(name))
		}
	}
	return running, notes, nil
}

func peerNote(name string) string {
	switch name {
	case "coalesce-nobatch":
		return "coalesce-nobatch: the same binary with --batching.enabled=false: every request runs alone (same queue, deadlines and shedding)"

	case "flask":
		return "flask: the seed's Flask example as written (its built-in server, werkzeug), scikit-learn MLPClassifier(256, 256) on digits; it answers every request with Connection: close, so its figures include a TCP connection per request"
	case "gunicorn":
		return "gunicorn: the same Flask app under gunicorn with 2 sync workers; sync workers also close the connection after every response"
	case "noop-fasthttp":
		return "noop-fasthttp: a bare fasthttp server that reads the body and answers a fixed JSON (no model): the HTTP ceiling of this machine"
	}
	return ""
}
