package cpu

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

// benchClassic runs a shipped classic model through Infer on one worker at
// batch sizes 1, 8, 64 and 256, its rows cycling through the model's
// golden inputs (which, for cancer-xgb, include missing values): ns/op is
// one call, ns/row per input row.
func benchClassic(b *testing.B, model string) {
	dir := filepath.Join("../../models", model)
	raw, err := os.ReadFile(filepath.Join(dir, "golden.json"))
	if err != nil {
		b.Fatal(err)
	}
	var gf goldenFile
	if err := json.Unmarshal(raw, &gf); err != nil {
		b.Fatal(err)
	}
	mc, err := config.LoadModel(filepath.Join(dir, "config.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	var path string
	for _, f := range []string{"model.onnx", "model.json", "model.txt"} {
		if _, err := os.Stat(filepath.Join(dir, "1", f)); err == nil {
			path = filepath.Join(dir, "1", f)
		}
	}
	be, err := Loaders(Options{Concurrency: 1})[filepath.Base(path)](path, backends.LoadOptionsOf(&mc))
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	spec := be.Metadata().Inputs[0]
	g := gf.Inputs[spec.Name]
	rows, features := int(g.Shape[0]), int(g.Shape[1])
	for _, n := range []int{1, 8, 64, 256} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			x := tensor.New(spec.Name, tensor.FP32, []int64{int64(n), int64(features)})
			xs := x.Float32s()
			for i := range xs {
				xs[i] = float32(g.Data[i%(rows*features)])
			}
			in := []*tensor.Tensor{x}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := be.Infer(ctx, in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
		})
	}
}

// BenchmarkTrees runs cancer-xgb: XGBoost binary:logistic, 100 trees of
// depth ≤ 6 read from XGBoost's JSON (margin, probabilities, label).
func BenchmarkTrees(b *testing.B) { benchClassic(b, "cancer-xgb") }

// BenchmarkRandomForest runs wine-forest: 50 trees of depth ≤ 8 as an
// ONNX-ML TreeEnsembleClassifier with string labels and ZipMap.
func BenchmarkRandomForest(b *testing.B) { benchClassic(b, "wine-forest") }

// BenchmarkLinearPipeline runs wine-linear: ONNX-ML Scaler →
// LinearClassifier (LOGISTIC) → Normalizer (L1).
func BenchmarkLinearPipeline(b *testing.B) { benchClassic(b, "wine-linear") }
