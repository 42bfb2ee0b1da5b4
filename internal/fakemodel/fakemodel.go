// Package fakemodel holds deterministic fake backends and a model
// repository of them, for the protocol and request-path tests of proxy and
// codec. It is not used outside tests.
package fakemodel

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/tensor"
)

// Backend is a deterministic backend for protocol tests; the real
// engine has its own tests in backends/cpu.
type Backend struct {
	Meta backends.Metadata
	Run  func(ctx context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error)
	// Delay (ns) holds every call that long, so that concurrent requests
	// queue up behind it and are batched; Calls counts the calls and
	// MaxRows is the largest batch seen.
	Delay, Calls, MaxRows atomic.Int64
}

func (f *Backend) Metadata() *backends.Metadata { return &f.Meta }
func (f *Backend) Close() error                 { return nil }
func (f *Backend) Infer(ctx context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	f.Calls.Add(1)
	if len(in) > 0 {
		for rows := int64(in[0].BatchSize()); ; {
			cur := f.MaxRows.Load()
			if rows <= cur || f.MaxRows.CompareAndSwap(cur, rows) {
				break
			}
		}
	}
	if d := time.Duration(f.Delay.Load()); d > 0 {
		tm := time.NewTimer(d)
		select {
		case <-tm.C:
		case <-ctx.Done():
			tm.Stop()
			return nil, ctx.Err()
		}
	}
	return f.Run(ctx, in)
}

// ZipKeys are the keys of the zip model's probs output; one needs JSON
// escaping.
var ZipKeys = []string{"cat", "dog", `e"el`}

// NewZip is the zip model: x FP32 [-1,3] -> label INT64 [-1] = argmax(x),
// probs FP32 [-1,3] = x/2, a map per row keyed by ZipKeys.
func NewZip() *Backend {
	return &Backend{
		Meta: backends.Metadata{
			Platform: "fake",
			Inputs:   []backends.TensorSpec{{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 3}}},
			Outputs: []backends.TensorSpec{
				{Name: "label", DType: tensor.Int64, Shape: []int64{-1}},
				{Name: "probs", DType: tensor.FP32, Shape: []int64{-1, 3}, Keys: ZipKeys},
			},
			MaxBatchSize: 8,
			Concurrency:  1,
		},
		Run: func(_ context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
			x := in[0].Float32s()
			rows := in[0].BatchSize()
			label := tensor.New("label", tensor.Int64, []int64{int64(rows)})
			probs := tensor.New("probs", tensor.FP32, in[0].Shape)
			for r := range rows {
				for j := range 3 {
					probs.Float32s()[r*3+j] = x[r*3+j] / 2
					if x[r*3+j] > x[r*3+int(label.Int64s()[r])] {
						label.Int64s()[r] = int64(j)
					}
				}
			}
			return []*tensor.Tensor{label, probs}, nil
		},
	}
}

// The fake models:
//
//	double: x FP32 [-1,4] -> y FP32 [-1,4] = 2x, cls INT64 [-1] = argmax(x)
//	        (/predict: cls with labels a..d)
//	multi:  a FP32 [-1,2], b INT32 [-1,2] -> sum FP64 [-1,2] = a+b
//	panic:  x FP32 [-1,1] -> panics
//	slow:   x FP32 [-1,1] -> waits for the deadline
//	strs:   s BYTES [-1,2] -> echo BYTES [-1,2] = s,
//	        label BYTES [-1] = s[r][0] + "+" + s[r][1],
//	        len INT64 [-1] = the row's bytes (/predict: label)
//	zip:    see NewZip (/predict: probs, a map per row)
//	zipmax: zip with /predict transform argmax on probs
//	badbytes: x FP32 [-1,1] -> y BYTES [-1] with a broken layout
//	missing: x FP32 [-1,2], takes missing values -> nans INT64 [-1] = the
//	         row's NaN count
var Models = map[string]func() *Backend{
	"missing": func() *Backend {
		return &Backend{
			Meta: backends.Metadata{Platform: "fake", Concurrency: 1, MaxBatchSize: 8,
				Inputs:  []backends.TensorSpec{{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 2}, Missing: true}},
				Outputs: []backends.TensorSpec{{Name: "nans", DType: tensor.Int64, Shape: []int64{-1}}}},
			Run: func(_ context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
				x := in[0].Float32s()
				out := tensor.New("nans", tensor.Int64, []int64{int64(in[0].BatchSize())})
				for i, v := range x {
					if v != v {
						out.Int64s()[i/2]++
					}
				}
				return []*tensor.Tensor{out}, nil
			},
		}
	},
	"strs": func() *Backend {
		return &Backend{
			Meta: backends.Metadata{
				Platform: "fake",
				Inputs:   []backends.TensorSpec{{Name: "s", DType: tensor.Bytes, Shape: []int64{-1, 2}}},
				Outputs: []backends.TensorSpec{
					{Name: "echo", DType: tensor.Bytes, Shape: []int64{-1, 2}},
					{Name: "label", DType: tensor.Bytes, Shape: []int64{-1}},
					{Name: "len", DType: tensor.Int64, Shape: []int64{-1}},
				},
				MaxBatchSize: 8,
				Concurrency:  1,
			},
			Run: func(_ context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
				s := in[0].Strings()
				rows := in[0].BatchSize()
				labels := make([]string, rows)
				n := tensor.New("len", tensor.Int64, []int64{int64(rows)})
				for r := range rows {
					labels[r] = s[2*r] + "+" + s[2*r+1]
					n.Int64s()[r] = int64(len(s[2*r]) + len(s[2*r+1]))
				}
				return []*tensor.Tensor{tensor.FromStrings("echo", in[0].Shape, s), tensor.FromStrings("label", []int64{int64(rows)}, labels), n}, nil
			},
		}
	},
	"zip":    NewZip,
	"zipmax": NewZip,
	"badbytes": func() *Backend {
		return &Backend{
			Meta: backends.Metadata{Platform: "fake", Concurrency: 1,
				Inputs:  []backends.TensorSpec{{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 1}}},
				Outputs: []backends.TensorSpec{{Name: "y", DType: tensor.Bytes, Shape: []int64{-1}}}},
			Run: func(_ context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
				// One element whose length runs past the data.
				return []*tensor.Tensor{{Name: "y", DType: tensor.Bytes, Shape: []int64{int64(in[0].BatchSize())}, Data: []byte{9, 0, 0, 0, 'a'}}}, nil
			},
		}
	},
	"double": func() *Backend {
		return &Backend{
			Meta: backends.Metadata{
				Platform:     "fake",
				Inputs:       []backends.TensorSpec{{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 4}}},
				Outputs:      []backends.TensorSpec{{Name: "y", DType: tensor.FP32, Shape: []int64{-1, 4}}, {Name: "cls", DType: tensor.Int64, Shape: []int64{-1}}},
				MaxBatchSize: 8,
				Concurrency:  1,
			},
			Run: func(_ context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
				x := in[0].Float32s()
				rows := in[0].BatchSize()
				y := tensor.New("y", tensor.FP32, in[0].Shape)
				cls := tensor.New("cls", tensor.Int64, []int64{int64(rows)})
				for r := 0; r < rows; r++ {
					best := 0
					for j := 0; j < 4; j++ {
						y.Float32s()[r*4+j] = 2 * x[r*4+j]
						if x[r*4+j] > x[r*4+best] {
							best = j
						}
					}
					cls.Int64s()[r] = int64(best)
				}
				return []*tensor.Tensor{y, cls}, nil
			},
		}
	},
	"multi": func() *Backend {
		return &Backend{
			Meta: backends.Metadata{
				Platform: "fake",
				Inputs: []backends.TensorSpec{
					{Name: "a", DType: tensor.FP32, Shape: []int64{-1, 2}},
					{Name: "b", DType: tensor.Int32, Shape: []int64{-1, 2}},
				},
				Outputs:     []backends.TensorSpec{{Name: "sum", DType: tensor.FP64, Shape: []int64{-1, 2}}},
				Concurrency: 1,
			},
			Run: func(_ context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
				out := tensor.New("sum", tensor.FP64, in[0].Shape)
				for i := range out.Float64s() {
					out.Float64s()[i] = float64(in[0].Float32s()[i]) + float64(in[1].Int32s()[i])
				}
				return []*tensor.Tensor{out}, nil
			},
		}
	},
	"panic": func() *Backend {
		return &Backend{
			Meta: backends.Metadata{Platform: "fake", Concurrency: 1,
				Inputs:  []backends.TensorSpec{{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 1}}},
				Outputs: []backends.TensorSpec{{Name: "y", DType: tensor.FP32, Shape: []int64{-1, 1}}}},
			Run: func(context.Context, []*tensor.Tensor) ([]*tensor.Tensor, error) { panic("boom") },
		}
	},
	"slow": func() *Backend {
		return &Backend{
			Meta: backends.Metadata{Platform: "fake", Concurrency: 1,
				Inputs:  []backends.TensorSpec{{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 1}}},
				Outputs: []backends.TensorSpec{{Name: "y", DType: tensor.FP32, Shape: []int64{-1, 1}}}},
			Run: func(ctx context.Context, _ []*tensor.Tensor) ([]*tensor.Tensor, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			},
		}
	},
}

// Configs are the config.yaml files of the fake models.
var Configs = map[string]string{
	"double": "max_batch_size: 8\nversion_policy: {all: true}\nlabels: {stable: 1, canary: 2}\npredict:\n  output: cls\n  labels: [a, b, c, d]\n",
	"multi":  "description: two inputs\n",
	"slow":   "queue_capacity: 2\n",
	"strs":   "predict:\n  output: label\n",
	"zip":    "predict:\n  output: probs\n",
	"zipmax": "predict:\n  output: probs\n  transform: argmax\n",
}

// testRegistry builds a model repository of the fake models in a temp
// dir; "double" has versions 1 and 2.
func Registry(t testing.TB) *backends.Registry {
	t.Helper()
	dir := t.TempDir()
	for name := range Models {
		versions := []string{"1"}
		if name == "double" {
			versions = []string{"1", "2"}
		}
		for _, v := range versions {
			must(t, os.MkdirAll(filepath.Join(dir, name, v), 0o755))
			must(t, os.WriteFile(filepath.Join(dir, name, v, "model.fake"), []byte(name), 0o644))
		}
		if c := Configs[name]; c != "" {
			must(t, os.WriteFile(filepath.Join(dir, name, "config.yaml"), []byte(c), 0o644))
		}
	}
	loaders := map[string]backends.Loader{"model.fake": func(path string, _ backends.LoadOptions) (backends.Backend, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		mk := Models[string(b)]
		if mk == nil {
			return nil, errors.New("unknown fake model")
		}
		return mk(), nil
	}}
	reg, err := backends.LoadRepository(dir, loaders)
	must(t, err)
	return reg
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
