// Package drift watches a model's live inputs and predictions for drift
// away from a reference profile of its training data, with memory that
// does not grow with traffic or time.
//
// A Profile (profile.json beside the model) holds, per feature, reference
// bins and the share of the reference data in each. A Handle, one per
// served model version, takes samples of requests on the request path
// without ever blocking (a fixed ring of slots; a sample that finds no
// free slot is dropped and counted) and a background aggregator counts
// them into a sliding window of sub-windows, compares the window's shares
// with the reference (PSI and Jensen–Shannon distance) and publishes
// gauges. Delayed ground truth posted by the application (Feedback) is
// joined to sampled predictions by request id in a bounded table.
package drift

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Feature kinds.
const (
	Numeric     = "numeric"     // bins between quantile edges
	Categorical = "categorical" // the top categories, then "other"
)

// ProfileVersion is the only profile format version this package reads.
const ProfileVersion = 1

// Profile is the reference distribution of a model's inputs and outputs,
// as stored in models/<name>/profile.json. Its format:
//
//	{"version": 1, "model": "iris-logreg", "rows": 32,
//	 "features": [Feature...],   // model inputs
//	 "outputs":  [Feature...],   // model outputs (prediction drift)
//	 "prediction": "label"}      // the output feedback is compared with
//
// A Profile is read-only once loaded and safe for concurrent use.
type Profile struct {
	Version  int       `json:"version"`
	Model    string    `json:"model,omitempty"`
	Rows     int64     `json:"rows"` // reference rows the shares come from
	Features []Feature `json:"features"`
	Outputs  []Feature `json:"outputs,omitempty"`
	// Prediction names the output feature that Feedback compares the
	// ground truth with; empty means the first output.
	Prediction string `json:"prediction,omitempty"`
}

// Feature is one column of one model tensor and its reference shares.
//
// A numeric feature's bins are (-inf, e0], (e0, e1], ..., (e_{k-2}, +inf)
// for its k-1 strictly increasing Edges, then one bin for missing values
// (NaN): len(Ref) = len(Edges)+2. A categorical feature's bins are its
// Categories, then "other" (any value not listed), then missing:
// len(Ref) = len(Categories)+2. Numeric tensors may be categorical (class
// labels): their categories are the values' shortest decimal form ("2").
// Ref shares sum to 1 ± 1e-6.
type Feature struct {
	Name       string    `json:"name"`   // label value of the metrics; unique
	Tensor     string    `json:"tensor"` // the model input or output
	Column     int       `json:"column"` // element index within a row of the tensor
	Kind       string    `json:"kind"`   // Numeric or Categorical
	Edges      []float64 `json:"edges,omitempty"`
	Categories []string  `json:"categories,omitempty"`
	Ref        []float64 `json:"ref"`
}

// Bins returns the feature's number of bins, missing included.
func (f *Feature) Bins() int { return len(f.Ref) }

// Bin returns the bin of numeric value v: by the edges for a numeric
// feature, by its decimal form for a categorical one.
func (f *Feature) Bin(v float64) int {
	if math.IsNaN(v) {
		return len(f.Ref) - 1
	}
	if f.Kind == Categorical {
		var buf [32]byte
		return f.CategoryBin(strconv.AppendFloat(buf[:0], v, 'g', -1, 64))
	}
	return searchEdges(f.Edges, v)
}

// searchEdges returns the index of the first edge >= v (len(edges) when
// none is): sort.SearchFloat64s without its closure, as the aggregator
// calls it for every value it counts.
func searchEdges(edges []float64, v float64) int {
	lo, hi := 0, len(edges)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if edges[m] < v {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// CategoryBin returns the bin of category s (a categorical feature's
// "other" bin when s is not one of its categories).
func (f *Feature) CategoryBin(s []byte) int {
	for i, c := range f.Categories {
		if c == string(s) {
			return i
		}
	}
	return len(f.Categories)
}

// ErrProfile reports a profile that is malformed or does not fit its model.
var ErrProfile = errors.New("drift: bad profile")

// LoadProfile reads and validates the profile at path.
func LoadProfile(path string) (*Profile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseProfile(b)
}

// ParseProfile decodes and validates a profile.
func ParseProfile(b []byte) (*Profile, error) {
	var p Profile
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProfile, err)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Validate checks the format: version 1, unique names, strictly
// increasing edges, as many shares as bins, shares summing to 1.
func (p *Profile) Validate() error {
	if p.Version != ProfileVersion {
		return fmt.Errorf("%w: version %d; want %d", ErrProfile, p.Version, ProfileVersion)
	}
	if len(p.Features)+len(p.Outputs) == 0 {
		return fmt.Errorf("%w: no features and no outputs", ErrProfile)
	}
	seen := map[string]bool{}
	for i, f := range slices.Concat(p.Features, p.Outputs) {
		where := fmt.Sprintf("feature %d (%q)", i, f.Name)
		switch {
		case f.Name == "":
			return fmt.Errorf("%w: %s: no name", ErrProfile, where)
		case strings.ContainsAny(f.Name, "\"\\\n"):
			return fmt.Errorf("%w: %s: name has a quote, backslash or newline; want a plain metric label", ErrProfile, where)
		case seen[f.Name]:
			return fmt.Errorf("%w: %s: name used twice", ErrProfile, where)
		case f.Tensor == "":
			return fmt.Errorf("%w: %s: no tensor", ErrProfile, where)
		case f.Column < 0:
			return fmt.Errorf("%w: %s: column %d; want >= 0", ErrProfile, where, f.Column)
		}
		seen[f.Name] = true
		want := 0
		switch f.Kind {
		case Numeric:
			for j := 1; j < len(f.Edges); j++ {
				if !(f.Edges[j] > f.Edges[j-1]) {
					return fmt.Errorf("%w: %s: edges not strictly increasing at %d", ErrProfile, where, j)
				}
			}
			for _, e := range f.Edges {
				if math.IsNaN(e) || math.IsInf(e, 0) {
					return fmt.Errorf("%w: %s: edge %v; want finite", ErrProfile, where, e)
				}
			}
			want = len(f.Edges) + 2
		case Categorical:
			want = len(f.Categories) + 2
		default:
			return fmt.Errorf("%w: %s: kind %q; want %q or %q", ErrProfile, where, f.Kind, Numeric, Categorical)
		}
		if len(f.Ref) != want {
			return fmt.Errorf("%w: %s: %d reference shares; want %d (bins, other, missing)", ErrProfile, where, len(f.Ref), want)
		}
		sum := 0.0
		for _, r := range f.Ref {
			if r < 0 || math.IsNaN(r) {
				return fmt.Errorf("%w: %s: share %v; want >= 0", ErrProfile, where, r)
			}
			sum += r
		}
		if math.Abs(sum-1) > 1e-6 {
			return fmt.Errorf("%w: %s: shares sum to %v; want 1", ErrProfile, where, sum)
		}
	}
	if p.Prediction != "" && !slices.ContainsFunc(p.Outputs, func(f Feature) bool { return f.Name == p.Prediction }) {
		return fmt.Errorf("%w: prediction %q is not an output feature", ErrProfile, p.Prediction)
	}
	return nil
}

// prediction returns the index in Outputs of the feature feedback is
// compared with, or -1 without outputs.
func (p *Profile) prediction() int {
	if len(p.Outputs) == 0 {
		return -1
	}
	for i, f := range p.Outputs {
		if f.Name == p.Prediction {
			return i
		}
	}
	return 0
}
