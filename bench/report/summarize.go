package report

import (
	"cmp"
	"slices"
)

// groupKey identifies the repetitions that make one Point.
type groupKey struct {
	scenario, mode, target string
	level                  float64
}

// Summarize reduces runs to one Point per target, scenario, mode and level,
// and to one Ratio per non-baseline target and (scenario, mode, level) that
// the baseline target also ran.
//
// A Point's throughput and latency figures are medians over its
// repetitions; OK, Shed and Errors are sums. ServerCPUPerRequest is the
// median over repetitions of ServerCPU in µs per answered request, or -1
// when any repetition's ServerCPU is negative (unknown) or answered no
// request; ClientCPUPerRequest likewise. Server holds, per key, the median
// over the repetitions that reported that key.
//
// Points are ordered by scenario in order of first appearance in runs (the
// order a suite ran them), then mode (closed before open), then target in
// order of first appearance, then level ascending.
// Ratios follow the same order.
//
// A Ratio pairs the target's run and the baseline's run of the same Rep
// (they ran back to back), divides target by baseline for throughput and
// p99 latency, and takes the median over pairs. A pair whose baseline
// throughput or p99 is 0 is skipped; Pairs counts the pairs used, and when
// it is 0 the ratios are 0 and mean "unknown". If a Rep occurs twice on one
// side, the first run in runs is used. An empty baseline yields no ratios.
//
// Summarize does not modify runs.
func Summarize(runs []Run, baseline string) ([]Point, []Ratio) {
	groups := make(map[groupKey][]Run)
	targetOrder := make(map[string]int)
	scenarioOrder := make(map[string]int)
	var keys []groupKey
	for _, r := range runs {
		if _, ok := targetOrder[r.Target]; !ok {
			targetOrder[r.Target] = len(targetOrder)
		}
		if _, ok := scenarioOrder[r.Scenario]; !ok {
			scenarioOrder[r.Scenario] = len(scenarioOrder)
		}
		k := groupKey{r.Scenario, r.Mode, r.Target, r.Level}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], r)
	}
	slices.SortFunc(keys, func(a, b groupKey) int {
		return cmp.Or(
			cmp.Compare(scenarioOrder[a.scenario], scenarioOrder[b.scenario]),
			cmp.Compare(a.mode, b.mode),
			cmp.Compare(targetOrder[a.target], targetOrder[b.target]),
			cmp.Compare(a.level, b.level),
		)
	})

	points := make([]Point, 0, len(keys))
	var ratios []Ratio
	for _, k := range keys {
		points = append(points, summarizeGroup(groups[k]))
		if baseline == "" || k.target == baseline {
			continue
		}
		base, ok := groups[groupKey{k.scenario, k.mode, baseline, k.level}]
		if !ok {
			continue
		}
		ratios = append(ratios, pairRatio(k, baseline, groups[k], base))
	}
	return points, ratios
}

// summarizeGroup makes the Point of the repetitions rs (len(rs) > 0), which
// share target, scenario, mode and level.
func summarizeGroup(rs []Run) Point {
	p := Point{
		Target:   rs[0].Target,
		Scenario: rs[0].Scenario,
		Protocol: rs[0].Protocol,
		Mode:     rs[0].Mode,
		Level:    rs[0].Level,
		Reps:     len(rs),
	}
	field := func(f func(Run) float64) float64 {
		xs := make([]float64, len(rs))
		for i, r := range rs {
			xs[i] = f(r)
		}
		return median(xs)
	}
	p.Throughput = field(func(r Run) float64 { return r.Throughput })
	p.Latency = Latency{
		P50:  field(func(r Run) float64 { return r.Latency.P50 }),
		P90:  field(func(r Run) float64 { return r.Latency.P90 }),
		P99:  field(func(r Run) float64 { return r.Latency.P99 }),
		P999: field(func(r Run) float64 { return r.Latency.P999 }),
		Max:  field(func(r Run) float64 { return r.Latency.Max }),
		Mean: field(func(r Run) float64 { return r.Latency.Mean }),
	}
	p.ShedP99 = field(func(r Run) float64 { return r.ShedLatency.P99 })
	for _, r := range rs {
		p.OK += r.OK
		p.Shed += r.Shed
		for _, n := range r.Errors {
			p.Errors += n
		}
	}
	p.ServerCPUPerRequest = cpuPerRequest(rs, func(r Run) float64 { return r.ServerCPU })
	p.ClientCPUPerRequest = cpuPerRequest(rs, func(r Run) float64 { return r.ClientCPU })
	p.Server = serverMedians(rs)
	return p
}

// cpuPerRequest is the median over rs of cpu(r) seconds per answered
// request, in µs, or -1 if any repetition lacks either figure.
func cpuPerRequest(rs []Run, cpu func(Run) float64) float64 {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		if cpu(r) < 0 || r.Requests == 0 {
			return -1
		}
		xs[i] = cpu(r) * 1e6 / float64(r.Requests)
	}
	return median(xs)
}

// serverMedians is, per key of the runs' Server maps, the median over the
// runs that have the key; nil when no run has any.
func serverMedians(rs []Run) map[string]float64 {
	byKey := make(map[string][]float64)
	for _, r := range rs {
		for k, v := range r.Server {
			byKey[k] = append(byKey[k], v)
		}
	}
	if len(byKey) == 0 {
		return nil
	}
	m := make(map[string]float64, len(byKey))
	for k, xs := range byKey {
		m[k] = median(xs)
	}
	return m
}

// pairRatio compares target runs ts with baseline runs bs of the same
// scenario, mode and level, pairing them by Rep.
func pairRatio(k groupKey, baseline string, ts, bs []Run) Ratio {
	base := make(map[int]Run, len(bs))
	for _, b := range bs {
		if _, dup := base[b.Rep]; !dup {
			base[b.Rep] = b
		}
	}
	seen := make(map[int]bool, len(ts))
	var thr, p99 []float64
	for _, t := range ts {
		b, ok := base[t.Rep]
		if !ok || seen[t.Rep] {
			continue
		}
		seen[t.Rep] = true
		if b.Throughput == 0 || b.Latency.P99 == 0 {
			continue
		}
		thr = append(thr, t.Throughput/b.Throughput)
		p99 = append(p99, t.Latency.P99/b.Latency.P99)
	}
	return Ratio{
		Scenario:   k.scenario,
		Mode:       k.mode,
		Level:      k.level,
		Target:     k.target,
		Baseline:   baseline,
		Throughput: median(thr),
		P99:        median(p99),
		Pairs:      len(thr),
	}
}

// median returns the middle value of xs, the mean of the two middle values
// when len(xs) is even, and 0 when xs is empty: 0 rather than NaN because
// results.json cannot carry NaN, and every caller also reports how many
// values there were (Reps, Pairs). xs is not modified.
func median(xs []float64) float64 {
	n := len(xs)
	if n == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
