package main

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/coalesce-ml/coalesce/bench/workload"
)

// Scenario is a benchmark suite read from a YAML file in bench/scenarios/.
type Scenario struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Model is the Coalesce model the workloads use; the Python peers
	// serve the equivalent scikit-learn model (mlp_digits).
	Model    string   `yaml:"model"`
	Warmup   Duration `yaml:"warmup"`
	Duration Duration `yaml:"duration"` // measured, per run
	Reps     int      `yaml:"reps"`     // repetitions of every run, interleaved
	// Targets lists the servers to measure: coalesce, coalesce-nobatch
	// (the same binary with --batching.enabled=false), flask, gunicorn,
	// noop-fasthttp. Each workload may narrow it.
	Targets   []string   `yaml:"targets"`
	Baseline  string     `yaml:"baseline"` // ratios divide by this target
	Workloads []Workload `yaml:"workloads"`
	Overhead  *Overhead  `yaml:"overhead"`
	// CoalesceArgs are extra flags for both Coalesce targets, e.g.
	// ["--http.request_timeout", "1s"].
	CoalesceArgs []string `yaml:"coalesce_args"`
	// CoalesceEnv are extra environment variables (NAME=value) for both
	// Coalesce targets, e.g. GOMAXPROCS=1 to leave the client a core.
	CoalesceEnv []string `yaml:"coalesce_env"`
}

// Workload is one kind of traffic, swept over load levels.
type Workload struct {
	Name        string    `yaml:"name"`
	Protocol    string    `yaml:"protocol"` // predict, v2-json, v2-binary, tfs
	Batch       []int     `yaml:"batch"`    // rows per request, drawn from this mix
	RepeatShare float64   `yaml:"repeat_share"`
	Targets     []string  `yaml:"targets"` // empty: the scenario's targets that speak Protocol
	Closed      []int     `yaml:"closed"`  // connection counts of the closed-loop sweep
	Open        *OpenLoop `yaml:"open"`
}

// OpenLoop is the open-loop sweep of a workload.
type OpenLoop struct {
	Rates       []float64 `yaml:"rates"`       // requests/s
	Connections int       `yaml:"connections"` // concurrency cap
	Poisson     bool      `yaml:"poisson"`
}

// Overhead compares the tool with wrk against the bare fasthttp server.
type Overhead struct {
	Connections int      `yaml:"connections"`
	Duration    Duration `yaml:"duration"`
	Reps        int      `yaml:"reps"`
}

// Duration is a time.Duration written as "5s" in YAML.
type Duration struct{ time.Duration }

// UnmarshalYAML parses a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration; want e.g. 500ms or 5s", n.Line, n.Value)
	}
	d.Duration = v
	return nil
}

// knownTargets are the servers the suite can start.
var knownTargets = []string{"coalesce", "coalesce-nobatch", "flask", "gunicorn", "noop-fasthttp"}

// speaks reports whether target serves protocol with batch mix batch: the
// peers serve only the seed's /predict with one row per request.
func speaks(target, protocol string, batch []int) bool {
	if target == "coalesce" || target == "coalesce-nobatch" {
		return true
	}
	return protocol == workload.Predict && (len(batch) == 0 || slices.Equal(batch, []int{1}))
}

// LoadScenario reads and checks a scenario file; unknown keys are errors.
func LoadScenario(path string) (*Scenario, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	s := &Scenario{}
	if err := dec.Decode(s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func (s *Scenario) check() error {
	if s.Model == "" {
		s.Model = "digits-mlp"
	}
	if s.Reps < 1 {
		s.Reps = 1
	}
	if s.Duration.Duration <= 0 {
		return fmt.Errorf("duration: want a positive duration")
	}
	for _, t := range s.Targets {
		if !slices.Contains(knownTargets, t) {
			return fmt.Errorf("targets: unknown target %q; want one of %v", t, knownTargets)
		}
	}
	if s.Baseline != "" && !slices.Contains(s.Targets, s.Baseline) {
		return fmt.Errorf("baseline: %q is not among the targets", s.Baseline)
	}
	for i, w := range s.Workloads {
		if w.Name == "" {
			return fmt.Errorf("workloads[%d]: name is missing", i)
		}
		switch w.Protocol {
		case workload.Predict, workload.V2JSON, workload.V2Binary, workload.TFS:
		default:
			return fmt.Errorf("workloads[%d] (%s): protocol %q; want predict, v2-json, v2-binary or tfs", i, w.Name, w.Protocol)
		}
		if len(w.Closed) == 0 && (w.Open == nil || len(w.Open.Rates) == 0) {
			return fmt.Errorf("workloads[%d] (%s): no load levels; want closed and/or open.rates", i, w.Name)
		}
		for _, c := range w.Closed {
			if c < 1 {
				return fmt.Errorf("workloads[%d] (%s): closed: %d connections; want at least 1", i, w.Name, c)
			}
		}
		if w.Open != nil && w.Open.Connections < 1 {
			w.Open.Connections = 64
		}
		for _, t := range w.Targets {
			if !slices.Contains(s.Targets, t) {
				return fmt.Errorf("workloads[%d] (%s): target %q is not among the scenario's targets", i, w.Name, t)
			}
		}
	}
	if o := s.Overhead; o != nil {
		if o.Connections < 1 || o.Duration.Duration <= 0 {
			return fmt.Errorf("overhead: want connections ≥ 1 and a positive duration")
		}
		if o.Reps < 1 {
			o.Reps = 1
		}
	}
	return nil
}

// targetsFor returns the targets that run workload w, in scenario order.
func (s *Scenario) targetsFor(w *Workload) []string {
	var out []string
	for _, t := range s.Targets {
		if (len(w.Targets) == 0 || slices.Contains(w.Targets, t)) && speaks(t, w.Protocol, w.Batch) {
			out = append(out, t)
		}
	}
	return out
}
