package cpu_test

import (
	"context"
	"fmt"
	"log"

	"github.com/coalesce-ml/coalesce/backends/cpu"
	"github.com/coalesce-ml/coalesce/tensor"
)

// Example loads the iris model shipped in models/ and classifies two
// flowers in one batch.
func Example() {
	be, err := cpu.Load("../../models/iris-logreg/1/model.onnx", cpu.Options{MaxBatchSize: 64})
	if err != nil {
		log.Fatal(err)
	}
	defer be.Close()
	md := be.Metadata()
	for _, s := range md.Inputs {
		fmt.Println("input ", s.Name, s.DType, s.Shape)
	}
	for _, s := range md.Outputs {
		fmt.Println("output", s.Name, s.DType, s.Shape)
	}
	x := tensor.FromFloat32s("input", []int64{2, 4}, []float32{5.8, 2.8, 5.1, 2.4, 6.0, 2.2, 4.0, 1.0})
	outs, err := be.Infer(context.Background(), []*tensor.Tensor{x})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("label", outs[2].Int64s())
	// Output:
	// input  input FP32 [-1 4]
	// output logits FP32 [-1 3]
	// output probabilities FP32 [-1 3]
	// output label INT64 [-1]
	// label [2 1]
}
