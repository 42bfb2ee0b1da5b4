package xgboost_test

import (
	"fmt"
	"math"
	"os"

	"github.com/coalesce-ml/coalesce/backends/cpu/forest/xgboost"
)

func ExampleRead() {
	data, err := os.ReadFile("testdata/binary_logistic.model.json")
	if err != nil {
		panic(err)
	}
	m, err := xgboost.Read(data)
	if err != nil {
		panic(err)
	}
	fmt.Println(m.Framework, m.Objective, m.Transform, m.Forest.NumTrees(), "trees")
	fmt.Println(m.FeatureNames)

	// One row; NaN is a missing value. xgboost 1.7.4 predicts the margin
	// 3.8242269 and the probability 0.97863126.
	row := []float32{0.5, float32(math.NaN()), -1, 0, 0, 0}
	out := make([]float32, m.Forest.NumTargets())
	m.Forest.Predict(row, 1, out)
	fmt.Printf("margin %.5f\n", out[0])
	m.Transform.Apply(out, m.Scale)
	fmt.Printf("P(positive) %.5f\n", out[0])
	// Output:
	// xgboost 1.7.4 binary:logistic sigmoid 14 trees
	// [age income température f3 f4 f5]
	// margin 3.82423
	// P(positive) 0.97863
}
