package report_test

import (
	"fmt"

	"github.com/coalesce-ml/coalesce/bench/report"
)

func ExampleSummarize() {
	// Two targets, one load level, three repetitions run interleaved.
	run := func(target string, rep int, rps, p99us float64) report.Run {
		return report.Run{
			Target: target, Scenario: "predict-digits", Mode: "closed", Level: 16, Rep: rep,
			Requests: int64(rps * 10), OK: int64(rps * 10), Throughput: rps,
			Latency: report.Latency{P99: p99us}, ServerCPU: rps * 10 * 50e-6, // 50 µs per request
		}
	}
	runs := []report.Run{
		run("coalesce", 0, 9000, 2100), run("flask", 0, 800, 41000),
		run("coalesce", 1, 9400, 1900), run("flask", 1, 900, 38000),
		run("coalesce", 2, 8800, 2000), run("flask", 2, 850, 40000),
	}
	points, ratios := report.Summarize(runs, "coalesce")
	for _, p := range points {
		fmt.Printf("%s at %g connections: %.0f req/s, p99 %.0f µs, server CPU %.0f µs/req, %d reps\n",
			p.Target, p.Level, p.Throughput, p.Latency.P99, p.ServerCPUPerRequest, p.Reps)
	}
	for _, r := range ratios {
		fmt.Printf("%s vs %s: throughput %.3f×, p99 %.1f× (%d pairs)\n",
			r.Target, r.Baseline, r.Throughput, r.P99, r.Pairs)
	}
	// Output:
	// coalesce at 16 connections: 9000 req/s, p99 2000 µs, server CPU 50 µs/req, 3 reps
	// flask at 16 connections: 850 req/s, p99 40000 µs, server CPU 50 µs/req, 3 reps
	// flask vs coalesce: throughput 0.096×, p99 20.0× (3 pairs)
}
