package report

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// WriteMarkdown writes r as a Markdown report to w: the header (date,
// commit, machine, exact command, baseline, notes), a short guide to the
// figures, then per scenario and mode a table of r.Points and a table of
// r.Ratios, and the tool's overhead against wrk when r.Overhead is set.
// It reads r.Points and r.Ratios as they are: fill them with Summarize
// first. Latencies are printed in ms with 3 significant digits; "n/a"
// marks a figure that is unknown.
func WriteMarkdown(w io.Writer, r *Report) error {
	return writeMarkdown(w, r, nil)
}

// writeMarkdown is WriteMarkdown that also embeds the chart files whose
// base names are in charts (files written beside the report).
func writeMarkdown(w io.Writer, r *Report, charts map[string]bool) error {
	var b bytes.Buffer
	writeHeader(&b, &r.Header)
	writeGuide(&b, r.Points)
	for _, s := range sections(r.Points) {
		writeSection(&b, s, r.Ratios, charts)
	}
	if r.Overhead != nil {
		writeOverhead(&b, r.Overhead)
	}
	_, err := w.Write(b.Bytes())
	return err
}

func writeHeader(b *bytes.Buffer, h *Header) {
	title := h.Title
	if title == "" {
		title = "Coalesce benchmark"
	}
	date, commit := "unknown", "unknown"
	if !h.Date.IsZero() {
		date = h.Date.Format(time.RFC3339)
	}
	if h.Commit != "" {
		commit = "`" + h.Commit + "`"
	}
	m := h.Machine
	fmt.Fprintf(b, "# %s\n\n", title)
	fmt.Fprintf(b, "- **Date:** %s\n", date)
	fmt.Fprintf(b, "- **Commit:** %s\n", commit)
	fmt.Fprintf(b, "- **Machine:** %s; %d cores, GOMAXPROCS %d; %s GiB memory; kernel %s; %s\n",
		orUnknown(m.CPU), m.Cores, m.GOMAXPROCS, sig(m.MemoryGiB, 3), orUnknown(m.Kernel), orUnknown(m.Go))
	if h.Baseline != "" {
		fmt.Fprintf(b, "- **Baseline:** %s (ratios are target ÷ baseline)\n", h.Baseline)
	}
	fmt.Fprintf(b, "\nCommand:\n\n```sh\n%s\n```\n\n", h.Command)
	if len(h.Notes) > 0 {
		b.WriteString("Notes:\n\n")
		for _, n := range h.Notes {
			fmt.Fprintf(b, "- %s\n", n)
		}
		b.WriteString("\n")
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// writeGuide writes the "How to read this" paragraph.
func writeGuide(b *bytes.Buffer, points []Point) {
	reps := "N"
	if len(points) > 0 {
		lo := slices.MinFunc(points, func(a, b Point) int { return a.Reps - b.Reps }).Reps
		hi := slices.MaxFunc(points, func(a, b Point) int { return a.Reps - b.Reps }).Reps
		reps = fmt.Sprint(lo)
		if lo != hi {
			reps = fmt.Sprintf("%d to %d", lo, hi)
		}
	}
	fmt.Fprintf(b, `## How to read this

Every figure is the median of %s repetitions; the targets were measured
interleaved (A, B, A, B, ...), so drift of the machine hits them alike, and
a ratio is the median over repetitions of target ÷ baseline, each target run
paired with the baseline run of the same repetition. Closed loop: each
connection sends its next request when the previous answer arrives. Open
loop: requests are sent at the offered rate whatever the server does, and
latency counts from the intended send time, so it includes queueing delay.
Throughput counts 2xx answers per second. 429 and 503 answers are load the
server refused: they are reported as shed, neither success nor error; shed
and errors are totals over the repetitions. CPU per request is CPU seconds
over answered requests, in µs.

`, reps)
}

// section is the points of one scenario and mode, in report order.
type section struct {
	scenario, mode string
	points         []Point
}

// sections groups points by scenario and mode, in order of first
// appearance, keeping the points' order within each group.
func sections(points []Point) []section {
	var ss []section
	for _, p := range points {
		i := slices.IndexFunc(ss, func(s section) bool { return s.scenario == p.Scenario && s.mode == p.Mode })
		if i < 0 {
			ss = append(ss, section{scenario: p.Scenario, mode: p.Mode})
			i = len(ss) - 1
		}
		ss[i].points = append(ss[i].points, p)
	}
	return ss
}

// levelName is the heading of the level column for a mode.
func levelName(mode string) string {
	if mode == "open" {
		return "rate (req/s)"
	}
	return "connections"
}

func writeSection(b *bytes.Buffer, s section, ratios []Ratio, charts map[string]bool) {
	fmt.Fprintf(b, "## %s, %s loop\n\n", s.scenario, s.mode)
	var protos []string
	for _, p := range s.points {
		if p.Protocol != "" && !slices.Contains(protos, p.Protocol) {
			protos = append(protos, p.Protocol)
		}
	}
	if len(protos) > 0 {
		fmt.Fprintf(b, "Protocol: %s.\n\n", strings.Join(protos, ", "))
	}

	view := slices.ContainsFunc(s.points, func(p Point) bool { return len(p.Server) > 0 })
	cols := []string{"target", levelName(s.mode), "throughput (req/s)", "p50", "p90", "p99",
		"p99.9", "max", "shed", "errors", "server CPU/req (µs)"}
	if view {
		cols = append(cols, "server view")
	}
	tableHead(b, cols)
	for _, p := range s.points {
		row := []string{cell(p.Target), fmtLevel(p.Level), fmtRate(p.Throughput),
			fmtMs(p.Latency.P50), fmtMs(p.Latency.P90), fmtMs(p.Latency.P99),
			fmtMs(p.Latency.P999), fmtMs(p.Latency.Max), fmtShed(p), fmtInt(p.Errors),
			fmtCPU(p.ServerCPUPerRequest)}
		if view {
			row = append(row, cell(serverView(p.Server)))
		}
		tableRow(b, row)
	}
	b.WriteString("\n")

	for _, name := range chartNames(s.scenario, s.mode) {
		if charts[name] {
			fmt.Fprintf(b, "![%s](%s)\n\n", name, name)
		}
	}

	var rs []Ratio
	for _, r := range ratios {
		if r.Scenario == s.scenario && r.Mode == s.mode {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		return
	}
	fmt.Fprintf(b, "Ratios (median over paired repetitions):\n\n")
	tableHead(b, []string{"target vs baseline", levelName(s.mode), "throughput", "p99", "pairs"})
	for _, r := range rs {
		thr, p99 := "n/a", "n/a"
		if r.Pairs > 0 {
			thr, p99 = fmtRatio(r.Throughput), fmtRatio(r.P99)
		}
		tableRow(b, []string{cell(r.Target + " vs " + r.Baseline), fmtLevel(r.Level), thr, p99,
			fmt.Sprint(r.Pairs)})
	}
	b.WriteString("\n")
}

// serverKeys are the Server figures shown, with a short label, in the
// "server view" column; when a point has none of them, its first three
// keys in sorted order are shown instead.
var serverKeys = []struct {
	key, label string
	format     func(float64) string
}{
	{"mean_batch_size", "batch", func(v float64) string { return sig(v, 2) }},
	{"mean_queue_wait_us", "queue", fmtMs},
	{"inference_calls", "calls", fmtRate},
	{"rss_mb", "RSS MB", func(v float64) string { return sig(v, 3) }},
}

// serverView summarises a point's Server figures in a few words,
// e.g. "batch 3.2, queue 0.41 ms".
func serverView(m map[string]float64) string {
	var parts []string
	for _, k := range serverKeys {
		if v, ok := m[k.key]; ok {
			parts = append(parts, k.label+" "+k.format(v))
		}
	}
	if len(parts) > 0 {
		return strings.Join(parts, ", ")
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys[:min(len(keys), 3)] {
		parts = append(parts, k+" "+sig(m[k], 3))
	}
	return strings.Join(parts, ", ")
}

// fmtShed is the shed count, with how fast the refusals came when there
// were any.
func fmtShed(p Point) string {
	if p.Shed == 0 || p.ShedP99 <= 0 {
		return fmtInt(p.Shed)
	}
	return fmtInt(p.Shed) + " (p99 " + fmtMs(p.ShedP99) + ")"
}

func writeOverhead(b *bytes.Buffer, o *Overhead) {
	fmt.Fprintf(b, "## Tool overhead against wrk\n\n")
	fmt.Fprintf(b, "Both tools in closed loop against %s, %d connections, %s s per run, interleaved.\n\n",
		orUnknown(o.Server), o.Connections, fmtLevel(o.Seconds))
	tableHead(b, []string{"repetition", "wrk (req/s)", "ours (req/s)", "ours ÷ wrk"})
	at := func(xs []float64, i int) (float64, bool) {
		if i < len(xs) {
			return xs[i], true
		}
		return 0, false
	}
	for i := range max(len(o.Wrk), len(o.Ours)) {
		wrk, okW := at(o.Wrk, i)
		ours, okO := at(o.Ours, i)
		row := []string{fmt.Sprint(i), "n/a", "n/a", "n/a"}
		if okW {
			row[1] = fmtRate(wrk)
		}
		if okO {
			row[2] = fmtRate(ours)
		}
		if okW && okO && wrk > 0 {
			row[3] = fmtRatio(ours / wrk)
		}
		tableRow(b, row)
	}
	fmt.Fprintf(b, "\nMedian ratio: **%s** (ours ÷ wrk).\n", fmtRatio(o.Ratio))
}

// tableHead writes a Markdown table header; every column but the first
// is right-aligned (they hold numbers).
func tableHead(b *bytes.Buffer, cols []string) {
	tableRow(b, cols)
	b.WriteString("|---")
	for range cols[1:] {
		b.WriteString("|--:")
	}
	b.WriteString("|\n")
}

func tableRow(b *bytes.Buffer, cells []string) {
	b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
}
