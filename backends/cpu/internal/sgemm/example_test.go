package sgemm_test

import (
	"fmt"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
)

// Example multiplies a 2×3 matrix by a constant 3×2 matrix packed once,
// adding a bias and applying ReLU as the product is stored.
func Example() {
	ks, err := sgemm.Lookup("auto")
	if err != nil {
		panic(err)
	}
	a := []float32{
		1, 2, 3,
		4, 5, 6,
	}
	b := []float32{
		1, 0,
		0, 1,
		1, 1,
	}
	pb := ks.Pack(make([]float32, ks.PackedLen(3, 2)), false, 3, 2, b, 2, 1)
	pb.Bias = ks.PackBias([]float32{10, -100}, 2, 1)
	c := make([]float32, 2*2)
	ks.Gemm(2, a, 3, &pb, c, 2, sgemm.AddBias|sgemm.ReLU)
	fmt.Println(c)
	// Output: [14 0 20 0]
}
