package report

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"sig small", sig(0.41234, 3), "0.412"},
		{"sig tens", sig(12.34, 3), "12.3"},
		{"sig rounds up a digit", sig(9.996, 3), "10.0"},
		{"sig large", sig(1234, 3), "1230"},
		{"sig zero", sig(0, 3), "0"},
		{"ms sub-ms", fmtMs(412.3), "0.412 ms"},
		{"ms tens", fmtMs(12345), "12.3 ms"},
		{"ms seconds", fmtMs(1234567), "1230 ms"},
		{"ms none", fmtMs(0), "n/a"},
		{"rate large", fmtRate(48212.6), "48,213"},
		{"rate small", fmtRate(12.34), "12.3"},
		{"rate exactly 100", fmtRate(100), "100"},
		{"int", fmtInt(1234567), "1,234,567"},
		{"int negative", fmtInt(-1234), "-1,234"},
		{"int small", fmtInt(12), "12"},
		{"ratio", fmtRatio(0.183), "0.18×"},
		{"ratio above 1", fmtRatio(5.2), "5.20×"},
		{"ratio large", fmtRatio(12.34), "12×"},
		{"ratio tiny", fmtRatio(0.0123), "0.012×"},
		{"cpu", fmtCPU(41.234), "41.2"},
		{"cpu unknown", fmtCPU(-1), "n/a"},
		{"level", fmtLevel(64), "64"},
		{"level fraction", fmtLevel(2.5), "2.5"},
		{"cell", cell("a|b"), `a\|b`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q; want %q", tt.got, tt.want)
			}
		})
	}
}

func TestWriteMarkdown(t *testing.T) {
	r := &Report{
		Header: Header{
			Title:   "Coalesce vs Flask",
			Date:    time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC),
			Commit:  "abc1234",
			Command: "go run ./bench -suite standard -reps 3",
			Machine: Machine{CPU: "AMD EPYC 7B13", Cores: 2, GOMAXPROCS: 2, MemoryGiB: 7.63,
				Kernel: "6.1.0-18-amd64", Go: "go1.26.8"},
			Baseline: "coalesce",
			Notes:    []string{"gunicorn skipped: not installed.", "flask ran with its built-in server."},
		},
		Points: []Point{
			{Target: "coalesce", Scenario: "digits", Protocol: "predict", Mode: "closed", Level: 8, Reps: 3,
				Throughput: 12345.6,
				Latency:    Latency{P50: 412, P90: 1234, P99: 12345, P999: 123456, Max: 1234567},
				Shed:       7, Errors: 2, ServerCPUPerRequest: 41.23,
				Server: map[string]float64{"mean_batch_size": 3.21}},
			{Target: "flask", Scenario: "digits", Protocol: "predict", Mode: "closed", Level: 8, Reps: 3,
				Throughput: 812.4, Latency: Latency{P50: 9000, P90: 20000, P99: 64200, P999: 80000, Max: 90000},
				Errors: 1234, ServerCPUPerRequest: -1},
			{Target: "coalesce", Scenario: "digits", Protocol: "predict", Mode: "open", Level: 1000, Reps: 3,
				Throughput: 999.5, Latency: Latency{P50: 300, P90: 400, P99: 500, P999: 600, Max: 700},
				ServerCPUPerRequest: 40},
		},
		Ratios: []Ratio{
			{Scenario: "digits", Mode: "closed", Level: 8, Target: "flask", Baseline: "coalesce",
				Throughput: 0.183, P99: 5.2, Pairs: 3},
			{Scenario: "digits", Mode: "closed", Level: 64, Target: "flask", Baseline: "coalesce"},
		},
		Overhead: &Overhead{Server: "noop-fasthttp", Connections: 64, Seconds: 5,
			Wrk: []float64{100000, 110000}, Ours: []float64{95000}, Ratio: 0.95},
	}
	var b bytes.Buffer
	if err := WriteMarkdown(&b, r); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"# Coalesce vs Flask\n",
		"- **Date:** 2026-03-01T12:30:00Z\n",
		"- **Commit:** `abc1234`\n",
		"- **Machine:** AMD EPYC 7B13; 2 cores, GOMAXPROCS 2; 7.63 GiB memory; kernel 6.1.0-18-amd64; go1.26.8\n",
		"- **Baseline:** coalesce",
		"```sh\ngo run ./bench -suite standard -reps 3\n```\n",
		"- gunicorn skipped: not installed.\n- flask ran with its built-in server.\n",
		"## How to read this",
		"median of 3 repetitions",
		"intended send time",
		"shed",
		"## digits, closed loop\n\nProtocol: predict.\n",
		"| target | connections | throughput (req/s) | p50 | p90 | p99 | p99.9 | max | shed | errors | server CPU/req (µs) | server view |\n",
		"| coalesce | 8 | 12,346 | 0.412 ms | 1.23 ms | 12.3 ms | 123 ms | 1230 ms | 7 | 2 | 41.2 | batch 3.2 |\n",
		"| flask | 8 | 812 | 9.00 ms | 20.0 ms | 64.2 ms | 80.0 ms | 90.0 ms | 0 | 1,234 | n/a |  |\n",
		"| target vs baseline | connections | throughput | p99 | pairs |\n",
		"| flask vs coalesce | 8 | 0.18× | 5.20× | 3 |\n",
		"| flask vs coalesce | 64 | n/a | n/a | 0 |\n",
		"## digits, open loop\n",
		"| target | rate (req/s) | throughput (req/s) | p50 | p90 | p99 | p99.9 | max | shed | errors | server CPU/req (µs) |\n",
		"| coalesce | 1000 | 1,000 | 0.300 ms | 0.400 ms | 0.500 ms | 0.600 ms | 0.700 ms | 0 | 0 | 40.0 |\n",
		"## Tool overhead against wrk\n",
		"against noop-fasthttp, 64 connections, 5 s per run",
		"| 0 | 100,000 | 95,000 | 0.95× |\n",
		"| 1 | 110,000 | n/a | n/a |\n",
		"Median ratio: **0.95×**",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(md, "![") {
		t.Errorf("WriteMarkdown embeds charts it did not write:\n%s", md)
	}
	if t.Failed() {
		t.Logf("report:\n%s", md)
	}
}

func TestWriteMarkdownMinimal(t *testing.T) {
	// An empty report still has a header, and no overhead section.
	var b bytes.Buffer
	if err := WriteMarkdown(&b, &Report{}); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{"# Coalesce benchmark\n", "- **Date:** unknown\n", "- **Commit:** unknown\n"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	for _, unwanted := range []string{"overhead", "Notes:", "Baseline"} {
		if strings.Contains(md, unwanted) {
			t.Errorf("report has %q:\n%s", unwanted, md)
		}
	}
}

func TestServerView(t *testing.T) {
	tests := []struct {
		m    map[string]float64
		want string
	}{
		{nil, ""},
		{map[string]float64{"mean_batch_size": 3.21}, "batch 3.2"},
		{map[string]float64{"inference_calls": 12345, "mean_queue_wait_us": 410, "mean_batch_size": 4,
			"other": 1}, "batch 4.0, queue 0.410 ms, calls 12,345"},
		{map[string]float64{"d": 4, "c": 3, "b": 2, "a": 1}, "a 1.00, b 2.00, c 3.00"},
	}
	for _, tt := range tests {
		if got := serverView(tt.m); got != tt.want {
			t.Errorf("serverView(%v) = %q; want %q", tt.m, got, tt.want)
		}
	}
}
