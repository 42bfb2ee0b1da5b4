package tensor_test

import (
	"fmt"

	"github.com/coalesce-ml/coalesce/tensor"
)

// Requests are concatenated along the batch dimension into one batch, and
// the batch's output is split back into one piece per request.
func ExampleConcat() {
	a := tensor.FromFloat32s("x", []int64{1, 2}, []float32{1, 2})
	b := tensor.FromFloat32s("x", []int64{2, 2}, []float32{3, 4, 5, 6})
	batch, _ := tensor.Concat("x", []*tensor.Tensor{a, b})
	fmt.Println(batch.Shape, batch.Float32s())
	parts, _ := tensor.Split(batch, []int{1, 2})
	fmt.Println(parts[0].Float32s(), parts[1].Float32s())
	// Output:
	// [3 2] [1 2 3 4 5 6]
	// [1 2] [3 4 5 6]
}
