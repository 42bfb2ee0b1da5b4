package xgboost

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/coalesce-ml/coalesce/backends/cpu/forest"
	"github.com/coalesce-ml/coalesce/internal/approx"
)

// want is what testdata/make.py records from xgboost 1.7.4 for a model.
type want struct {
	Model      string       `json:"model"`
	Rows       [][]*float64 `json:"rows"`        // null: missing
	MarginBits [][]uint32   `json:"margin_bits"` // predict(output_margin=True)
	Pred       [][]float64  `json:"pred"`        // predict()
}

func load(t testing.TB, name string) (*forest.Ensemble, *want) {
	t.Helper()
	var w want
	b, err := os.ReadFile(filepath.Join("testdata", name+".want.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &w); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join("testdata", w.Model))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Read(data)
	if err != nil {
		t.Fatalf("Read(%s) = %v", w.Model, err)
	}
	return m, &w
}

// TestMatchesXGBoost checks every testdata model against xgboost's own
// predictions: margins bit-exact, whatever the batch size, and
// transformed predictions within 1e-6 relative.
func TestMatchesXGBoost(t *testing.T) {
	for _, tc := range []struct {
		name      string
		objective string
		classes   int
		transform forest.Transform
		targets   int
	}{
		{"binary_logistic", "binary:logistic", 2, forest.Sigmoid, 1},
		{"multi_softprob", "multi:softprob", 4, forest.Softmax, 4},
		{"multi_softmax", "multi:softmax", 3, forest.Softmax, 3},
		{"reg_squarederror", "reg:squarederror", 0, forest.Identity, 1},
		{"reg_pruned", "reg:squarederror", 0, forest.Identity, 1},
		{"count_poisson", "count:poisson", 0, forest.Exp, 1},
		{"dart", "binary:logistic", 2, forest.Sigmoid, 1},
		{"categorical", "reg:squarederror", 0, forest.Identity, 1},
		{"reg_logistic", "reg:logistic", 0, forest.Sigmoid, 1},
		{"binary_logitraw", "binary:logitraw", 2, forest.Identity, 1},
		{"reg_gamma", "reg:gamma", 0, forest.Exp, 1},
		{"reg_tweedie", "reg:tweedie", 0, forest.Exp, 1},
		{"survival_cox", "survival:cox", 0, forest.Exp, 1},
		{"reg_absoluteerror", "reg:absoluteerror", 0, forest.Identity, 1},
		{"reg_pseudohubererror", "reg:pseudohubererror", 0, forest.Identity, 1},
		{"reg_squaredlogerror", "reg:squaredlogerror", 0, forest.Identity, 1},
		{"multi_target", "reg:squarederror", 0, forest.Identity, 2},
		{"rank_pairwise", "rank:pairwise", 0, forest.Identity, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, w := load(t, tc.name)
			f := m.Forest
			if m.Framework != "xgboost 1.7.4" || m.Objective != tc.objective || m.Classes != tc.classes ||
				m.Transform != tc.transform || m.Scale != 1 || f.NumTargets() != tc.targets {
				t.Fatalf("Read = {%q %q classes %d %v scale %v targets %d}; want {%q %q classes %d %v scale 1 targets %d}",
					m.Framework, m.Objective, m.Classes, m.Transform, m.Scale, f.NumTargets(),
					"xgboost 1.7.4", tc.objective, tc.classes, tc.transform, tc.targets)
			}
			rows, nf, nt := len(w.Rows), f.NumFeatures(), f.NumTargets()
			x := make([]float32, rows*nf)
			x64 := make([]float64, rows*nf)
			for r, row := range w.Rows {
				if len(row) != nf {
					t.Fatalf("row %d has %d features; NumFeatures() = %d", r, len(row), nf)
				}
				for j, v := range row {
					x64[r*nf+j] = math.NaN()
					if v != nil {
						x64[r*nf+j] = *v
					}
					x[r*nf+j] = float32(x64[r*nf+j])
				}
			}
			for _, batch := range []int{1, 3, rows} {
				out := make([]float32, rows*nt)
				for r := 0; r < rows; r += batch {
					n := min(batch, rows-r)
					f.Predict(x[r*nf:(r+n)*nf], n, out[r*nt:(r+n)*nt])
				}
				checkMargins(t, "Predict", batch, out, w, nt)
			}
			out := make([]float32, rows*nt)
			f.Predict64(x64, rows, out)
			checkMargins(t, "Predict64", rows, out, w, nt)

			for r := range rows {
				got := out[r*nt : (r+1)*nt]
				m.Transform.Apply(got, m.Scale)
				want := w.Pred[r]
				if tc.objective == "multi:softmax" { // xgboost predicts the label
					if k := argmax(got); k != int(want[0]) || slices.ContainsFunc(got, func(p float32) bool { return p != p }) {
						t.Errorf("row %d: argmax %d (%v); want label %v", r, k, got, want[0])
					}
					continue
				}
				for k, v := range want {
					// Relative 1e-6 (approx.Equal is absolute below 1).
					if !approx.Equal(float64(got[k]), v, 1e-6*min(1, math.Abs(v))) {
						t.Errorf("row %d target %d: prediction %v; want %v (relative error %.2g)", r, k, got[k], v, math.Abs(float64(got[k])-v)/math.Abs(v))
					}
				}
			}
		})
	}
}

func checkMargins(t *testing.T, fn string, batch int, out []float32, w *want, nt int) {
	t.Helper()
	for r, row := range w.MarginBits {
		for k, bits := range row {
			if got := out[r*nt+k]; math.Float32bits(got) != bits {
				t.Errorf("%s batch %d: row %d target %d: margin %v (%#08x); want %v (%#08x)",
					fn, batch, r, k, got, math.Float32bits(got), math.Float32frombits(bits), bits)
			}
		}
	}
}

func argmax(v []float32) int {
	return slices.Index(v, slices.Max(v))
}

func TestFeatureNames(t *testing.T) {
	m, _ := load(t, "binary_logistic")
	want := []string{"age", "income", "température", "f3", "f4", "f5"}
	if !slices.Equal(m.FeatureNames, want) {
		t.Errorf("FeatureNames = %q; want %q", m.FeatureNames, want)
	}
	m, _ = load(t, "reg_squarederror")
	if m.FeatureNames != nil {
		t.Errorf("FeatureNames = %q; want none", m.FeatureNames)
	}
}

// TestBaseMargin checks ProbToMargin against values xgboost 1.7.4
// predicts for a model without trees (xgb.train(params, d, 0)).
func TestBaseMargin(t *testing.T) {
	f := func(objective, baseScore string, want float32) {
		t.Helper()
		obj, err := lookupObjective(objective)
		if err != nil {
			t.Fatal(err)
		}
		got, err := baseMargin(baseScore, obj)
		if err != nil || math.Float32bits(got) != math.Float32bits(want) {
			t.Errorf("baseMargin(%q, %s) = %v, %v; want %v", baseScore, objective, got, err, want)
		}
	}
	f("binary:logistic", "3E-1", -0.84729785)
	f("binary:logistic", "5E-1", float32(math.Copysign(0, -1))) // -logf(1) is -0
	f("binary:logistic", "7E-1", 0.8472978)
	f("binary:logistic", "1.23456E-1", -1.9601021)
	f("binary:logistic", "9.999E-1", 9.210175)
	f("reg:logistic", "3E-1", -0.84729785)
	f("binary:logitraw", "3E-1", 0.3) // identity, unlike binary:logistic
	f("count:poisson", "3E-1", -1.2039728)
	f("reg:gamma", "7E-1", -0.35667497)
	f("reg:tweedie", "1.23456E-1", -2.0918705)
	f("survival:cox", "9.999E-1", -0.00010002159)
	f("reg:squarederror", "2.5E0", 2.5)
	f("multi:softprob", "5E-1", 0.5)
	f("rank:ndcg", "3E-1", 0.3)
}
