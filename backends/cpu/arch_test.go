package cpu

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/coalesce-ml/coalesce/tensor"
)

// archRef is testdata/arch/<name>/ref.json: the tensors of ref.bin, in
// order, each an input or output of one batch size.
type archRef struct {
	Model   string `json:"model"`
	Torch   string `json:"torch"`
	Tensors []struct {
		Batch int     `json:"batch"`
		Role  string  `json:"role"`
		Shape []int64 `json:"shape"`
	} `json:"tensors"`
}

// archTorchvision are the architectures too large to commit: exported by
// testdata/arch/export.py into a temporary directory when Python has
// torch and torchvision.
var archTorchvision = []string{"squeezenet1_1", "mobilenet_v2", "resnet18"}

// TestArchitectures runs real architectures exported by torch.onnx with
// random weights (testdata/arch/export.py) at batch 1 and 3 on one loaded
// backend and compares with torch's outputs within 1e-4 relative to
// max(1, |want|): the committed small ones (an MLP with LayerNorm and
// GELU, a 1-D CNN, LSTM and GRU classifiers, a TransformerEncoder), and
// the torchvision ones exported at test time. It also checks that the
// exporters' LayerNorm and GELU subgraphs were fused and that a call
// allocates its outputs only.
func TestArchitectures(t *testing.T) {
	dirs, err := filepath.Glob("testdata/arch/*/model.onnx")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no committed architectures: %v", err)
	}
	for _, m := range dirs {
		dir := filepath.Dir(m)
		t.Run(filepath.Base(dir), func(t *testing.T) { checkArch(t, dir) })
	}
	t.Run("torchvision", func(t *testing.T) {
		if testing.Short() || raceEnabled {
			t.Skip("exporting and running torchvision models takes minutes in -short and -race runs")
		}
		py := "/usr/bin/python3"
		if err := exec.Command(py, "-c", "import torch, torchvision").Run(); err != nil {
			t.Skipf("%s lacks torch or torchvision (apt-get install -y python3-torch python3-torchvision): %v", py, err)
		}
		out := t.TempDir()
		args := append([]string{"testdata/arch/export.py", out}, archTorchvision...)
		if b, err := exec.Command(py, args...).CombinedOutput(); err != nil {
			t.Fatalf("export.py: %v\n%s", err, b)
		}
		for _, name := range archTorchvision {
			t.Run(name, func(t *testing.T) { checkArch(t, filepath.Join(out, name)) })
		}
	})
}

func checkArch(t *testing.T, dir string) {
	t.Helper()
	var ref archRef
	b, err := os.ReadFile(filepath.Join(dir, "ref.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	blob, err := os.ReadFile(filepath.Join(dir, "ref.bin"))
	if err != nil {
		t.Fatal(err)
	}
	be, err := Load(filepath.Join(dir, "model.onnx"), Options{Concurrency: 1})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	defer be.Close()
	for _, n := range be.g.nodes {
		switch n.op {
		case "Pow", "Erf":
			t.Errorf("node %s left unfused (the LayerNorm and GELU subgraphs should be one node each)", n)
		}
	}
	off := 0
	var x *tensor.Tensor
	for _, r := range ref.Tensors {
		n := prod(r.Shape) * 4
		tt := &tensor.Tensor{Name: r.Role, DType: tensor.FP32, Shape: r.Shape, Data: tensor.Alloc(n)}
		copy(tt.Data, blob[off:off+n])
		off += n
		if r.Role == "input" {
			x = tt
			continue
		}
		outs, err := be.Infer(context.Background(), []*tensor.Tensor{x})
		if err != nil {
			t.Fatalf("batch %d: Infer: %v", r.Batch, err)
		}
		got := outs[0]
		if !sameShape(got.Shape, tt.Shape) {
			t.Fatalf("batch %d: output shape %v, want %v", r.Batch, got.Shape, tt.Shape)
		}
		worst := 0.0
		for i := range tt.Len() {
			g, w := got.Float64At(i), tt.Float64At(i)
			d := math.Abs(g-w) / max(1, math.Abs(w))
			if !(d <= 1e-4) {
				t.Fatalf("batch %d: output[%d] = %v, want %v (torch %s)", r.Batch, i, g, w, ref.Torch)
			}
			worst = max(worst, d)
		}
		t.Logf("batch %d: max relative difference %.2g", r.Batch, worst)
	}
	if off != len(blob) {
		t.Fatalf("ref.bin has %d bytes, ref.json describes %d", len(blob), off)
	}
	// The steady state allocates the outputs only (see doc.go). Not
	// under the race detector, where sync.Pool (sgemm.Scratch, behind
	// products with B computed at run time) drops items at random.
	if raceEnabled {
		return
	}
	in := []*tensor.Tensor{x}
	allocs := testing.AllocsPerRun(3, func() {
		if _, err := be.Infer(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 2 {
		t.Errorf("Infer allocates %v times per call, want <= 2", allocs)
	}
}
