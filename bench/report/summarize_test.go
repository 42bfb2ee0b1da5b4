package report

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		xs   []float64
		want float64
	}{
		{"empty", nil, 0},
		{"single", []float64{7}, 7},
		{"odd unsorted", []float64{9, 1, 5}, 5},
		{"even: mean of the middle two", []float64{4, 1, 3, 2}, 2.5},
		{"two", []float64{1, 2}, 1.5},
		{"duplicates", []float64{2, 2, 9, 2}, 2},
		{"negative", []float64{-3, -1, -2}, -2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.xs)
			if got := median(tt.xs); got != tt.want {
				t.Errorf("median(%v) = %v; want %v", tt.xs, got, tt.want)
			}
			if !slices.Equal(in, tt.xs) {
				t.Errorf("median modified its input: %v; was %v", tt.xs, in)
			}
		})
	}
}

// mkRun is a run with the figures the ratio and grouping tests look at;
// CPU figures are known (1 ms of server CPU and 2 ms of client CPU).
func mkRun(target, scenario, mode string, level float64, rep int, thr, p99 float64) Run {
	return Run{
		Target: target, Scenario: scenario, Protocol: "predict", Mode: mode,
		Level: level, Rep: rep, Seconds: 1, Requests: 100, OK: 100,
		Throughput: thr, Latency: Latency{P99: p99},
		ServerCPU: 0.001, ClientCPU: 0.002,
	}
}

func TestSummarizeOrder(t *testing.T) {
	// Runs arrive interleaved and out of order: scenarios and targets keep
	// their order of first appearance ("s2" before "s1", "zeta" before
	// "alpha"), modes sort closed before open, levels ascend.
	var runs []Run
	for _, sc := range []string{"s2", "s1"} {
		for _, mode := range []string{"open", "closed"} {
			for _, lvl := range []float64{16, 1, 4} {
				for rep := range 2 {
					for _, tg := range []string{"zeta", "alpha"} {
						runs = append(runs, mkRun(tg, sc, mode, lvl, rep, 1, 1))
					}
				}
			}
		}
	}
	points, _ := Summarize(runs, "")
	var got []string
	for _, p := range points {
		got = append(got, fmt.Sprintf("%s/%s/%s/%g", p.Scenario, p.Mode, p.Target, p.Level))
	}
	var want []string
	for _, sc := range []string{"s2", "s1"} {
		for _, mode := range []string{"closed", "open"} {
			for _, tg := range []string{"zeta", "alpha"} {
				for _, lvl := range []float64{1, 4, 16} {
					want = append(want, fmt.Sprintf("%s/%s/%s/%g", sc, mode, tg, lvl))
				}
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("order = %v;\nwant %v", got, want)
	}
	for _, p := range points {
		if p.Reps != 2 {
			t.Errorf("%s/%s/%s/%g: Reps = %d; want 2", p.Scenario, p.Mode, p.Target, p.Level, p.Reps)
		}
	}
}

func TestSummarizePoint(t *testing.T) {
	base := func(rep int, thr float64, lat Latency, serverCPU, clientCPU float64, requests int64) Run {
		return Run{
			Target: "coalesce", Scenario: "digits", Protocol: "v2-json", Mode: "closed", Level: 8,
			Rep: rep, Requests: requests, OK: requests - 3, Shed: 2,
			Errors:     map[string]int64{"500": 1, "net": int64(rep)},
			Throughput: thr, Latency: lat, ServerCPU: serverCPU, ClientCPU: clientCPU,
		}
	}
	lat := func(x float64) Latency {
		return Latency{P50: x, P90: 2 * x, P99: 3 * x, P999: 4 * x, Max: 5 * x, Mean: 1.5 * x}
	}
	tests := []struct {
		name       string
		runs       []Run
		want       Point
		wantServer map[string]float64
	}{
		{
			name: "three reps",
			runs: []Run{
				// Server CPU per request: 100, 300, 200 µs; client: 50, 150, 100 µs.
				base(0, 1000, lat(100), 0.1, 0.05, 1000),
				base(1, 3000, lat(300), 0.3, 0.15, 1000),
				base(2, 2000, lat(200), 0.4, 0.2, 2000),
			},
			want: Point{
				Target: "coalesce", Scenario: "digits", Protocol: "v2-json", Mode: "closed", Level: 8, Reps: 3,
				Throughput: 2000, Latency: lat(200), OK: 3991, Shed: 6, Errors: 3 + 0 + 1 + 2,
				ServerCPUPerRequest: 200, ClientCPUPerRequest: 100,
			},
		},
		{
			name: "two reps: means of the middle",
			runs: []Run{
				base(0, 1000, lat(100), 0.1, 0.05, 1000),
				base(1, 2000, lat(300), 0.3, 0.15, 1000),
			},
			want: Point{
				Target: "coalesce", Scenario: "digits", Protocol: "v2-json", Mode: "closed", Level: 8, Reps: 2,
				Throughput: 1500, Latency: lat(200), OK: 1994, Shed: 4, Errors: 2 + 0 + 1,
				ServerCPUPerRequest: 200, ClientCPUPerRequest: 100,
			},
		},
		{
			name: "one unknown server CPU makes the figure unknown",
			runs: []Run{
				base(0, 1000, lat(100), 0.1, 0.05, 1000),
				base(1, 1000, lat(100), -1, 0.05, 1000),
				base(2, 1000, lat(100), 0.1, 0.05, 1000),
			},
			want: Point{
				Target: "coalesce", Scenario: "digits", Protocol: "v2-json", Mode: "closed", Level: 8, Reps: 3,
				Throughput: 1000, Latency: lat(100), OK: 2991, Shed: 6, Errors: 3 + 0 + 1 + 2,
				ServerCPUPerRequest: -1, ClientCPUPerRequest: 50,
			},
		},
		{
			name: "a rep without requests makes both unknown",
			runs: []Run{
				base(0, 1000, lat(100), 0.1, 0.05, 1000),
				base(1, 0, lat(0), 0, 0.01, 0),
			},
			want: Point{
				Target: "coalesce", Scenario: "digits", Protocol: "v2-json", Mode: "closed", Level: 8, Reps: 2,
				Throughput: 500, Latency: lat(50), OK: 994, Shed: 4, Errors: 2 + 0 + 1,
				ServerCPUPerRequest: -1, ClientCPUPerRequest: -1,
			},
		},
		{
			name: "server figures: median over the reps that have each key",
			runs: func() []Run {
				a := base(0, 1000, lat(100), 0.1, 0.05, 1000)
				b := base(1, 1000, lat(100), 0.1, 0.05, 1000)
				c := base(2, 1000, lat(100), 0.1, 0.05, 1000)
				a.Server = map[string]float64{"mean_batch_size": 2, "inference_calls": 10}
				b.Server = map[string]float64{"mean_batch_size": 4}
				c.Server = map[string]float64{"mean_batch_size": 9, "inference_calls": 30}
				return []Run{a, b, c}
			}(),
			want: Point{
				Target: "coalesce", Scenario: "digits", Protocol: "v2-json", Mode: "closed", Level: 8, Reps: 3,
				Throughput: 1000, Latency: lat(100), OK: 2991, Shed: 6, Errors: 3 + 0 + 1 + 2,
				ServerCPUPerRequest: 100, ClientCPUPerRequest: 50,
			},
			wantServer: map[string]float64{"mean_batch_size": 4, "inference_calls": 20},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			points, ratios := Summarize(tt.runs, "coalesce")
			if len(points) != 1 || len(ratios) != 0 {
				t.Fatalf("Summarize: %d points, %d ratios; want 1, 0", len(points), len(ratios))
			}
			tt.want.Server = tt.wantServer
			if got := points[0]; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("point = %+v;\nwant    %+v", got, tt.want)
			}
		})
	}
}

func TestSummarizeRatios(t *testing.T) {
	c := func(rep int, thr, p99 float64) Run { return mkRun("coalesce", "s", "closed", 4, rep, thr, p99) }
	f := func(rep int, thr, p99 float64) Run { return mkRun("flask", "s", "closed", 4, rep, thr, p99) }
	tests := []struct {
		name     string
		runs     []Run
		baseline string
		want     []Ratio
	}{
		{
			name: "paired by rep, not by order",
			runs: []Run{
				c(0, 1000, 10), c(1, 2000, 20), c(2, 4000, 40),
				f(2, 400, 400), f(0, 500, 20), f(1, 200, 80),
			},
			baseline: "coalesce",
			// Per pair: throughput 0.5, 0.1, 0.1; p99 2, 4, 10.
			want: []Ratio{{Scenario: "s", Mode: "closed", Level: 4, Target: "flask", Baseline: "coalesce",
				Throughput: 0.1, P99: 4, Pairs: 3}},
		},
		{
			name: "a rep missing on the target side",
			runs: []Run{
				c(0, 1000, 10), c(1, 2000, 20), c(2, 4000, 40),
				f(0, 500, 20), f(2, 400, 400),
			},
			baseline: "coalesce",
			// Pairs 0 and 2: throughput 0.5, 0.1; p99 2, 10.
			want: []Ratio{{Scenario: "s", Mode: "closed", Level: 4, Target: "flask", Baseline: "coalesce",
				Throughput: 0.3, P99: 6, Pairs: 2}},
		},
		{
			name: "a rep missing on the baseline side",
			runs: []Run{
				c(1, 2000, 20),
				f(0, 500, 20), f(1, 200, 80),
			},
			baseline: "coalesce",
			want: []Ratio{{Scenario: "s", Mode: "closed", Level: 4, Target: "flask", Baseline: "coalesce",
				Throughput: 0.1, P99: 4, Pairs: 1}},
		},
		{
			name: "zero denominators skip their pair",
			runs: []Run{
				c(0, 0, 10), c(1, 2000, 0), c(2, 4000, 40),
				f(0, 500, 20), f(1, 200, 80), f(2, 400, 400),
			},
			baseline: "coalesce",
			want: []Ratio{{Scenario: "s", Mode: "closed", Level: 4, Target: "flask", Baseline: "coalesce",
				Throughput: 0.1, P99: 10, Pairs: 1}},
		},
		{
			name:     "no usable pair: zero ratios, zero pairs",
			runs:     []Run{c(0, 0, 0), f(0, 500, 20)},
			baseline: "coalesce",
			want: []Ratio{{Scenario: "s", Mode: "closed", Level: 4, Target: "flask", Baseline: "coalesce",
				Pairs: 0}},
		},
		{
			name:     "a zero numerator is a ratio of 0",
			runs:     []Run{c(0, 1000, 10), f(0, 0, 20)},
			baseline: "coalesce",
			want: []Ratio{{Scenario: "s", Mode: "closed", Level: 4, Target: "flask", Baseline: "coalesce",
				Throughput: 0, P99: 2, Pairs: 1}},
		},
		{
			name: "only levels and modes the baseline ran",
			runs: []Run{
				c(0, 1000, 10),
				f(0, 500, 20),
				mkRun("flask", "s", "closed", 8, 0, 1, 1),
				mkRun("flask", "s", "open", 4, 0, 1, 1),
			},
			baseline: "coalesce",
			want: []Ratio{{Scenario: "s", Mode: "closed", Level: 4, Target: "flask", Baseline: "coalesce",
				Throughput: 0.5, P99: 2, Pairs: 1}},
		},
		{
			name:     "no baseline, no ratios",
			runs:     []Run{c(0, 1000, 10), f(0, 500, 20)},
			baseline: "",
		},
		{
			name:     "baseline that did not run",
			runs:     []Run{c(0, 1000, 10), f(0, 500, 20)},
			baseline: "gunicorn",
		},
		{
			name: "every non-baseline target, in target order",
			runs: []Run{
				mkRun("noop", "s", "closed", 4, 0, 3000, 5),
				c(0, 1000, 10),
				f(0, 500, 20),
			},
			baseline: "coalesce",
			want: []Ratio{
				{Scenario: "s", Mode: "closed", Level: 4, Target: "noop", Baseline: "coalesce",
					Throughput: 3, P99: 0.5, Pairs: 1},
				{Scenario: "s", Mode: "closed", Level: 4, Target: "flask", Baseline: "coalesce",
					Throughput: 0.5, P99: 2, Pairs: 1},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got := Summarize(tt.runs, tt.baseline)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ratios = %+v;\nwant     %+v", got, tt.want)
			}
		})
	}
}
