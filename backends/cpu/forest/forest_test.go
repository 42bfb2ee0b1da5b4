package forest

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/coalesce-ml/coalesce/internal/approx"
)

// refWalk evaluates a source tree directly from its Node description,
// comparing in float64: the semantics Build must preserve.
func refWalk(nodes []Node, i int, x []float64) int {
	for {
		n := &nodes[i]
		if n.Mode == Leaf {
			return i
		}
		v := x[n.Feature]
		missing := math.IsNaN(v) || (n.ZeroMissing && math.Abs(v) <= zeroThreshold)
		var yes bool
		switch {
		case missing:
			yes = n.MissingYes
		case n.Mode == LEQ:
			yes = v <= n.Threshold
		case n.Mode == LT:
			yes = v < n.Threshold
		case n.Mode == GTE:
			yes = v >= n.Threshold
		case n.Mode == GT:
			yes = v > n.Threshold
		case n.Mode == EQ:
			yes = v == n.Threshold
		case n.Mode == NEQ:
			yes = v != n.Threshold
		case n.Mode == InSet:
			yes = false
			if v >= 0 || (n.TruncateNegative && v > -1) { // truncated toward zero
				for _, c := range n.Categories {
					if int(v) == c {
						yes = true
					}
				}
			}
		}
		if yes {
			i = n.Yes
		} else {
			i = n.No
		}
	}
}

func refPredict(trees [][]Node, o Options, targets int, x []float64) []float64 {
	acc := make([]float64, targets)
	has := make([]bool, targets)
	for _, t := range trees {
		l := &t[refWalk(t, 0, x)]
		for _, w := range l.Weights {
			switch {
			case !has[w.Target]:
				acc[w.Target] = w.Value
			case o.Aggregate == Min:
				acc[w.Target] = math.Min(acc[w.Target], w.Value)
			case o.Aggregate == Max:
				acc[w.Target] = math.Max(acc[w.Target], w.Value)
			default:
				acc[w.Target] += w.Value
			}
			has[w.Target] = true
		}
	}
	for k := range acc {
		if o.Aggregate == Average {
			acc[k] /= float64(len(trees))
		}
		if len(o.Base) > 0 {
			acc[k] += o.Base[k]
		}
	}
	return acc
}

// randomTree builds a random tree whose thresholds sit on, between and
// next to the float32 values the rows use, so that the exact rewriting of
// every mode is exercised.
func randomTree(r *rand.Rand, features, targets, depth int, modes []Mode, values []float64) []Node {
	var nodes []Node
	var grow func(d int) int
	grow = func(d int) int {
		i := len(nodes)
		nodes = append(nodes, Node{})
		if d == depth || (d > 1 && r.IntN(4) == 0) {
			n := Node{Mode: Leaf}
			for k := 0; k < targets; k++ {
				if r.IntN(3) > 0 || targets == 1 {
					n.Weights = append(n.Weights, Weight{Target: k, Value: r.NormFloat64()})
				}
			}
			nodes[i] = n
			return i
		}
		n := Node{Mode: modes[r.IntN(len(modes))], Feature: r.IntN(features), MissingYes: r.IntN(2) == 0}
		v := values[r.IntN(len(values))]
		switch r.IntN(3) {
		case 0:
			n.Threshold = v
		case 1:
			n.Threshold = v + 1e-9*r.NormFloat64() // between float32 values
		case 2:
			n.Threshold = float64(math.Nextafter32(float32(v), float32(math.Inf(1))))
		}
		if n.Mode == InSet {
			n.Categories = []int{r.IntN(5), r.IntN(5)}
			n.TruncateNegative = r.IntN(2) == 0
		}
		if n.Mode == LEQ && r.IntN(4) == 0 {
			n.ZeroMissing = true
		}
		n.Yes = grow(d + 1)
		n.No = grow(d + 1)
		nodes[i] = n
		return i
	}
	grow(0)
	return nodes
}

func TestPredictMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	values := []float64{-2, -1.5, -0.1, 0, 0.1, 1, 1.25, 2, 3, 4, 1e-36}
	for _, tc := range []struct {
		name    string
		modes   []Mode
		targets int
		o       Options
	}{
		{"lt-sum", []Mode{LT}, 1, Options{Aggregate: Sum, Base: []float64{0.5}}},
		{"leq-gt-gte-avg", []Mode{LEQ, GT, GTE, LT}, 3, Options{Aggregate: Average, Base: []float64{1, 2, 3}}},
		{"all-modes-sum", []Mode{LEQ, LT, GTE, GT, EQ, NEQ, InSet}, 2, Options{Aggregate: Sum}},
		{"min", []Mode{LEQ, GT}, 3, Options{Aggregate: Min}},
		{"max", []Mode{LT, GTE, EQ}, 3, Options{Aggregate: Max, Base: []float64{-1, 0, 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const features = 5
			b, err := NewBuilder(features, tc.targets)
			if err != nil {
				t.Fatal(err)
			}
			var trees [][]Node
			for i := 0; i < 23; i++ {
				tr := randomTree(r, features, tc.targets, 1+r.IntN(7), tc.modes, values)
				trees = append(trees, tr)
				if err := b.AddTree(tr, 0); err != nil {
					t.Fatal(err)
				}
			}
			f, err := b.Build(tc.o)
			if err != nil {
				t.Fatal(err)
			}
			for _, rows := range []int{1, 3, 4, 7, 64, 130} {
				x := make([]float32, rows*features)
				x64 := make([]float64, len(x))
				for i := range x {
					switch r.IntN(8) {
					case 0:
						x[i] = float32(math.NaN())
					case 1:
						x[i] = float32(values[r.IntN(len(values))] + 1e-9)
					default:
						x[i] = float32(values[r.IntN(len(values))])
					}
					x64[i] = float64(x[i])
				}
				out := make([]float32, rows*tc.targets)
				out64 := make([]float32, rows*tc.targets)
				f.Predict(x, rows, out)
				f.Predict64(x64, rows, out64)
				for row := 0; row < rows; row++ {
					want := refPredict(trees, tc.o, tc.targets, x64[row*features:(row+1)*features])
					for k, w := range want {
						for _, got := range []float32{out[row*tc.targets+k], out64[row*tc.targets+k]} {
							if !approx.Equal(float64(got), w, 1e-5) {
								t.Fatalf("rows=%d row %d target %d: got %v (Predict) %v (Predict64), want %v; x=%v",
									rows, row, k, out[row*tc.targets+k], out64[row*tc.targets+k], w, x64[row*features:(row+1)*features])
							}
						}
					}
				}
			}
		})
	}
}

// TestFloat32SumOrder checks XGBoost's accumulation: float32, base first,
// trees in order, whatever the batch size.
func TestFloat32SumOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	b, _ := NewBuilder(2, 1)
	var leavesW [][2]float32
	for i := 0; i < 37; i++ {
		w0, w1 := float32(r.NormFloat64()*1e-3), float32(r.NormFloat64()*1e3)
		leavesW = append(leavesW, [2]float32{w0, w1})
		if err := b.AddTree([]Node{
			{Mode: LT, Feature: 1, Threshold: 0.5, Yes: 1, No: 2},
			{Mode: Leaf, Weights: []Weight{{0, float64(w0)}}},
			{Mode: Leaf, Weights: []Weight{{0, float64(w1)}}},
		}, 0); err != nil {
			t.Fatal(err)
		}
	}
	base := float32(-0.123456789)
	f, err := b.Build(Options{Aggregate: Sum, Base: []float64{float64(base)}, Float32: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, rows := range []int{1, 2, 5, 70} {
		x := make([]float32, 2*rows)
		for i := range rows {
			x[2*i+1] = float32(i % 2)
		}
		out := make([]float32, rows)
		f.Predict(x, rows, out)
		for i := range rows {
			want := base
			for _, w := range leavesW {
				want += w[i%2]
			}
			if math.Float32bits(out[i]) != math.Float32bits(want) {
				t.Fatalf("rows=%d row %d: %v, want bit-exact %v", rows, i, out[i], want)
			}
		}
	}
}

func TestBuilderRejects(t *testing.T) {
	leaf := Node{Mode: Leaf, Weights: []Weight{{0, 1}}}
	for _, tc := range []struct {
		name  string
		nodes []Node
		root  int
	}{
		{"root out of range", []Node{leaf}, 1},
		{"child out of range", []Node{{Mode: LT, Yes: 1, No: 5}, leaf}, 0},
		{"cycle", []Node{{Mode: LT, Yes: 0, No: 1}, leaf}, 0},
		{"shared child", []Node{{Mode: LT, Yes: 1, No: 1}, leaf}, 0},
		{"feature out of range", []Node{{Mode: LT, Feature: 9, Yes: 1, No: 2}, leaf, leaf}, 0},
		{"target out of range", []Node{{Mode: Leaf, Weights: []Weight{{3, 1}}}}, 0},
		{"bad mode", []Node{{Mode: 42, Yes: 1, No: 2}, leaf, leaf}, 0},
		{"huge category", []Node{{Mode: InSet, Categories: []int{1 << 30}, Yes: 1, No: 2}, leaf, leaf}, 0},
		{"zero-missing on LT", []Node{{Mode: LT, ZeroMissing: true, Yes: 1, No: 2}, leaf, leaf}, 0},
	} {
		b, _ := NewBuilder(2, 1)
		if err := b.AddTree(tc.nodes, tc.root); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	b, _ := NewBuilder(2, 1)
	if _, err := b.Build(Options{}); err == nil {
		t.Error("Build of no trees accepted")
	}
}

// TestInSetNegative checks both category rules: XGBoost (a negative value
// is in no set) and LightGBM (values in (-1, 0) are category 0), and that
// zero rows predict nothing without panicking.
func TestInSetNegative(t *testing.T) {
	for _, trunc := range []bool{false, true} {
		b, _ := NewBuilder(1, 1)
		if err := b.AddTree([]Node{{Mode: InSet, Categories: []int{0, 2}, TruncateNegative: trunc, Yes: 1, No: 2},
			{Mode: Leaf, Weights: []Weight{{0, 1}}}, {Mode: Leaf, Weights: []Weight{{0, 2}}}}, 0); err != nil {
			t.Fatal(err)
		}
		f, err := b.Build(Options{Aggregate: Sum, Float32: true})
		if err != nil {
			t.Fatal(err)
		}
		x := []float32{-0.5, float32(math.Copysign(0, -1)), 0.5, 2.9, 1, -1, float32(math.NaN())}
		want := []float32{2, 1, 1, 1, 2, 2, 2}
		if trunc {
			want[0] = 1
		}
		out := make([]float32, len(x))
		f.Predict(x, len(x), out)
		x64 := make([]float64, len(x))
		for i, v := range x {
			x64[i] = float64(v)
		}
		out64 := make([]float32, len(x))
		f.Predict64(x64, len(x), out64)
		for i := range x {
			if out[i] != want[i] || out64[i] != want[i] {
				t.Errorf("truncate=%v x=%v: %v (Predict64 %v); want %v", trunc, x[i], out[i], out64[i], want[i])
			}
		}
		f.Predict(nil, 0, nil)
		f.Predict64(nil, 0, nil)
	}
}
