package cpu

import (
	"context"
	"fmt"
	"testing"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx/onnxtest"
	"github.com/coalesce-ml/coalesce/tensor"
)

// BenchmarkWideMLP measures what batching can gain on weight-bound MLPs:
// the per-row cost (ns/row) of Infer at batch 1 and larger batches, for
// 1024→H→H→16 ReLU MLPs whose FP32 weights (H=1024: 8.4 MB, inside the
// L3 of the build machine; H=2048: 25 MB; H=4096: 84 MB, beyond it) a
// one-row call has to stream once. Sub-benchmarks "1core" run one
// worker with no helpers (SplitRows -1); "split" let a large batch use
// the idle cores, as a Backend with Concurrency 1 does by default.
func BenchmarkWideMLP(b *testing.B) {
	for _, h := range []int64{1024, 2048, 4096} {
		model := syntheticWideMLP(1024, h, 16)
		for _, mode := range []struct {
			name  string
			split int
		}{{"1core", -1}, {"split", 0}} {
			b.Run(fmt.Sprintf("h=%d/%s", h, mode.name), func(b *testing.B) {
				be, err := LoadBytes(model, Options{Concurrency: 1, SplitRows: mode.split})
				if err != nil {
					b.Fatal(err)
				}
				defer be.Close()
				for _, n := range []int64{1, 8, 32, 64, 256} {
					b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
						in := []*tensor.Tensor{randTensor(newRand(), tensor.FP32, n, 1024)}
						ctx := context.Background()
						if _, err := be.Infer(ctx, in); err != nil {
							b.Fatal(err)
						}
						for b.Loop() {
							if _, err := be.Infer(ctx, in); err != nil {
								b.Fatal(err)
							}
						}
						b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(int64(b.N)*n), "ns/row")
					})
				}
			})
		}
	}
}

// syntheticWideMLP builds an in→h→h→out ReLU MLP with the three outputs
// of the shipped MLPs (logits, probabilities, label).
func syntheticWideMLP(in, h, out int64) []byte {
	r := newRand()
	w1, b1 := randTensor(r, tensor.FP32, h, in), randTensor(r, tensor.FP32, h)
	w2, b2 := randTensor(r, tensor.FP32, h, h), randTensor(r, tensor.FP32, h)
	w3, b3 := randTensor(r, tensor.FP32, out, h), randTensor(r, tensor.FP32, out)
	return onnxtest.NewModel(13).Input("input", onnx.TypeFloat, "batch", in).
		Output("logits").Output("probabilities").Output("label").
		Init("w1", w1).Init("b1", b1).Init("w2", w2).Init("b2", b2).Init("w3", w3).Init("b3", b3).
		Node("/fc1/Gemm", "Gemm", []string{"input", "w1", "b1"}, []string{"h1"}, onnxtest.AttrInt("transB", 1)).
		Node("/relu1", "Relu", []string{"h1"}, []string{"a1"}).
		Node("/fc2/Gemm", "Gemm", []string{"a1", "w2", "b2"}, []string{"h2"}, onnxtest.AttrInt("transB", 1)).
		Node("/relu2", "Relu", []string{"h2"}, []string{"a2"}).
		Node("/fc3/Gemm", "Gemm", []string{"a2", "w3", "b3"}, []string{"logits"}, onnxtest.AttrInt("transB", 1)).
		Node("/Softmax", "Softmax", []string{"logits"}, []string{"probabilities"}, onnxtest.AttrInt("axis", 1)).
		Node("/ArgMax", "ArgMax", []string{"logits"}, []string{"label"}, onnxtest.AttrInt("axis", 1), onnxtest.AttrInt("keepdims", 0)).Bytes()
}
