package cpu

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx/onnxtest"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/tensor"
)

// BenchmarkMLP runs the repository's digits-mlp model (64-256-256-10
// with Div, Gemm+Relu, Softmax, ArgMax) through Infer on one worker at
// several batch sizes, with the auto-chosen kernels: ns/op is the cost
// of one call, ns/row per input row. When the model file is absent it
// runs a synthetic MLP of the same shape. Sub-benchmarks named after a
// kernel set (BenchmarkMLP/avx2/batch=64) force that set; split and
// nosplit force intra-operator splitting on (SplitRows 1) and off
// (SplitRows -1), to measure where it pays (the default splits from
// defaultSplitRows rows).
func BenchmarkMLP(b *testing.B) {
	model, err := os.ReadFile("../../models/digits-mlp/1/model.onnx")
	if err != nil {
		b.Logf("digits-mlp not found (%v): using a synthetic 64-256-256-10 MLP", err)
		model = syntheticDigits()
	}
	run := func(b *testing.B, kernels string, splitRows int, batches ...int64) {
		be, err := LoadBytes(model, Options{Concurrency: 1, Kernels: kernels, SplitRows: splitRows})
		if err != nil {
			b.Fatal(err)
		}
		defer be.Close()
		r := newRand()
		for _, n := range batches {
			b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
				x := randTensor(r, tensor.FP32, n, 64)
				in := []*tensor.Tensor{x}
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := be.Infer(ctx, in); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(int64(b.N)*n), "ns/row")
			})
		}
	}
	std := []int64{1, 8, 64, 256}
	run(b, "auto", 0, std...)
	for _, s := range []struct {
		name string
		rows int
	}{{"split", 1}, {"nosplit", -1}} {
		b.Run(s.name, func(b *testing.B) { run(b, "auto", s.rows, 16, 24, 32, 48, 64, 128, 256) })
	}
	for _, ks := range sgemm.Available() {
		b.Run(ks.Name(), func(b *testing.B) { run(b, ks.Name(), 0, std...) })
	}
}

// syntheticDigits builds an MLP shaped like digits-mlp.
func syntheticDigits() []byte {
	r := newRand()
	w1, b1 := randTensor(r, tensor.FP32, 256, 64), randTensor(r, tensor.FP32, 256)
	w2, b2 := randTensor(r, tensor.FP32, 256, 256), randTensor(r, tensor.FP32, 256)
	w3, b3 := randTensor(r, tensor.FP32, 10, 256), randTensor(r, tensor.FP32, 10)
	return onnxtest.NewModel(13).Input("input", onnx.TypeFloat, "batch", 64).
		Output("logits").Output("probabilities").Output("label").
		Init("w1", w1).Init("b1", b1).Init("w2", w2).Init("b2", b2).Init("w3", w3).Init("b3", b3).
		Init("sixteen", f32(sh(), 16)).
		Node("/Div", "Div", []string{"input", "sixteen"}, []string{"x"}).
		Node("/fc1/Gemm", "Gemm", []string{"x", "w1", "b1"}, []string{"h1"}, onnxtest.AttrInt("transB", 1)).
		Node("/relu1", "Relu", []string{"h1"}, []string{"a1"}).
		Node("/fc2/Gemm", "Gemm", []string{"a1", "w2", "b2"}, []string{"h2"}, onnxtest.AttrInt("transB", 1)).
		Node("/relu2", "Relu", []string{"h2"}, []string{"a2"}).
		Node("/fc3/Gemm", "Gemm", []string{"a2", "w3", "b3"}, []string{"logits"}, onnxtest.AttrInt("transB", 1)).
		Node("/Softmax", "Softmax", []string{"logits"}, []string{"probabilities"}, onnxtest.AttrInt("axis", 1)).
		Node("/ArgMax", "ArgMax", []string{"logits"}, []string{"label"}, onnxtest.AttrInt("axis", 1), onnxtest.AttrInt("keepdims", 0)).Bytes()
}

// BenchmarkLoad decodes, checks, folds, packs and compiles each shipped
// model from its bytes: MB/s is the rate at which model files become
// ready-to-run backends (the issue asks for at least 400 MB/s).
func BenchmarkLoad(b *testing.B) {
	for _, name := range []string{"digits-mlp", "digits-cnnbn", "iris-logreg"} {
		model, err := os.ReadFile("../../models/" + name + "/1/model.onnx")
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(model)))
			b.ReportAllocs()
			for b.Loop() {
				be, err := LoadBytes(model, Options{Concurrency: 1})
				if err != nil {
					b.Fatal(err)
				}
				be.Close()
			}
		})
	}
}
