// Package report turns the runs of a benchmark into figures a reader can
// trust: a summary per target and load level (medians over repetitions),
// ratios between targets measured interleaved in the same run, and the
// report files (Markdown, JSON, PNG charts) with the machine, date, commit
// and exact command in the header.
package report

import "time"

// Report is everything one benchmark invocation measured. It is written as
// results.json verbatim, so field names are part of the file format.
type Report struct {
	Header Header  `json:"header"`
	Runs   []Run   `json:"runs"`   // every measured run, in the order it ran
	Points []Point `json:"points"` // Summarize's medians per target and level
	Ratios []Ratio `json:"ratios"` // Summarize's per-pair ratios against the baseline
	// Overhead compares the tool's closed loop with wrk against one server;
	// nil when not measured.
	Overhead *Overhead `json:"overhead,omitempty"`
}

// Header says where, when and how the figures were made.
type Header struct {
	Title   string    `json:"title"`
	Date    time.Time `json:"date"`
	Commit  string    `json:"commit"`
	Command string    `json:"command"` // the exact command line
	Machine Machine   `json:"machine"`
	// Baseline is the target the ratios divide by (e.g. "coalesce").
	Baseline string `json:"baseline"`
	// Notes are sentences for the reader: skipped peers and why, warnings.
	Notes []string `json:"notes,omitempty"`
}

// Machine describes the computer that ran the benchmark.
type Machine struct {
	CPU        string  `json:"cpu"`
	Cores      int     `json:"cores"`
	GOMAXPROCS int     `json:"gomaxprocs"`
	MemoryGiB  float64 `json:"memory_gib"`
	Kernel     string  `json:"kernel"`
	Go         string  `json:"go"`
}

// Latency holds latency figures in microseconds.
type Latency struct {
	P50  float64 `json:"p50_us"`
	P90  float64 `json:"p90_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p999_us"`
	Max  float64 `json:"max_us"`
	Mean float64 `json:"mean_us"`
}

// Run is one measurement: one target under one load for one duration.
type Run struct {
	Target   string `json:"target"`   // e.g. "coalesce", "flask", "gunicorn", "noop-fasthttp"
	Scenario string `json:"scenario"` // e.g. "predict-digits"
	Protocol string `json:"protocol"` // "predict", "v2-json", "v2-binary", "tfs"
	Mode     string `json:"mode"`     // "closed" or "open"
	// Level is the number of connections (closed loop) or the offered
	// arrival rate in requests/s (open loop).
	Level float64 `json:"level"`
	Rep   int     `json:"rep"` // repetition, from 0

	Seconds  float64 `json:"seconds"`  // length of the measurement window (warm-up excluded)
	Requests int64   `json:"requests"` // answered within the window, any status
	OK       int64   `json:"ok"`       // 2xx
	// Shed counts 429 and 503 answers: load the server refused, not a
	// success and not a failure.
	Shed int64 `json:"shed"`
	// Errors counts other failures by status code ("500") or by kind
	// (the cause for requests that got no answer: "dial: connection refused",
	// "net: timeout", ...).
	Errors map[string]int64 `json:"errors,omitempty"`

	Throughput float64 `json:"throughput"` // OK answers per second
	// Offered is the intended arrival rate (open loop), 0 otherwise.
	Offered float64 `json:"offered,omitempty"`
	// Latency covers every answered request; in open loop it is measured
	// from the intended send time, so it includes queueing delay.
	Latency Latency `json:"latency"`
	// ServiceLatency covers the same answers from the moment each request
	// was sent (open loop: without the client's lateness or a wait behind
	// the connection's previous request; closed loop: equal to Latency).
	ServiceLatency Latency `json:"service_latency"`
	// ShedLatency covers the 429 and 503 answers alone: how fast load was
	// refused.
	ShedLatency Latency `json:"shed_latency"`
	// Arms holds a switchback run's two arms (bench run -switch-path):
	// arm 0 sent to the run's path, arm 1 to the other, alternating in
	// blocks of time, without each block's settling time.
	Arms []Arm `json:"arms,omitempty"`

	ClientCPU float64 `json:"client_cpu_s"` // seconds of CPU the load generator used
	// ServerCPU is the seconds of CPU the server process (and its
	// children) used, or -1 when unknown.
	ServerCPU float64 `json:"server_cpu_s"`
	// Server holds figures scraped from the server's /metrics before and
	// after the run (deltas), e.g. "inference_calls", "mean_batch_size".
	Server map[string]float64 `json:"server,omitempty"`
}

// Point summarises the repetitions of one target, scenario, mode and level
// with medians.
type Point struct {
	Target   string  `json:"target"`
	Scenario string  `json:"scenario"`
	Protocol string  `json:"protocol"`
	Mode     string  `json:"mode"`
	Level    float64 `json:"level"`
	Reps     int     `json:"reps"`

	Throughput float64 `json:"throughput"` // median
	Latency    Latency `json:"latency"`    // median of each figure
	OK         int64   `json:"ok"`         // sums over the repetitions
	Shed       int64   `json:"shed"`
	Errors     int64   `json:"errors"`
	// ShedP99 is the median p99 latency of the shed answers, µs (0: none).
	ShedP99 float64 `json:"shed_p99_us"`
	// ServerCPUPerRequest is the median server CPU per answered request
	// in microseconds, or -1 when unknown.
	ServerCPUPerRequest float64            `json:"server_cpu_per_request_us"`
	ClientCPUPerRequest float64            `json:"client_cpu_per_request_us"`
	Server              map[string]float64 `json:"server,omitempty"` // medians
}

// Ratio compares a target with the baseline at one scenario, mode and
// level: the median over repetitions of the per-repetition ratios (runs of
// the same repetition ran back to back, so drift hits both alike).
type Ratio struct {
	Scenario string  `json:"scenario"`
	Mode     string  `json:"mode"`
	Level    float64 `json:"level"`
	Target   string  `json:"target"`
	Baseline string  `json:"baseline"`
	// Throughput is target throughput / baseline throughput.
	Throughput float64 `json:"throughput"`
	// P99 is target p99 latency / baseline p99 latency.
	P99   float64 `json:"p99"`
	Pairs int     `json:"pairs"`
}

// Overhead compares the tool with wrk on the same server, interleaved.
type Overhead struct {
	Server      string    `json:"server"`      // what was measured, e.g. "noop-fasthttp"
	Connections int       `json:"connections"` // both tools
	Seconds     float64   `json:"seconds"`     // per run
	Wrk         []float64 `json:"wrk_rps"`     // requests/s per repetition
	Ours        []float64 `json:"ours_rps"`
	// Ratio is the median of Ours[i]/Wrk[i].
	Ratio float64 `json:"ratio"`
}

// Arm is one arm of a switchback run: its measured answers outside the
// settling time, and their latency from the intended send time and from
// the send.
type Arm struct {
	Addr           string  `json:"addr,omitempty"` // arm 1's server when not the run's (bench run -switch-addr)
	Path           string  `json:"path"`
	Requests       int64   `json:"requests"`
	Latency        Latency `json:"latency"`
	ServiceLatency Latency `json:"service_latency"`
}
