package report

import (
	"math"
	"time"
)

// fixtureTargets, fixtureScenarios and fixtureModes span the fixture report.
var (
	fixtureTargets   = []string{"coalesce", "flask", "noop-fasthttp"}
	fixtureScenarios = []string{"predict-digits", "v2-iris"}
	fixtureModes     = []string{"closed", "open"}
)

// fixtureReport is a full report: 2 scenarios × 2 modes × 3 targets ×
// 3 levels × 3 repetitions, summarised against "coalesce", with an
// overhead measurement. Flask saturates, so its p99 spans more than 100×
// (log scale) while the others stay within a narrow range.
func fixtureReport() *Report {
	levels := map[string][]float64{"closed": {1, 8, 64}, "open": {100, 1000, 5000}}
	capacity := map[string]float64{"coalesce": 20000, "flask": 900, "noop-fasthttp": 90000}
	var runs []Run
	for _, sc := range fixtureScenarios {
		for _, mode := range fixtureModes {
			for li, lvl := range levels[mode] {
				for rep := range 3 {
					for _, tg := range fixtureTargets {
						offered := lvl * 1000 // closed loop: ~1 ms per request and connection
						if mode == "open" {
							offered = lvl
						}
						thr := math.Min(capacity[tg], offered) * (1 + float64(rep)/100)
						p99 := 200 * math.Pow(3, float64(li)) // µs
						if tg == "flask" {
							p99 *= math.Pow(40, float64(li))
						}
						r := Run{
							Target: tg, Scenario: sc, Protocol: "predict", Mode: mode, Level: lvl, Rep: rep,
							Seconds: 10, Requests: int64(thr * 10), OK: int64(thr * 10),
							Throughput: thr,
							Latency: Latency{P50: p99 / 4, P90: p99 / 2, P99: p99, P999: p99 * 1.5,
								Max: p99 * 3, Mean: p99 / 3},
							ClientCPU: 1.5, ServerCPU: 2.5,
						}
						if mode == "open" {
							r.Offered = lvl
						}
						if tg == "flask" {
							r.ServerCPU = -1
							r.Shed = int64(li)
							r.Errors = map[string]int64{"timeout": int64(li)}
						}
						if tg == "coalesce" {
							r.Server = map[string]float64{"mean_batch_size": 1 + float64(li), "inference_calls": thr * 10}
						}
						runs = append(runs, r)
					}
				}
			}
		}
	}
	points, ratios := Summarize(runs, "coalesce")
	return &Report{
		Header: Header{
			Title:   "Coalesce vs Flask",
			Date:    time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC),
			Commit:  "abc1234",
			Command: "go run ./bench -suite standard -reps 3",
			Machine: Machine{CPU: "AMD EPYC 7B13", Cores: 2, GOMAXPROCS: 2, MemoryGiB: 7.63,
				Kernel: "6.1.0-18-amd64", Go: "go1.26.8"},
			Baseline: "coalesce",
			Notes:    []string{"gunicorn skipped: not installed (apt install gunicorn)."},
		},
		Runs:   runs,
		Points: points,
		Ratios: ratios,
		Overhead: &Overhead{Server: "noop-fasthttp", Connections: 64, Seconds: 5,
			Wrk: []float64{100000, 110000, 90000}, Ours: []float64{95000, 99000, 86000}, Ratio: 0.95},
	}
}
