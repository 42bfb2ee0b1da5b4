package cpu

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/coalesce-ml/coalesce/tensor"
)

// BenchmarkDigitsMLP runs the repository's digits-mlp model (64-256-256-10
// with Div, Gemm, Relu, Softmax, ArgMax) at several batch sizes; ns/row is
// the cost per input row. When the model file is absent it runs a
// synthetic MLP of the same shape.
func BenchmarkDigitsMLP(b *testing.B) {
	model, err := os.ReadFile("../../models/digits-mlp/1/model.onnx")
	if err != nil {
		b.Logf("digits-mlp not found (%v): using a synthetic 64-256-256-10 MLP", err)
		model = syntheticDigits()
	}
	be, err := LoadBytes(model, Options{Concurrency: 1})
	if err != nil {
		b.Fatal(err)
	}
	r := newRand()
	for _, n := range []int64{1, 8, 64} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			x := randTensor(r, tensor.FP32, n, 64)
			in := []*tensor.Tensor{x}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := be.Infer(ctx, in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(int64(b.N)*n), "ns/row")
		})
	}
}

// syntheticDigits builds an MLP shaped like digits-mlp.
func syntheticDigits() []byte {
	r := newRand()
	w1, b1 := randTensor(r, tensor.FP32, 256, 64), randTensor(r, tensor.FP32, 256)
	w2, b2 := randTensor(r, tensor.FP32, 256, 256), randTensor(r, tensor.FP32, 256)
	w3, b3 := randTensor(r, tensor.FP32, 10, 256), randTensor(r, tensor.FP32, 10)
	return newModel(13).input("input", tFloat, "batch", 64).
		output("logits").output("probabilities").output("label").
		init("w1", w1).init("b1", b1).init("w2", w2).init("b2", b2).init("w3", w3).init("b3", b3).
		init("sixteen", f32(sh(), 16)).
		node("/Div", "Div", []string{"input", "sixteen"}, []string{"x"}).
		node("/fc1/Gemm", "Gemm", []string{"x", "w1", "b1"}, []string{"h1"}, aInt("transB", 1)).
		node("/relu1", "Relu", []string{"h1"}, []string{"a1"}).
		node("/fc2/Gemm", "Gemm", []string{"a1", "w2", "b2"}, []string{"h2"}, aInt("transB", 1)).
		node("/relu2", "Relu", []string{"h2"}, []string{"a2"}).
		node("/fc3/Gemm", "Gemm", []string{"a2", "w3", "b3"}, []string{"logits"}, aInt("transB", 1)).
		node("/Softmax", "Softmax", []string{"logits"}, []string{"probabilities"}, aInt("axis", 1)).
		node("/ArgMax", "ArgMax", []string{"logits"}, []string{"label"}, aInt("axis", 1), aInt("keepdims", 0)).bytes()
}

// BenchmarkSgemm compares the two loop orders on a digits-sized layer
// (batch×256 by 256×256): sgemmNN (i-k-j, used for B computed at run
// time) and sgemmNT (2×4 register-tiled dot products over B stored as
// n×k, what Gemm and MatMul use for packed constant weights).
func BenchmarkSgemm(b *testing.B) {
	r := newRand()
	const k, n = 256, 256
	for _, m := range []int{1, 8, 64} {
		a, w, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
		for i := range a {
			a[i] = float32(r.Float64())
		}
		for i := range w {
			w[i] = float32(r.Float64())
		}
		b.Run(fmt.Sprintf("NN/m=%d", m), func(b *testing.B) {
			for b.Loop() {
				sgemm(false, false, m, n, k, 1, a, k, w, n, 0, c, n)
			}
			b.ReportMetric(float64(2*m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		b.Run(fmt.Sprintf("NT/m=%d", m), func(b *testing.B) {
			for b.Loop() {
				sgemm(false, true, m, n, k, 1, a, k, w, k, 0, c, n)
			}
			b.ReportMetric(float64(2*m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
