package forest

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// fullTrees builds n complete trees of the given depth over features
// inputs, thresholds drawn from the normal distribution the rows use.
func fullTrees(b testing.TB, n, depth, features int, r *rand.Rand) *Forest {
	bd, err := NewBuilder(features, 1)
	if err != nil {
		b.Fatal(err)
	}
	for t := 0; t < n; t++ {
		var nodes []Node
		var grow func(d int) int
		grow = func(d int) int {
			i := len(nodes)
			nodes = append(nodes, Node{})
			if d == depth {
				nodes[i] = Node{Mode: Leaf, Weights: []Weight{{0, r.NormFloat64()}}}
				return i
			}
			nd := Node{Mode: LT, Feature: r.IntN(features), Threshold: r.NormFloat64(), MissingYes: r.IntN(2) == 0}
			nd.Yes = grow(d + 1)
			nd.No = grow(d + 1)
			nodes[i] = nd
			return i
		}
		grow(0)
		if err := bd.AddTree(nodes, 0); err != nil {
			b.Fatal(err)
		}
	}
	f, err := bd.Build(Options{Aggregate: Sum, Float32: true})
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// BenchmarkForest is the synthetic counterpart of BenchmarkTrees (which
// runs the shipped XGBoost model): 100 complete depth-6 trees on 30
// features, random rows; ns/row is per row.
func BenchmarkForest(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	f := fullTrees(b, 100, 6, 30, r)
	for _, rows := range []int{1, 8, 64, 256} {
		x := make([]float32, rows*30)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		out := make([]float32, rows)
		b.Run(fmt.Sprintf("batch=%d", rows), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				f.Predict(x, rows, out)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
		})
	}
}
