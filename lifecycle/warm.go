package lifecycle

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

// defaultMaxBatch is the batcher's batch size when neither the
// configuration nor the model sets one.
const defaultMaxBatch = 64

// BatchSizes returns the batch sizes a version is warmed at: 1, the
// preferred batch size and the largest batch its batcher forms, in
// ascending order without repeats, so that the engine's per-batch-size
// plans exist before the version takes traffic.
func BatchSizes(eff config.Effective, meta *backends.Metadata) []int {
	maxB := eff.MaxBatchSize
	if maxB == 0 {
		maxB = meta.MaxBatchSize
	}
	if maxB == 0 {
		maxB = defaultMaxBatch
	}
	if meta.MaxBatchSize > 0 {
		maxB = min(maxB, meta.MaxBatchSize)
	}
	sizes := []int{1, maxB}
	if p := eff.PreferredBatchSize; p > 1 && p < maxB {
		sizes = append(sizes, p)
	}
	slices.Sort(sizes)
	return slices.Compact(sizes)
}

// Warm runs mv's backend once at each of sizes, on rows of golden (input
// name to rows, from the model's golden.json) where they fit its inputs
// and zeros elsewhere, and checks that every call returns the declared
// outputs with that many rows. Each call has timeout.
func Warm(mv *backends.ModelVersion, sizes []int, golden map[string]*tensor.Tensor, timeout time.Duration) error {
	for _, n := range sizes {
		inputs := make([]*tensor.Tensor, len(mv.Meta.Inputs))
		for i, spec := range mv.Meta.Inputs {
			inputs[i] = warmInput(spec, n, golden[spec.Name])
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		out, err := infer(ctx, mv.Backend, inputs)
		cancel()
		if err != nil {
			return fmt.Errorf("warm-up at batch size %d: %w", n, err)
		}
		if len(out) != len(mv.Meta.Outputs) {
			return fmt.Errorf("warm-up at batch size %d: %d outputs; the model declares %d", n, len(out), len(mv.Meta.Outputs))
		}
		for j, t := range out {
			if t == nil || t.BatchSize() != n {
				return fmt.Errorf("warm-up at batch size %d: output %s has the wrong number of rows", n, mv.Meta.Outputs[j].Name)
			}
			if err := t.Validate(); err != nil {
				return fmt.Errorf("warm-up at batch size %d: output %s: %w", n, mv.Meta.Outputs[j].Name, err)
			}
		}
	}
	return nil
}

// infer calls b, turning a panic into an error: a broken model must not
// take the process down while it is being tried.
func infer(ctx context.Context, b backends.Backend, in []*tensor.Tensor) (out []*tensor.Tensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return b.Infer(ctx, in)
}

// warmInput builds n rows for spec: golden's rows, cycled, when golden
// has spec's datatype and row shape, else zeros (empty strings for BYTES).
// A variable dimension other than the batch is taken as 1.
func warmInput(spec backends.TensorSpec, n int, golden *tensor.Tensor) *tensor.Tensor {
	shape := []int64{int64(n)}
	for _, d := range spec.Shape[min(1, len(spec.Shape)):] {
		shape = append(shape, max(d, 1))
	}
	if spec.DType == tensor.Bytes {
		return tensor.FromStrings(spec.Name, shape, make([]string, tensor.NumElements(shape)))
	}
	t := tensor.New(spec.Name, spec.DType, shape)
	if golden != nil && golden.DType == spec.DType && slices.Equal(golden.Shape[1:], shape[1:]) && golden.BatchSize() > 0 {
		row := len(golden.Data) / golden.BatchSize()
		for r := range n {
			src := (r % golden.BatchSize()) * row
			copy(t.Data[r*row:(r+1)*row], golden.Data[src:src+row])
		}
	}
	return t
}

// readGolden reads the numeric inputs of <dir>/golden.json ({"inputs":
// {name: {"datatype", "shape", "data"}}}, as models/*/golden.json hold);
// a missing or unreadable file gives none.
func readGolden(dir string) map[string]*tensor.Tensor {
	raw, err := os.ReadFile(filepath.Join(dir, "golden.json"))
	if err != nil {
		return nil
	}
	var g struct {
		Inputs map[string]struct {
			Datatype string    `json:"datatype"`
			Shape    []int64   `json:"shape"`
			Data     []float64 `json:"data"`
		} `json:"inputs"`
	}
	if json.Unmarshal(raw, &g) != nil {
		return nil
	}
	out := map[string]*tensor.Tensor{}
	for name, in := range g.Inputs {
		dt, ok := tensor.ParseDataType(in.Datatype)
		if !ok || !dt.IsNumeric() || len(in.Shape) == 0 || tensor.NumElements(in.Shape) != int64(len(in.Data)) {
			continue
		}
		t := tensor.New(name, dt, in.Shape)
		for i, v := range in.Data {
			t.SetFloat64(i, v)
		}
		out[name] = t
	}
	return out
}
