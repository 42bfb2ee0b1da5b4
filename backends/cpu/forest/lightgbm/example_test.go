package lightgbm_test

import (
	"fmt"
	"math"
	"os"

	"github.com/coalesce-ml/coalesce/backends/cpu/forest/lightgbm"
)

func ExampleRead() {
	data, err := os.ReadFile("testdata/example.txt")
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := lightgbm.Read(data)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.Framework, m.Objective, m.Classes, m.Transform, m.Forest.NumTrees(), "trees", m.Forest.NumFeatures(), "features")

	// One row (the first of testdata/example_expected.tsv); NaN is a
	// missing value, Column_3 is categorical.
	nan := float32(math.NaN())
	row := []float32{nan, 6.151, 1.426, 1, 11.908, 3.231, 1.082, 2.873, 11.191, 3.634}
	out := make([]float32, m.Forest.NumTargets())
	m.Forest.Predict(row, 1, out) // the raw margin
	fmt.Printf("margin %.6f\n", out[0])
	m.Transform.Apply(out, m.Scale) // the probability of class 1
	fmt.Printf("probability %.6f\n", out[0])
	// Output:
	// lightgbm v4 binary 2 sigmoid 20 trees 10 features
	// margin -0.382171
	// probability 0.405603
}
