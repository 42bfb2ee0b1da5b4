package report

import (
	"cmp"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Chart size: 8×5 in, 768×480 pixels at the PNG backend's 96 dpi.
const chartWidth, chartHeight = 8 * vg.Inch, 5 * vg.Inch

// WriteCharts draws r.Points as PNG charts in dir, creating dir if needed,
// and returns the paths of the files written. Every scenario and mode gets
// two charts, always named after both (even when there is only one pair),
// so that a chart's path does not depend on what else ran:
//
//   - throughput_latency-<scenario>-<mode>.png: x = throughput (req/s),
//     y = p99 latency (ms, on a log scale when the values span more than
//     100×), one line per target through its levels in ascending order.
//   - latency_percentiles-<scenario>-<mode>.png: p50, p90, p99, p99.9 and
//     max latency (ms, log scale) per target, at the highest level that
//     every target of that scenario and mode ran, or, when they share
//     none, at each target's highest level; the title says which.
//
// In names, characters of scenario and mode outside [A-Za-z0-9._-] become
// '_'. A target keeps one colour and glyph across all charts. Points with
// a latency ≤ 0 (no answer) are left out of log-scale charts. Fonts are
// embedded in gonum/plot: drawing needs no network or system fonts.
func WriteCharts(dir string, r *Report) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("report: charts: %w", err)
	}
	targets := sectionTargets(section{points: r.Points})
	style := func(t string) int { return slices.Index(targets, t) }

	var paths []string
	for _, s := range sections(r.Points) {
		names := chartNames(s.scenario, s.mode)
		plots := []*plot.Plot{throughputLatency(s, style), latencyPercentiles(s, style)}
		for i, p := range plots {
			path := filepath.Join(dir, names[i])
			if err := p.Save(chartWidth, chartHeight, path); err != nil {
				return paths, fmt.Errorf("report: chart %s: %w", path, err)
			}
			paths = append(paths, path)
		}
	}
	return paths, nil
}

// chartNames are the base names of the charts of one scenario and mode, in
// the order WriteCharts writes them.
func chartNames(scenario, mode string) []string {
	suffix := "-" + safeName(scenario) + "-" + safeName(mode) + ".png"
	return []string{"throughput_latency" + suffix, "latency_percentiles" + suffix}
}

// safeName replaces the characters of s that are unsafe in a file name.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9',
			r == '.', r == '_', r == '-':
			return r
		}
		return '_'
	}, s)
}

// line is one target's series on a chart.
type line struct {
	target string
	xys    plotter.XYs
}

func throughputLatency(s section, style func(string) int) *plot.Plot {
	// Each line runs through its target's levels in ascending order,
	// whatever the order of s.points.
	pts := slices.Clone(s.points)
	slices.SortStableFunc(pts, func(a, b Point) int { return cmp.Compare(a.Level, b.Level) })
	var lines []line
	for _, t := range sectionTargets(s) {
		l := line{target: t}
		for _, p := range pts {
			if p.Target == t {
				l.xys = append(l.xys, plotter.XY{X: p.Throughput, Y: p.Latency.P99 / 1000})
			}
		}
		lines = append(lines, l)
	}

	p := newPlot(fmt.Sprintf("%s, %s loop: throughput vs p99 latency", s.scenario, s.mode),
		"throughput (req/s)", "p99 latency (ms)")
	lo, hi := yRange(lines)
	addLines(p, lines, style, hi > 0 && hi/lo > 100)
	p.X.Min = 0
	p.X.Tick.Marker = plainTicks{}
	return p
}

// percentileNames label the categories of the percentile chart.
var percentileNames = []string{"p50", "p90", "p99", "p99.9", "max"}

func latencyPercentiles(s section, style func(string) int) *plot.Plot {
	targets := sectionTargets(s)
	levels := map[string][]float64{}
	for _, p := range s.points {
		levels[p.Target] = append(levels[p.Target], p.Level)
	}
	// The highest level common to all targets, if any.
	common := math.Inf(-1)
	for _, l := range levels[targets[0]] {
		if l > common && !slices.ContainsFunc(targets, func(t string) bool { return !slices.Contains(levels[t], l) }) {
			common = l
		}
	}
	at := "each target's highest level"
	if !math.IsInf(common, -1) {
		at = fmtLevel(common) + " connections"
		if s.mode == "open" {
			at = fmtLevel(common) + " req/s offered"
		}
	}

	var lines []line
	for _, t := range targets {
		var best *Point
		for i, p := range s.points {
			if p.Target != t {
				continue
			}
			shared := !math.IsInf(common, -1)
			if shared && p.Level == common || !shared && (best == nil || p.Level > best.Level) {
				best = &s.points[i]
			}
		}
		l := best.Latency
		ys := []float64{l.P50, l.P90, l.P99, l.P999, l.Max}
		xys := make(plotter.XYs, len(ys))
		for i, y := range ys {
			xys[i] = plotter.XY{X: float64(i), Y: y / 1000}
		}
		lines = append(lines, line{target: t, xys: xys})
	}

	p := newPlot(fmt.Sprintf("%s, %s loop: latency percentiles at %s", s.scenario, s.mode, at),
		"percentile", "latency (ms)")
	p.NominalX(percentileNames...)
	_, hi := yRange(lines)
	addLines(p, lines, style, hi > 0)
	return p
}

// sectionTargets lists the targets of s in order of first appearance.
func sectionTargets(s section) []string {
	var ts []string
	for _, p := range s.points {
		if !slices.Contains(ts, p.Target) {
			ts = append(ts, p.Target)
		}
	}
	return ts
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = vg.Points(6)
	p.Legend.YOffs = vg.Points(-4)
	p.Add(plotter.NewGrid())
	return p
}

// yRange is the smallest and largest positive finite y of lines, or 0, 0.
func yRange(lines []line) (lo, hi float64) {
	lo = math.Inf(1)
	for _, l := range lines {
		for _, xy := range l.xys {
			if xy.Y > 0 && !math.IsInf(xy.Y, 0) {
				lo, hi = min(lo, xy.Y), max(hi, xy.Y)
			}
		}
	}
	if hi == 0 {
		return 0, 0
	}
	return lo, hi
}

// addLines adds one line with glyphs per target and sets the y axis: log
// scale (dropping points with y ≤ 0) when logY, else linear from 0. Values
// that are NaN or infinite are dropped: plotter refuses them. The top of
// the y axis is left empty for the legend, which gonum draws inside the
// data area.
func addLines(p *plot.Plot, lines []line, style func(string) int, logY bool) {
	n := 0
	for _, l := range lines {
		xys := slices.DeleteFunc(slices.Clone(l.xys), func(xy plotter.XY) bool {
			return !finite(xy.X) || !finite(xy.Y) || logY && xy.Y <= 0
		})
		if len(xys) == 0 {
			continue
		}
		ln, sc, err := plotter.NewLinePoints(xys)
		if err != nil {
			panic("BUG: report: NewLinePoints on finite values: " + err.Error())
		}
		i := style(l.target)
		ln.Color, sc.Color = plotutil.Color(i), plotutil.Color(i)
		ln.Width = vg.Points(1.5)
		sc.Shape = plotutil.Shape(i)
		sc.Radius = vg.Points(3.5)
		p.Add(ln, sc)
		p.Legend.Add(l.target, ln, sc)
		n++
	}
	// Share of the data area's height the legend needs: ~14 pt a line
	// out of ~300 pt.
	room := min(0.5, (14*float64(n)+12)/300)
	lo, hi := yRange(lines)
	if logY {
		// Set the range explicitly: gonum widens an empty range by ±1,
		// which can cross 0 and is not defined on a log axis.
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = logTicks{}
		p.Y.Min = lo / 1.25
		p.Y.Max = hi * math.Max(1.25, math.Pow(hi/p.Y.Min, room/(1-room)))
		return
	}
	p.Y.Min = 0
	p.Y.Tick.Marker = plainTicks{}
	if hi > 0 {
		p.Y.Max = hi / (1 - room)
	}
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// logTicks marks a log axis at 1, 2 and 5 times powers of ten (powers of
// ten only over more than 4 decades), with an unlabelled tick at every other integer multiple. A range holding fewer
// than three such labels gets every tick labelled, or linear ticks when it
// holds fewer than two ticks, so that the axis always carries numbers (plot.LogTicks labels
// powers of ten only and leaves a narrow range blank).
type logTicks struct{}

// Ticks implements plot.Ticker.
func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(lo > 0) || !(hi >= lo) || math.IsInf(hi, 0) {
		return plainTicks{}.Ticks(lo, hi)
	}
	// Over more than 4 decades, 1-2-5 labels would overlap: label powers
	// of ten only.
	wide := math.Log10(hi/lo) > 4
	var ticks []plot.Tick
	labelled := 0
	for e := int(math.Floor(math.Log10(lo))); e <= int(math.Ceil(math.Log10(hi))); e++ {
		for m := 1; m <= 9; m++ {
			v := roundTick(float64(m) * math.Pow10(e))
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || !wide && (m == 2 || m == 5) {
				t.Label = tickLabel(v)
				labelled++
			}
			ticks = append(ticks, t)
		}
	}
	if len(ticks) < 2 {
		return plainTicks{}.Ticks(lo, hi)
	}
	if labelled < 3 {
		for i := range ticks {
			ticks[i].Label = tickLabel(ticks[i].Value)
		}
	}
	return ticks
}

// roundTick removes the binary noise of m×10^e (3×0.1 = 0.30000000000000004).
func roundTick(v float64) float64 {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 6, 64), 64)
	return r
}

// plainTicks are gonum's linear ticks labelled like the tables: "2,500"
// rather than "2500.00".
type plainTicks struct{}

// Ticks implements plot.Ticker.
func (plainTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = tickLabel(ticks[i].Value)
		}
	}
	return ticks
}

// tickLabel formats an axis value without binary noise or useless zeros,
// grouping the thousands of whole numbers.
func tickLabel(v float64) string {
	v = roundTick(v)
	if v == math.Trunc(v) && math.Abs(v) >= 1000 && math.Abs(v) < 1e15 {
		return group(strconv.FormatFloat(v, 'f', 0, 64))
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}
