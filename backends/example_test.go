package backends_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/tensor"
)

// identity is a backend that returns its input.
type identity struct{ meta backends.Metadata }

func (b *identity) Metadata() *backends.Metadata { return &b.meta }
func (b *identity) Close() error                 { return nil }
func (b *identity) Infer(_ context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	return in, nil
}

// A repository of one model with two versions, loaded by a loader of
// "model.id" files, then a version retired and one added: registries are
// values, so the old one still serves what it served.
func Example() {
	dir, _ := os.MkdirTemp("", "repo")
	defer os.RemoveAll(dir)
	for _, v := range []string{"1", "2"} {
		os.MkdirAll(filepath.Join(dir, "echo", v), 0o755)
		os.WriteFile(filepath.Join(dir, "echo", v, "model.id"), nil, 0o644)
	}
	// Serve both versions (the default version policy serves the latest).
	os.WriteFile(filepath.Join(dir, "echo", "config.yaml"), []byte("version_policy: {all: true}\n"), 0o644)
	loaders := map[string]backends.Loader{"model.id": func(path string, opts backends.LoadOptions) (backends.Backend, error) {
		spec := backends.TensorSpec{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 2}}
		return &identity{backends.Metadata{Inputs: []backends.TensorSpec{spec}, Outputs: []backends.TensorSpec{spec}, MaxBatchSize: opts.MaxBatchSize, Concurrency: 1}}, nil
	}}
	reg, err := backends.LoadRepository(dir, loaders)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer reg.Close()
	latest, _ := reg.Get("echo", "")
	fmt.Println(reg.Names(), "latest version", latest.Version, "input", latest.Meta.Inputs[latest.Meta.Input("x")].Shape)

	next := reg.Without("echo", "2")
	latest, _ = next.Get("echo", "")
	fmt.Println("after retiring 2, latest is", latest.Version)
	_, err = reg.Get("echo", "3")
	fmt.Println(err)
	// Output:
	// [echo] latest version 2 input [-1 2]
	// after retiring 2, latest is 1
	// model "echo" version "3": model version not found
}
