package cpu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/coalesce-ml/coalesce/tensor"
)

// BenchmarkArch runs each architecture of TestArchitectures through
// Infer on one worker at batch 1 and 8 (ns/op: one call): the committed
// ones from testdata/arch, and those in the directory ARCH_DIR names (where
// testdata/compare_arch.sh has testdata/arch/export.py write the
// torchvision models), when set. testdata/torch_arch_bench.py times the
// same networks in PyTorch.
func BenchmarkArch(b *testing.B) {
	models, _ := filepath.Glob("testdata/arch/*/model.onnx")
	if dir := os.Getenv("ARCH_DIR"); dir != "" {
		more, _ := filepath.Glob(filepath.Join(dir, "*", "model.onnx"))
		models = append(models, more...)
	}
	for _, m := range models {
		name := filepath.Base(filepath.Dir(m))
		b.Run(name, func(b *testing.B) {
			be, err := Load(m, Options{Concurrency: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer be.Close()
			shape := be.Metadata().Inputs[0].Shape
			for _, n := range []int64{1, 8} {
				b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
					s := append([]int64{n}, shape[1:]...)
					x := randTensor(newRand(), tensor.FP32, s...)
					in := []*tensor.Tensor{x}
					ctx := context.Background()
					// Compile the plan for this batch size and touch its
					// arena and scratch before timing (PyTorch warms up too).
					if _, err := be.Infer(ctx, in); err != nil {
						b.Fatal(err)
					}
					for b.Loop() {
						if _, err := be.Infer(ctx, in); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}
