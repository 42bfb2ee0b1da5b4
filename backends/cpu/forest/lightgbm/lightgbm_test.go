package lightgbm

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/coalesce-ml/coalesce/backends/cpu/forest"
	"github.com/coalesce-ml/coalesce/internal/approx"
)

// baseModel is a small binary model as LightGBM writes it: tree 0 splits
// x numerically twice (missing types None, then NaN with default left),
// tree 1 splits c on the category set {1, 33} (two words).
const baseModel = `tree
version=v4
num_class=1
num_tree_per_iteration=1
label_index=0
max_feature_idx=1
objective=binary sigmoid:1
feature_names=x c
feature_infos=[-1:1] 1:2:33
tree_sizes=401 298

Tree=0
num_leaves=3
num_cat=0
split_feature=0 0
split_gain=10 5
threshold=0.5 -0.25
decision_type=2 10
left_child=1 -1
right_child=-2 -3
leaf_value=0.10000000000000001 0.20000000000000001 0.29999999999999999
leaf_weight=1 1 1
leaf_count=1 1 1
internal_value=0 0
internal_weight=0 0
internal_count=3 2
is_linear=0
shrinkage=1


Tree=1
num_leaves=2
num_cat=1
split_feature=1
split_gain=3
threshold=0
decision_type=9
left_child=-1
right_child=-2
leaf_value=0.125 -0.125
leaf_weight=1 1
leaf_count=1 1
internal_value=0
internal_weight=0
internal_count=2
cat_boundaries=0 2
cat_threshold=2 2
is_linear=0
shrinkage=1


end of trees

feature_importances:
x=2
c=1

parameters:
[boosting: gbdt]
[objective: binary]
end of parameters

pandas_categorical:null
`

func nan32() float32 { return float32(math.NaN()) }

func up(v float32) float32   { return math.Nextafter32(v, float32(math.Inf(1))) }
func down(v float32) float32 { return math.Nextafter32(v, float32(math.Inf(-1))) }

// predict scores one row through m: margins and transformed outputs, by
// Predict (float32) and by Predict64 on the widened row.
func predict(m *forest.Ensemble, x []float32) (raw, raw64, out []float32) {
	f := m.Forest
	raw = make([]float32, f.NumTargets())
	raw64 = make([]float32, f.NumTargets())
	f.Predict(x, 1, raw)
	x64 := make([]float64, len(x))
	for i, v := range x {
		x64[i] = float64(v)
	}
	f.Predict64(x64, 1, raw64)
	out = append([]float32(nil), raw...)
	m.Transform.Apply(out, m.Scale)
	return raw, raw64, out
}

func TestHandComputed(t *testing.T) {
	m, err := Read([]byte(baseModel))
	if err != nil {
		t.Fatal(err)
	}
	if m.Framework != "lightgbm v4" || m.Objective != "binary" || m.Classes != 2 || m.Transform != forest.Sigmoid || m.Scale != 1 {
		t.Errorf("model = %q %q classes %d %v scale %v", m.Framework, m.Objective, m.Classes, m.Transform, m.Scale)
	}
	if got := strings.Join(m.FeatureNames, ","); got != "x,c" || m.Forest.NumFeatures() != 2 || m.Forest.NumTrees() != 2 {
		t.Errorf("features %q (%d), trees %d", got, m.Forest.NumFeatures(), m.Forest.NumTrees())
	}
	f := func(x, c float32, margin, prob float64) {
		t.Helper()
		raw, raw64, out := predict(m, []float32{x, c})
		if raw[0] != float32(margin) || raw64[0] != float32(margin) || !approx.Equal(float64(out[0]), prob, 1e-7) {
			t.Errorf("x=%v c=%v: margin %v (%v by Predict64), probability %v; want %v, %v", x, c, raw[0], raw64[0], out[0], margin, prob)
		}
	}
	f(0.7, 1, 0.325, 0.5805423048206596)                         // right leaf 0.2; category 1: 0.125
	f(0, 33, 0.425, 0.6046790847140093)                          // 0 <= 0.5, 0 > -0.25: 0.3; category 33 (second word)
	f(0.5, 33.9, 0.425, 0.6046790847140093)                      // threshold itself goes left; 33.9 truncates to 33
	f(nan32(), 2, -0.024999999999999994, 0.49375032550048964)    // None: NaN reads 0, goes left; NaN type: default left, 0.1
	f(-0.5, nan32(), -0.024999999999999994, 0.49375032550048964) // categorical NaN goes right
}

// numPool are float32 inputs around every threshold of thresholds, and
// the special values.
func numPool(thresholds []float64) []float32 {
	kz := float32(zeroThreshold)
	pool := []float32{nan32(), 0, float32(math.Copysign(0, -1)), 1e-36, -1e-36, kz, -kz, up(kz), down(-kz), 1e-30, -1e-30,
		float32(math.Inf(1)), float32(math.Inf(-1)), math.MaxFloat32, -math.MaxFloat32, 7.25, -2}
	for _, t := range thresholds {
		if math.IsInf(t, 0) {
			continue
		}
		v := float32(t)
		pool = append(pool, v, up(v), down(v), up(up(v)), down(down(v)))
	}
	return pool
}

// catPool are inputs of a categorical feature. Values in (-1, 0) are left
// out: see TestKnownDivergences.
var catPool = []float32{0, 1, 2, 3, 4, 5, 31, 32, 33, 34, 63, 64, 65, 69, 95, 96, 100, 3.7, 32.5, 69.9, 0.999,
	nan32(), -1, -1.5, -7, float32(math.Copysign(0, -1)), 1e10, 2147483648, 4e9, 1e-36, float32(math.Inf(1)), float32(math.Inf(-1))}

var thresholdPool = []float64{0.5, 0.1, -0.3, 1.0 / 3, 2.5, -1.75, 0, math.Copysign(0, -1), zeroThreshold, -zeroThreshold,
	1e-36, -1e-36, 5e-36, 1e-300, -1e-300, math.MaxFloat32, 1e39, -1e39, math.Inf(1), math.Inf(-1), 7.25,
	float64(float32(0.1)), float64(up(float32(0.1))), math.Nextafter(float64(float32(0.1)), 1)}

// compare reads m's text and checks predictions for rows against the
// reference: margins bit-exact in float32 (or within an ulp when
// averaged), outputs within float32 accuracy.
func compare(t *testing.T, m *tModel, rows [][]float32) {
	t.Helper()
	model, err := Read([]byte(m.text()))
	if err != nil {
		t.Fatal(err)
	}
	f := model.Forest
	nf, nt := f.NumFeatures(), f.NumTargets()
	if nf != m.features || nt != m.perIter || f.NumTrees() != len(m.trees) {
		t.Fatalf("forest has %d features, %d targets, %d trees; want %d, %d, %d", nf, nt, f.NumTrees(), m.features, m.perIter, len(m.trees))
	}
	// All rows at once (blocks of four walks), and each row alone.
	x := make([]float32, 0, len(rows)*nf)
	for _, r := range rows {
		x = append(x, r...)
	}
	all := make([]float32, len(rows)*nt)
	f.Predict(x, len(rows), all)
	for i, r := range rows {
		raw, raw64, out := predict(model, r)
		x64 := make([]float64, nf)
		for j, v := range r {
			x64[j] = float64(v)
		}
		wantRaw, wantOut := refPredict(m, x64)
		for k := range wantRaw {
			w := float32(wantRaw[k])
			ok := raw[k] == w && raw64[k] == w && all[i*nt+k] == w
			if m.average {
				ok = ulps(raw[k], w) <= 1 && ulps(raw64[k], w) <= 1 && ulps(all[i*nt+k], w) <= 1
			}
			if !ok {
				t.Fatalf("row %v target %d: margin %v (Predict64 %v, batch %v); want %v", r, k, raw[k], raw64[k], all[i*nt+k], wantRaw[k])
			}
			tol := 1e-6 * (1 + math.Abs(wantRaw[k])*model.Scale)
			if !approx.Equal(float64(out[k]), wantOut[k], tol) {
				t.Fatalf("row %v target %d: output %v; want %v (margin %v)", r, k, out[k], wantOut[k], wantRaw[k])
			}
		}
	}
}

func ulps(a, b float32) int {
	if a == b {
		return 0
	}
	d := int64(math.Float32bits(a)) - int64(math.Float32bits(b))
	if d < 0 {
		d = -d
	}
	return int(min(d, 1<<30))
}

func randomRows(r *rand.Rand, n int, m *tModel, pool []float32) [][]float32 {
	rows := make([][]float32, n)
	for i := range rows {
		rows[i] = make([]float32, m.features)
		for j := range rows[i] {
			if j < len(m.catFeature) && m.catFeature[j] {
				rows[i][j] = catPool[r.IntN(len(catPool))]
			} else {
				rows[i][j] = pool[r.IntN(len(pool))]
			}
		}
	}
	return rows
}

// randomCases are the generated models the reader is tested on, and the
// fuzzer's seeds.
func randomCases() []struct {
	name string
	m    *tModel
} {
	cat := []bool{false, true, false, true, false}
	cfg := func(leaves int, missing []int, cats []bool) *genConfig {
		return &genConfig{leaves: leaves, thresholds: thresholdPool, missing: missing, catFeature: cats, scale: 0.5}
	}
	all := []int{missingNone, missingZero, missingNaN}
	r := rand.New(rand.NewPCG(7, 11))
	var cases []struct {
		name string
		m    *tModel
	}
	add := func(name string, c *genConfig, numClass, perIter, iters int, obj string, avg bool) {
		cases = append(cases, struct {
			name string
			m    *tModel
		}{name, genModel(r, c, 5, numClass, perIter, iters, obj, avg)})
	}
	add("numerical missing None", cfg(16, []int{missingNone}, nil), 1, 1, 12, "regression", false)
	add("numerical missing Zero", cfg(16, []int{missingZero}, nil), 1, 1, 12, "regression", false)
	add("numerical missing NaN", cfg(16, []int{missingNaN}, nil), 1, 1, 12, "regression", false)
	add("binary sigmoid:2 categorical", cfg(31, all, cat), 1, 1, 15, "binary sigmoid:2", false)
	add("single-leaf trees", cfg(1, all, nil), 1, 1, 5, "regression_l1", false)
	add("multiclass", cfg(12, all, cat), 3, 3, 8, "multiclass num_class:3", false)
	add("multiclassova", cfg(12, all, cat), 3, 3, 8, "multiclassova num_class:3 sigmoid:1.5", false)
	add("average_output", cfg(20, all, cat), 1, 1, 9, "regression", true)
	add("average_output multiclass", cfg(20, all, cat), 3, 3, 7, "multiclass num_class:3", true)
	add("average_output binary", cfg(20, all, cat), 1, 1, 10, "binary sigmoid:1", true)
	add("poisson", cfg(10, all, cat), 1, 1, 10, "poisson", false)
	add("gamma", cfg(10, all, nil), 1, 1, 6, "gamma", false)
	add("tweedie", cfg(10, all, nil), 1, 1, 6, "tweedie", false)
	add("cross_entropy", cfg(10, all, cat), 1, 1, 6, "cross_entropy", false)
	add("lambdarank", cfg(10, all, cat), 1, 1, 6, "lambdarank", false)
	add("rank_xendcg", cfg(10, all, nil), 1, 1, 6, "rank_xendcg", false)
	add("huber fair quantile", cfg(10, all, nil), 1, 1, 6, "quantile", false)
	add("custom objective, two outputs", cfg(10, all, cat), 2, 2, 6, "", false)
	add("deep trees", cfg(300, all, cat), 1, 1, 4, "regression", false)
	return cases
}

func TestReadMatchesReference(t *testing.T) {
	pool := numPool(thresholdPool)
	for i, tc := range randomCases() {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(i), 99))
			compare(t, tc.m, randomRows(r, 300, tc.m, pool))
		})
	}
}

// oneSplit is a regression model of one tree splitting feature 0 once:
// leaf value 1 on the left, 2 on the right.
func oneSplit(thr float64, dt int, words ...uint32) *tModel {
	tr := tTree{numLeaves: 2, splitFeature: []int{0}, threshold: []float64{thr}, decisionType: []int{dt},
		left: []int{-1}, right: []int{-2}, leafValue: []float64{1, 2}, catBoundaries: []int{0}, shrinkage: 1}
	if dt&categoricalBit != 0 {
		tr.catThreshold = words
		tr.catBoundaries = []int{0, len(words)}
	}
	return &tModel{numClass: 1, perIter: 1, features: 1, objective: "regression", trees: []tTree{tr}}
}

func TestNumericalSplits(t *testing.T) {
	kz := float32(zeroThreshold)
	f := func(thr float64, dt int, x float32, left bool) {
		t.Helper()
		m := oneSplit(thr, dt)
		want := 2.0
		if left {
			want = 1
		}
		if ref, _ := refPredict(m, []float64{float64(x)}); ref[0] != want {
			t.Fatalf("reference disagrees: threshold %v decision_type %d x=%v: %v; want %v", thr, dt, x, ref[0], want)
		}
		model, err := Read([]byte(m.text()))
		if err != nil {
			t.Fatal(err)
		}
		raw, raw64, _ := predict(model, []float32{x})
		if float64(raw[0]) != want || float64(raw64[0]) != want {
			t.Errorf("threshold %v decision_type %d x=%v: leaf %v (Predict64 %v); want %v", thr, dt, x, raw[0], raw64[0], want)
		}
	}
	const none, noneDL, zero, zeroDL, nan, nanDL = 0, 2, 4, 6, 8, 10
	// Missing type None: NaN reads 0.0; default_left plays no part.
	f(0.5, none, 0.5, true) // the threshold itself goes left
	f(0.5, none, up(0.5), false)
	f(0.5, none, nan32(), true) // 0 <= 0.5
	f(-0.5, none, nan32(), false)
	f(-0.5, noneDL, nan32(), false)
	f(-0.5, none, -0.5, true)
	// Thresholds between float32 values: float32(0.1) > 0.1.
	f(0.1, none, float32(0.1), false)
	f(0.1, none, down(float32(0.1)), true)
	f(-0.3, none, float32(-0.3), true) // float32(-0.3) < -0.3
	f(-0.3, none, up(float32(-0.3)), false)
	f(1.0/3, none, float32(1.0/3), false)
	f(1.0/3, none, down(float32(1.0/3)), true)
	f(1e39, none, math.MaxFloat32, true)
	f(1e39, none, float32(math.Inf(1)), false)
	f(math.Inf(1), none, float32(math.Inf(1)), true)
	f(math.Inf(1), none, nan32(), true)
	f(math.Inf(-1), none, float32(math.Inf(-1)), true)
	f(math.Inf(-1), none, -math.MaxFloat32, false)
	f(math.Inf(-1), none, nan32(), false)
	// Zero: NaN and |x| <= kZeroThreshold take the default direction.
	f(0.5, zero, 0, false)
	f(0.5, zero, 1e-36, false)
	f(0.5, zero, -1e-36, false)
	f(0.5, zero, kz, false)
	f(0.5, zero, up(kz), true)
	f(0.5, zero, nan32(), false)
	f(0.5, zero, 0.25, true)
	f(0.5, zero, 0.5, true)
	f(0.5, zero, 0.75, false)
	f(-0.5, zeroDL, 0, true)
	f(-0.5, zeroDL, nan32(), true)
	f(-0.5, zeroDL, -1e-36, true)
	f(-0.5, zeroDL, -0.75, true)
	f(-0.5, zeroDL, 0.25, false)
	f(0.1, zeroDL, float32(0.1), false)
	f(0.1, zeroDL, down(float32(0.1)), true)
	f(math.Inf(1), zeroDL, float32(math.Inf(1)), true)
	f(math.Inf(1), zeroDL, nan32(), true)
	f(math.Inf(1), zero, 5, true)
	f(math.Inf(1), zero, nan32(), false)
	f(math.Inf(1), zero, 1e-36, false)
	// NaN: only NaN takes the default direction; zero compares.
	f(0.5, nan, nan32(), false)
	f(0.5, nan, 0, true)
	f(0.5, nan, 1e-36, true)
	f(-0.5, nan, 0, false)
	f(-0.5, nanDL, nan32(), true)
	f(-0.5, nanDL, 0, false)
	// Values with |x| <= kZeroThreshold reach the trees as 0.0.
	f(0, none, 1e-36, true)
	f(0, none, -1e-36, true)
	f(0, none, kz, true)
	f(0, none, -kz, true)
	f(0, none, up(kz), false)
	f(-zeroThreshold, none, 0, false)
	f(-zeroThreshold, none, -1e-36, false)
	f(-zeroThreshold, none, -kz, false) // read as 0 > -kZeroThreshold
	f(-zeroThreshold, none, down(-kz), true)
	f(zeroThreshold, none, kz, true)
	f(zeroThreshold, none, up(kz), false)
	f(1e-36, nan, 5e-36, true) // 0 <= 1e-36
	f(1e-36, nan, -1e-36, true)
	f(1e-36, nan, up(kz), false)
	f(-1e-36, nan, 1e-36, false) // 0 > -1e-36
	f(-1e-36, nan, -1e-36, false)
	f(-1e-36, nan, -2e-35, true)
	f(-1e-36, nanDL, nan32(), true)
}

func TestCategoricalSplits(t *testing.T) {
	// Categories {0, 1, 3} in word 0, none in word 1, 69 in word 2.
	words := []uint32{0b1011, 0, 1 << 5}
	f := func(dt int, x float32, left bool) {
		t.Helper()
		m := oneSplit(0, dt, words...)
		want := 2.0
		if left {
			want = 1
		}
		if ref, _ := refPredict(m, []float64{float64(x)}); ref[0] != want {
			t.Fatalf("reference disagrees: decision_type %d x=%v: %v; want %v", dt, x, ref[0], want)
		}
		model, err := Read([]byte(m.text()))
		if err != nil {
			t.Fatal(err)
		}
		if raw, raw64, _ := predict(model, []float32{x}); float64(raw[0]) != want || float64(raw64[0]) != want {
			t.Errorf("decision_type %d x=%v: leaf %v (Predict64 %v); want %v", dt, x, raw[0], raw64[0], want)
		}
	}
	for _, dt := range []int{1, 3, 9} { // missing None, None with default_left, NaN
		for x, left := range map[float32]bool{0: true, 1: true, 2: false, 3: true, 3.99: true, 4: false, 31: false, 32: false,
			64: false, 69: true, 69.5: true, 70: false, 95: false, 96: false, 1000: false, -1: false, -1.5: false, -1e6: false,
			1e-36: true, 1e10: false, 2147483648: false, 4294967297: false, float32(math.Inf(1)): false, float32(math.Inf(-1)): false} {
			f(dt, x, left)
		}
		f(dt, nan32(), false) // NaN goes right whatever the missing type
		f(dt, float32(math.Copysign(0, -1)), true)
	}
}

func TestObjectives(t *testing.T) {
	f := func(objective string, numClass, perIter int, want forest.Transform, scale float64, classes int) {
		t.Helper()
		m := genModel(rand.New(rand.NewPCG(1, 1)), &genConfig{leaves: 4, thresholds: []float64{0.5}, missing: []int{0}, scale: 1},
			2, numClass, perIter, 1, objective, false)
		model, err := Read([]byte(m.text()))
		if err != nil {
			t.Fatalf("objective %q: %v", objective, err)
		}
		name, _, _ := strings.Cut(objective, " ")
		if model.Transform != want || model.Scale != scale || model.Classes != classes || model.Objective != name {
			t.Errorf("objective %q: %v scale %v classes %d name %q; want %v, %v, %d", objective, model.Transform, model.Scale, model.Classes, model.Objective, want, scale, classes)
		}
	}
	f("binary sigmoid:1", 1, 1, forest.Sigmoid, 1, 2)
	f("binary sigmoid:2", 1, 1, forest.Sigmoid, 2, 2)
	f("binary sigmoid:0.5 extra", 1, 1, forest.Sigmoid, 0.5, 2)
	f("multiclass num_class:3", 3, 3, forest.Softmax, 1, 3)
	f("multiclassova num_class:4 sigmoid:1.5", 4, 4, forest.Sigmoid, 1.5, 4)
	f("cross_entropy", 1, 1, forest.Sigmoid, 1, 0)
	f("xentropy", 1, 1, forest.Sigmoid, 1, 0)
	for _, o := range []string{"regression", "regression_l1", "huber", "fair", "quantile", "mape", "lambdarank", "rank_xendcg", "custom", "none"} {
		f(o, 1, 1, forest.Identity, 1, 0)
	}
	for _, o := range []string{"poisson", "gamma", "tweedie"} {
		f(o, 1, 1, forest.Exp, 1, 0)
	}
	f("", 1, 1, forest.Identity, 1, 0) // no objective line: custom objective
	f("", 3, 3, forest.Identity, 1, 0)
}

// TestCRLF reads a copy whose lines end in "\r\n" as the original.
func TestCRLF(t *testing.T) {
	m, err := Read([]byte(strings.ReplaceAll(baseModel, "\n", "\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	if raw, _, _ := predict(m, []float32{0, 33}); raw[0] != 0.425 {
		t.Errorf("margin %v; want 0.425", raw[0])
	}
}

// TestZeroThreshold pins LightGBM's kZeroThreshold, the float 1e-35f.
func TestZeroThreshold(t *testing.T) {
	if zeroThreshold != 1.0000000180025095e-35 {
		t.Errorf("zeroThreshold = %v; want 1.0000000180025095e-35", zeroThreshold)
	}
}

// TestFormerDivergences covers inputs on which forest once disagreed with
// LightGBM (fixed in forest): category truncation of values in (-1, 0),
// the exact kZeroThreshold in Predict64, zero-as-missing with an infinite
// threshold.
func TestFormerDivergences(t *testing.T) {
	f := func(name string, m *tModel, x []float64, predict64 bool, cause string) {
		t.Run(name, func(t *testing.T) {
			want, _ := refPredict(m, x)
			model, err := Read([]byte(m.text()))
			if err != nil {
				t.Fatal(err)
			}
			got := make([]float32, 1)
			if predict64 {
				model.Forest.Predict64(x, 1, got)
			} else {
				x32 := make([]float32, len(x))
				for i, v := range x {
					x32[i] = float32(v)
				}
				model.Forest.Predict(x32, 1, got)
			}
			if float64(got[0]) != want[0] {
				t.Errorf("leaf %v; LightGBM: %v. (%s)", got[0], want[0], cause)
			}
		})
	}
	f("categorical value in (-1, 0)", oneSplit(0, 1, 1), []float64{-0.5}, false,
		"forest's InSet refuses negative values before truncating; LightGBM truncates -0.5 to category 0")
	f("categorical -1e-36 reads 0", oneSplit(0, 1, 1), []float64{-1e-36}, false,
		"as above: LightGBM drops the tiny value, category 0")
	f("Predict64 of float32(1e-35)", oneSplit(-1, 6), []float64{zeroThreshold}, true,
		"forest's Predict64 tests |x| <= 1e-35, LightGBM's kZeroThreshold is float32(1e-35) = 1.0000000180025095e-35")
	f("zero-as-missing, threshold +Inf, default right, x=+Inf", oneSplit(math.Inf(1), 4), []float64{math.Inf(1)}, false,
		"forest.Builder refuses ZeroMissing with threshold +Inf, so the reader uses MaxFloat64, which sends +Inf right")
}
