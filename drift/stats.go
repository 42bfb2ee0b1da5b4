package drift

import "math"

// epsilon replaces an empty share in PSI, whose terms are infinite for a
// bin one side never saw (Evidently uses the same 0.0001).
const epsilon = 1e-4

// PSI returns the population stability index of the observed bin counts
// against the reference shares ref: Σ (a−e)·ln(a/e) over the bins, a the
// observed share, e the reference share, empty shares taken as epsilon.
// Below 0.1 is stable, 0.1–0.25 moderate, above 0.25 significant. It
// returns NaN without observations.
func PSI(counts []uint64, ref []float64) float64 {
	n := total(counts)
	if n == 0 {
		return math.NaN()
	}
	psi := 0.0
	for i, e := range ref {
		a := float64(counts[i]) / float64(n)
		a, e = max(a, epsilon), max(e, epsilon)
		psi += (a - e) * math.Log(a/e)
	}
	return psi
}

// JSDistance returns the Jensen–Shannon distance (the square root of the
// divergence, natural log, so in [0, √ln 2]) between the observed bin
// counts and the reference shares ref; NaN without observations.
func JSDistance(counts []uint64, ref []float64) float64 {
	n := total(counts)
	if n == 0 {
		return math.NaN()
	}
	js := 0.0
	for i, q := range ref {
		p := float64(counts[i]) / float64(n)
		m := (p + q) / 2
		if p > 0 {
			js += p / 2 * math.Log(p/m)
		}
		if q > 0 {
			js += q / 2 * math.Log(q/m)
		}
	}
	return math.Sqrt(max(js, 0))
}

func total(counts []uint64) uint64 {
	var n uint64
	for _, c := range counts {
		n += c
	}
	return n
}
