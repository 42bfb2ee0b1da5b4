package drift

import (
	"slices"
	"strconv"
)

// Report is the drift of one model version over the current window, as
// /admin/drift/{model} shows it.
type Report struct {
	Model      string `json:"model"`
	Version    string `json:"version"`
	Samples    uint64 `json:"window_samples"` // rows in the window
	MinSamples int    `json:"min_samples"`    // rows needed before statistics are reported
	Sampled    uint64 `json:"sampled"`        // samples counted since the version loaded
	Dropped    uint64 `json:"dropped"`        // samples dropped because the ring was full
	// Score is the highest input PSI; 0 until MinSamples.
	Score float64 `json:"score"`
	// Features and Outputs are ranked by PSI, highest first.
	Features []FeatureReport `json:"features"`
	Outputs  []FeatureReport `json:"outputs,omitempty"`
	Feedback *FeedbackReport `json:"feedback,omitempty"`
}

// FeatureReport is one feature's drift. PSI and JS are 0 and Reported
// false until the window holds MinSamples rows.
type FeatureReport struct {
	Name     string      `json:"name"`
	Kind     string      `json:"kind"`
	Reported bool        `json:"reported"`
	PSI      float64     `json:"psi"`
	JS       float64     `json:"js_distance"`
	Bins     []BinReport `json:"bins"`
}

// BinReport is one bin: its range or category, its reference share and
// its share in the window.
type BinReport struct {
	Bin       string  `json:"bin"`
	Reference float64 `json:"reference"`
	Window    float64 `json:"window"`
}

// FeedbackReport is the ground truth joined in the window: accuracy for
// a categorical prediction, mean absolute error for a numeric one.
type FeedbackReport struct {
	Output  string  `json:"output"`
	Samples uint64  `json:"window_samples"`
	Metric  string  `json:"metric"` // "accuracy" or "mean_absolute_error"
	Value   float64 `json:"value"`
}

// Report counts the samples waiting in the ring and returns the drift of
// the window, features ranked by PSI.
func (h *Handle) Report() *Report {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.drain()
	rows := h.win.total(h.sum)
	rep := &Report{Model: h.model, Version: h.version, Samples: rows, MinSamples: h.cfg.MinSamples,
		Sampled: h.sampled.Get(), Dropped: h.dropped.Get()}
	enough := rows >= uint64(h.cfg.MinSamples)
	for j := range h.refs {
		ref := &h.refs[j]
		fr := FeatureReport{Name: ref.f.Name, Kind: ref.f.Kind, Reported: enough}
		c := h.sum[ref.off : ref.off+ref.f.Bins()]
		n := total(c)
		if enough {
			fr.PSI, fr.JS = h.statsOf(ref)
		}
		for b, share := range ref.f.Ref {
			br := BinReport{Bin: binLabel(ref.f, b), Reference: share}
			if n > 0 {
				br.Window = float64(c[b]) / float64(n)
			}
			fr.Bins = append(fr.Bins, br)
		}
		if ref.out {
			rep.Outputs = append(rep.Outputs, fr)
		} else {
			rep.Features = append(rep.Features, fr)
			if enough {
				rep.Score = max(rep.Score, fr.PSI)
			}
		}
	}
	byPSI := func(a, b FeatureReport) int { return cmpDesc(a.PSI, b.PSI) }
	slices.SortStableFunc(rep.Features, byPSI)
	slices.SortStableFunc(rep.Outputs, byPSI)
	if h.feedbackEnabled && h.pred >= 0 {
		n, v := h.win.feedback()
		fr := &FeedbackReport{Output: h.refs[h.pred].f.Name, Samples: n, Metric: "mean_absolute_error", Value: v}
		if h.classify {
			fr.Metric = "accuracy"
		}
		rep.Feedback = fr
	}
	return rep
}

// binLabel names bin b of f: "<= e0", "(e0, e1]", "> e", a category,
// "other" or "missing".
func binLabel(f *Feature, b int) string {
	if b == f.Bins()-1 {
		return "missing"
	}
	if f.Kind == Categorical {
		if b < len(f.Categories) {
			return f.Categories[b]
		}
		return "other"
	}
	g := func(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }
	switch {
	case len(f.Edges) == 0:
		return "all"
	case b == 0:
		return "<= " + g(f.Edges[0])
	case b == len(f.Edges):
		return "> " + g(f.Edges[b-1])
	}
	return "(" + g(f.Edges[b-1]) + ", " + g(f.Edges[b]) + "]"
}
