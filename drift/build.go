package drift

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
)

// Column is one feature's reference data, for BuildFeature. Exactly one
// of Values and Strings is set; NaN in Values and "" in Strings count as
// missing.
type Column struct {
	Name   string
	Tensor string
	Column int
	// Categorical bins numeric Values by their decimal form (class
	// labels); Strings are always categorical.
	Categorical bool
	Values      []float64
	Strings     []string
}

// BuildFeature returns the reference bins and shares of c: for numeric
// data at most bins bins between quantile edges (fewer when values
// repeat), for categorical data the at most maxCategories most frequent
// categories (ties by name) and "other".
func BuildFeature(c Column, bins, maxCategories int) (Feature, error) {
	f := Feature{Name: c.Name, Tensor: c.Tensor, Column: c.Column, Kind: Numeric}
	n := len(c.Values) + len(c.Strings)
	if n == 0 {
		return f, fmt.Errorf("%w: feature %q: no reference rows", ErrProfile, c.Name)
	}
	if c.Categorical || c.Strings != nil {
		f.Kind = Categorical
		counts := map[string]int{}
		missing := 0
		for _, v := range c.Values {
			if math.IsNaN(v) {
				missing++
			} else {
				counts[strconv.FormatFloat(v, 'g', -1, 64)]++
			}
		}
		for _, s := range c.Strings {
			if s == "" {
				missing++
			} else {
				counts[s]++
			}
		}
		for k := range counts {
			f.Categories = append(f.Categories, k)
		}
		slices.SortFunc(f.Categories, func(a, b string) int {
			return cmp.Or(counts[b]-counts[a], cmp.Compare(a, b))
		})
		if len(f.Categories) > maxCategories {
			f.Categories = f.Categories[:maxCategories]
		}
		f.Ref = make([]float64, len(f.Categories)+2)
		other := n - missing
		for i, k := range f.Categories {
			f.Ref[i] = float64(counts[k]) / float64(n)
			other -= counts[k]
		}
		f.Ref[len(f.Categories)] = float64(other) / float64(n)
		f.Ref[len(f.Categories)+1] = float64(missing) / float64(n)
		return f, nil
	}
	vals := make([]float64, 0, n)
	for _, v := range c.Values {
		if !math.IsNaN(v) {
			vals = append(vals, v)
		}
	}
	slices.Sort(vals)
	if len(vals) > 0 {
		for j := 1; j < bins; j++ {
			// The value at quantile j/bins; a bin is (prev, edge], so an
			// edge at a repeated value keeps the repeats together.
			e := vals[min(len(vals)-1, int(math.Ceil(float64(j)*float64(len(vals))/float64(bins)))-1)]
			if math.IsInf(e, 0) || (len(f.Edges) > 0 && e <= f.Edges[len(f.Edges)-1]) || e == vals[len(vals)-1] {
				continue // the last value needs no edge above it
			}
			f.Edges = append(f.Edges, e)
		}
	}
	f.Ref = make([]float64, len(f.Edges)+2)
	counts := make([]int, len(f.Ref))
	for _, v := range c.Values {
		counts[f.Bin(v)]++
	}
	for i, k := range counts {
		f.Ref[i] = float64(k) / float64(n)
	}
	return f, nil
}
