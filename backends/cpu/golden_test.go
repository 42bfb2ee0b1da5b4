package cpu

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

// goldenTensor is one tensor of a models/*/golden.json file: numbers
// (null for a missing value, NaN, in inputs), or strings for BYTES.
type goldenTensor struct {
	Datatype string          `json:"datatype"`
	Shape    []int64         `json:"shape"`
	Data     []float64       `json:"-"`
	Strings  []string        `json:"-"`
	Raw      json.RawMessage `json:"data"`
}

// UnmarshalJSON decodes data as numbers (null as NaN) or, for BYTES,
// strings.
func (g *goldenTensor) UnmarshalJSON(b []byte) error {
	type plain goldenTensor
	if err := json.Unmarshal(b, (*plain)(g)); err != nil {
		return err
	}
	if g.Datatype == "BYTES" {
		return json.Unmarshal(g.Raw, &g.Strings)
	}
	var vs []*float64
	if err := json.Unmarshal(g.Raw, &vs); err != nil {
		return err
	}
	g.Data = make([]float64, len(vs))
	for i, v := range vs {
		g.Data[i] = math.NaN()
		if v != nil {
			g.Data[i] = *v
		}
	}
	return nil
}

// goldenFile is models/<name>/golden.json: the original framework's
// outputs on fixed inputs (see models/README.md).
type goldenFile struct {
	Framework string                  `json:"framework"`
	Model     string                  `json:"model"`
	Inputs    map[string]goldenTensor `json:"inputs"`
	Outputs   map[string]goldenTensor `json:"outputs"`
}

// TestGoldenModels runs every model of the repository's models/ directory
// (ONNX, XGBoost JSON, LightGBM text, loaded as the server does, with the
// model's config.yaml) on its golden inputs, with every kernel set this
// CPU supports, and compares with the framework's outputs: FP32 within
// 1e-5 relative to magnitude (max(1, |want|)), INT64 and BYTES exactly,
// and XGBoost's margins bit for bit.
func TestGoldenModels(t *testing.T) {
	dirs, err := filepath.Glob("../../models/*/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, g := range dirs {
		dir := filepath.Dir(g)
		var modelPath string
		for _, f := range []string{"model.onnx", "model.json", "model.txt"} {
			if _, err := os.Stat(filepath.Join(dir, "1", f)); err == nil {
				modelPath = filepath.Join(dir, "1", f)
			}
		}
		if modelPath == "" {
			continue
		}
		found++
		for _, ks := range sgemm.Available() {
			t.Run(filepath.Base(dir)+"/"+ks.Name(), func(t *testing.T) { runGolden(t, g, modelPath, ks.Name()) })
		}
	}
	if found == 0 {
		t.Fatalf("no models with golden.json and 1/model.onnx under ../../models: the golden models are missing")
	}
}

// runGolden checks the model at modelPath against golden file g with the
// named kernel set.
func runGolden(t *testing.T, g, modelPath, kernels string) {
	raw, err := os.ReadFile(g)
	if err != nil {
		t.Fatal(err)
	}
	var gf goldenFile
	if err := json.Unmarshal(raw, &gf); err != nil {
		t.Fatalf("%s: %v", g, err)
	}
	mc, err := config.LoadModel(filepath.Join(filepath.Dir(g), "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	mc.MaxBatchSize = 0
	b, err := Loaders(Options{Concurrency: 2, Kernels: kernels})[filepath.Base(modelPath)](modelPath, backends.LoadOptionsOf(&mc))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	be := b.(*Backend)
	md := be.Metadata()
	inputs := make([]*tensor.Tensor, len(md.Inputs))
	for i, spec := range md.Inputs {
		gt, ok := gf.Inputs[spec.Name]
		if !ok {
			t.Fatalf("golden.json has no input %q", spec.Name)
		}
		inputs[i] = goldenToTensor(t, spec.Name, gt)
	}
	outs, err := be.Infer(context.Background(), inputs)
	if err != nil {
		t.Fatalf("Infer: %v", err)
	}
	if len(gf.Outputs) != len(outs) {
		t.Errorf("model has %d outputs, golden.json %d", len(outs), len(gf.Outputs))
	}
	for _, out := range outs {
		want, ok := gf.Outputs[out.Name]
		if !ok {
			t.Errorf("golden.json has no output %q", out.Name)
			continue
		}
		compareGolden(t, out, want, strings.HasPrefix(gf.Framework, "xgboost") && out.Name == "margin")
	}
}

func goldenToTensor(t *testing.T, name string, g goldenTensor) *tensor.Tensor {
	t.Helper()
	dt, ok := tensor.ParseDataType(g.Datatype)
	if !ok {
		t.Fatalf("input %q: datatype %q", name, g.Datatype)
	}
	if dt == tensor.Bytes {
		if int64(len(g.Strings)) != tensor.NumElements(g.Shape) {
			t.Fatalf("input %q: shape %v but %d strings", name, g.Shape, len(g.Strings))
		}
		return tensor.FromStrings(name, g.Shape, g.Strings)
	}
	x := tensor.New(name, dt, g.Shape)
	if x.Len() != len(g.Data) {
		t.Fatalf("input %q: shape %v but %d values", name, g.Shape, len(g.Data))
	}
	for i, v := range g.Data {
		x.SetFloat64(i, v)
	}
	return x
}

func compareGolden(t *testing.T, got *tensor.Tensor, want goldenTensor, bitExact bool) {
	t.Helper()
	if got.DType.String() != want.Datatype || !sameShape(got.Shape, want.Shape) {
		t.Errorf("output %q is %s%v, want %s%v", got.Name, got.DType, got.Shape, want.Datatype, want.Shape)
		return
	}
	if got.DType == tensor.Bytes {
		if gs := got.Strings(); !slices.Equal(gs, want.Strings) {
			t.Errorf("output %q = %q, want %q", got.Name, gs, want.Strings)
		}
		return
	}
	if bitExact {
		for i, w := range want.Data {
			g := got.Float32s()[i]
			if math.Float32bits(g) != math.Float32bits(float32(w)) && !(g == 0 && w == 0) {
				t.Errorf("output %q[%d] = %v (%#x), want bit-exact %v (%#x)", got.Name, i, g, math.Float32bits(g), w, math.Float32bits(float32(w)))
				return
			}
		}
		t.Logf("output %q %s%v: bit-exact", got.Name, got.DType, got.Shape)
		return
	}
	worst, worstAbs, at := 0.0, 0.0, -1
	for i, w := range want.Data {
		g := got.Float64At(i)
		if got.DType == tensor.Int64 {
			if got.Int64At(i) != int64(w) {
				t.Errorf("output %q[%d] = %d, want %d", got.Name, i, got.Int64At(i), int64(w))
				return
			}
			continue
		}
		worstAbs = max(worstAbs, math.Abs(g-w))
		if d := math.Abs(g-w) / max(1, math.Abs(w)); d > worst || math.IsNaN(d) {
			worst, at = d, i
		}
	}
	if worst > 1e-5 || math.IsNaN(worst) {
		t.Errorf("output %q: max relative diff %.3g at %d (got %v, want %v)", got.Name, worst, at, got.Float64At(at), want.Data[at])
	}
	t.Logf("output %q %s%v: max relative diff %.3g, max absolute diff %.3g", got.Name, got.DType, got.Shape, worst, worstAbs)
}
