package cpu

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/internal/approx"
	"github.com/coalesce-ml/coalesce/tensor"
)

// TestNativeLightGBM serves the LightGBM example model (binary, 20 trees,
// a categorical feature, every missing-value type) through the engine, as
// a model.txt in a repository would be, and checks margin, probabilities
// and label against the expected file, in FP32 and FP64.
func TestNativeLightGBM(t *testing.T) {
	dir := "forest/lightgbm/testdata"
	rows, margins, probs := readExpected(t, filepath.Join(dir, "example_expected.tsv"))
	path := filepath.Join(t.TempDir(), "model.txt")
	src, err := os.ReadFile(filepath.Join(dir, "example.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dt := range []string{"FP32", "FP64"} {
		t.Run(dt, func(t *testing.T) {
			dtype, _ := tensor.ParseDataType(dt)
			opts := backends.LoadOptions{Inputs: []backends.TensorSpec{{Name: "x", DType: dtype, Shape: []int64{10}}},
				Outputs: []backends.TensorSpec{{Name: "margin"}, {Name: "probabilities"}, {Name: "label"}}}
			be, err := Loaders(Options{Concurrency: 1})["model.txt"](path, opts)
			if err != nil {
				t.Fatal(err)
			}
			md := be.Metadata()
			if md.Platform != "lightgbm_text" || md.Inputs[0].Name != "x" || !md.Inputs[0].Missing || len(md.Outputs) != 3 || md.Outputs[0].Name != "margin" {
				t.Fatalf("metadata = %+v", md)
			}
			n := len(rows)
			x := tensor.New("x", dtype, []int64{int64(n), 10})
			for i, row := range rows {
				for j, v := range row {
					x.SetFloat64(i*10+j, float64(v))
				}
			}
			outs, err := be.Infer(context.Background(), []*tensor.Tensor{x})
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				if got := outs[0].Float32s()[i]; !approx.Equal(float64(got), margins[i], 1e-5) {
					t.Errorf("row %d margin %v; want %v", i, got, margins[i])
				}
				if got := outs[1].Float32s()[2*i+1]; !approx.Equal(float64(got), probs[i], 1e-6) {
					t.Errorf("row %d p %v; want %v", i, got, probs[i])
				}
				if got, want := outs[2].Int64s()[i], int64(boolIndex(probs[i] > 0.5)); got != want {
					t.Errorf("row %d label %d; want %d", i, got, want)
				}
			}
		})
	}
}

// readExpected reads example_expected.tsv: 10 features, margin,
// probability per line.
func readExpected(t *testing.T, path string) (rows [][]float32, margins, probs []float64) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fs := strings.Split(line, "\t")
		if len(fs) != 12 {
			t.Fatalf("%s: %d fields", path, len(fs))
		}
		row := make([]float32, 10)
		for j := range row {
			v, err := strconv.ParseFloat(fs[j], 32)
			if err != nil {
				t.Fatal(err)
			}
			row[j] = float32(v)
		}
		m, _ := strconv.ParseFloat(fs[10], 64)
		p, _ := strconv.ParseFloat(fs[11], 64)
		rows, margins, probs = append(rows, row), append(margins, m), append(probs, p)
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no rows", path)
	}
	return rows, margins, probs
}

// TestNativeConfigErrors: a native model's configuration must fit it.
func TestNativeConfigErrors(t *testing.T) {
	path := "../../models/cancer-xgb/1/model.json"
	for _, tc := range []struct {
		name string
		opts backends.LoadOptions
		want string
	}{
		{"feature count", backends.LoadOptions{Inputs: []backends.TensorSpec{{Name: "x", Shape: []int64{29}}}}, "has 29 features in the configuration; the model has 30"},
		{"unknown output", backends.LoadOptions{Outputs: []backends.TensorSpec{{Name: "prediction"}}}, `output "prediction": want one of [label probabilities margin]`},
		{"output twice", backends.LoadOptions{Outputs: []backends.TensorSpec{{Name: "label"}, {Name: "label"}}}, "listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Loaders(Options{Concurrency: 1})["model.json"](path, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("load error = %v; want one containing %q", err, tc.want)
			}
		})
	}
	// ONNX models declare their own tensors.
	_, err := Loaders(Options{Concurrency: 1})["model.onnx"]("../../models/wine-linear/1/model.onnx",
		backends.LoadOptions{Inputs: []backends.TensorSpec{{Name: "x"}}})
	if err == nil || !strings.Contains(err.Error(), "declares its own") {
		t.Fatalf("ONNX with inputs config: %v", err)
	}
	// A malformed native file is an error naming the file.
	bad := filepath.Join(t.TempDir(), "model.json")
	if err := os.WriteFile(bad, []byte(`{"learner":`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Loaders(Options{Concurrency: 1})["model.json"](bad, backends.LoadOptions{}); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("truncated model.json: %v", err)
	}
}
