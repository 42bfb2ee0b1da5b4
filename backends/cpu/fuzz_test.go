package cpu

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/coalesce-ml/coalesce/tensor"
)

// FuzzLoadBytes feeds arbitrary bytes to LoadBytes: it must return a
// model or an error, never panic (a recovered panic shows as "BUG"). Models
// that load and are small are also run once on zero inputs.
func FuzzLoadBytes(f *testing.F) {
	r := newRand()
	f.Add(mlpModel(randTensor(r, tensor.FP32, 4, 3), randTensor(r, tensor.FP32, 4),
		randTensor(r, tensor.FP32, 4, 2), randTensor(r, tensor.FP32, 2)))
	f.Add(torchViewModel(11, randTensor(r, tensor.FP32, 2, 6), randTensor(r, tensor.FP32, 2)))
	f.Add(torchViewModel(13, randTensor(r, tensor.FP32, 2, 6), randTensor(r, tensor.FP32, 2)))
	x := iotaT(2, 3)
	f.Add(oneNode(13, "Transpose", []arg{in("x", x)}, 1, aInts("perm", 1, 0)))
	f.Add(oneNode(13, "Concat", []arg{in("x", x), cst("c", x)}, 1, aInt("axis", 0)))
	f.Add(oneNode(13, "Gather", []arg{in("x", x), cst("i", i64(sh(2), 1, -1))}, 1, aInt("axis", 1)))
	f.Add(oneNode(11, "Clip", []arg{in("x", x)}, 1, aFloat("min", 0)))
	f.Add(oneNode(13, "Cast", []arg{in("x", x)}, 1, aInt("to", tInt64)))
	f.Add(oneNode(13, "Unsqueeze", []arg{in("x", x), cst("a", i64(sh(1), 0))}, 1))
	f.Add(oneNode(15, "BatchNormalization", []arg{in("x", x), cst("s", f32(sh(3), 1, 2, 3)), cst("b", f32(sh(3), 1, 2, 3)),
		cst("m", f32(sh(3), 1, 2, 3)), cst("v", f32(sh(3), 1, 2, 3))}, 1))
	if b, err := os.ReadFile("../../models/iris-logreg/1/model.onnx"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		be, err := LoadBytes(b, Options{Concurrency: 1})
		if err != nil {
			if strings.Contains(err.Error(), "BUG") {
				t.Fatal(err)
			}
			return
		}
		var inputs []*tensor.Tensor
		total := int64(0)
		for _, spec := range be.Metadata().Inputs {
			shape := clone(spec.Shape)
			for i, d := range shape {
				if d < 0 {
					shape[i] = 2
				}
			}
			n := tensor.NumElements(shape)
			if n < 0 || spec.DType.Size() == 0 {
				return
			}
			if total += n; total > 1<<16 {
				return
			}
			inputs = append(inputs, tensor.New(spec.Name, spec.DType, shape))
		}
		for _, p := range *be.plans.Load() {
			if p.arenaSize > 1<<24 {
				return
			}
		}
		if _, err := be.Infer(context.Background(), inputs); err != nil && strings.Contains(err.Error(), "BUG") {
			t.Fatal(err)
		}
	})
}
