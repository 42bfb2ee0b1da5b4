package backends

import (
	"context"
	"errors"
	"github.com/coalesce-ml/coalesce/config"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/coalesce-ml/coalesce/tensor"
)

type stubBackend struct {
	meta   Metadata
	closed *atomic.Int32
}

var opened atomic.Int32 // stub backends created, across tests

func (s *stubBackend) Metadata() *Metadata { return &s.meta }
func (s *stubBackend) Infer(context.Context, []*tensor.Tensor) ([]*tensor.Tensor, error) {
	return nil, errors.New("stub")
}
func (s *stubBackend) Close() error { s.closed.Add(1); return nil }

// stubLoaders loads "model.stub" files; a file containing "fail" fails.
func stubLoaders(closed *atomic.Int32) map[string]Loader {
	return map[string]Loader{"model.stub": func(path string, _ LoadOptions) (Backend, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if string(b) == "fail" {
			return nil, errors.New("cannot load " + filepath.Base(filepath.Dir(path)))
		}
		opened.Add(1)
		return &stubBackend{closed: closed, meta: Metadata{
			Inputs:  []TensorSpec{{Name: "in", DType: tensor.FP32, Shape: []int64{-1, 2}}},
			Outputs: []TensorSpec{{Name: "out", DType: tensor.FP32, Shape: []int64{-1, 2}}},
		}}, nil
	}}
}

// repo writes files (path -> content) under a temp dir.
func repo(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestRegistryVersions(t *testing.T) {
	var closed atomic.Int32
	dir := repo(t, map[string]string{
		"a/1/model.stub":   "",
		"a/2/model.stub":   "",
		"a/10/model.stub":  "", // numeric order: 10 is the highest
		"a/examples/x.txt": "", // not a version directory
		"a/config.yaml":    "max_batch_size: 4\nversion_policy: {all: true}\n",
		"b/3/model.stub":   "",
		"README.md":        "not a model",
		".hidden/1/x":      "",
	})
	r, err := LoadRepository(dir, stubLoaders(&closed))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Names(), ","); got != "a,b" {
		t.Errorf("Names() = %s; want a,b", got)
	}
	var vs []string
	for _, m := range r.Versions("a") {
		vs = append(vs, m.Version)
	}
	if strings.Join(vs, ",") != "1,2,10" {
		t.Errorf("Versions(a) = %v; want 1,2,10", vs)
	}
	m, err := r.Get("a", "")
	if err != nil || m.Version != "10" || m.Config.MaxBatchSize != 4 {
		t.Errorf("Get(a, latest) = %+v, %v; want version 10 with max_batch_size 4", m, err)
	}
	if m, err := r.Get("a", "2"); err != nil || m.Version != "2" {
		t.Errorf("Get(a, 2) = %v, %v", m, err)
	}
	if _, err := r.Get("a", "7"); !errors.Is(err, ErrVersionNotFound) {
		t.Errorf("Get(a, 7) = %v; want ErrVersionNotFound", err)
	}
	if _, err := r.Get("c", ""); !errors.Is(err, ErrModelNotFound) {
		t.Errorf("Get(c) = %v; want ErrModelNotFound", err)
	}
	if err := r.Close(); err != nil || closed.Load() != 4 {
		t.Errorf("Close() = %v, closed %d backends; want 4", err, closed.Load())
	}
}

func TestRegistryErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"empty repository", map[string]string{"README.md": ""}, []string{"no models", "model.stub"}},
		{"no versions", map[string]string{"m/config.yaml": ""}, []string{"model m", "no version directories"}},
		{"generated weights absent", map[string]string{"m/config.yaml": "", "m/gen/main.go": ""}, []string{"no version directories", "make models", "go run ./"}},
		{"no model file", map[string]string{"m/1/other.bin": ""}, []string{"model m version 1", "no model file", "model.stub"}},
		{"load failure", map[string]string{"m/1/model.stub": "fail"}, []string{"model m version 1", "cannot load 1"}},
		{"bad config", map[string]string{"m/1/model.stub": "", "m/config.yaml": "max_batch: 3\n"}, []string{"model m", `unknown key "max_batch"`}},
		{"unknown predict output", map[string]string{"m/1/model.stub": "", "m/config.yaml": "predict:\n  output: prob\n"}, []string{`predict.output "prob"`, `"out"`}},
		{"unknown predict input", map[string]string{"m/1/model.stub": "", "m/config.yaml": "predict:\n  input: x\n"}, []string{`predict.input "x"`, `"in"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var closed atomic.Int32
			before := opened.Load()
			// A good model beside the bad one must be closed again.
			files := map[string]string{"good/1/model.stub": ""}
			for k, v := range tt.files {
				files[k] = v
			}
			if tt.name == "empty repository" {
				files = tt.files
			}
			_, err := LoadRepository(repo(t, files), stubLoaders(&closed))
			if err == nil {
				t.Fatal("LoadRepository() = nil error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if n := opened.Load() - before; closed.Load() != n {
				t.Errorf("closed %d backends after a failed load; want all %d that were opened", closed.Load(), n)
			}
		})
	}
	if _, err := LoadRepository(filepath.Join(t.TempDir(), "absent"), nil); err == nil {
		t.Error("LoadRepository(absent dir) = nil error")
	}
}

// TestTwoModelFiles: a version directory with two loadable files is an
// error naming both, not a pick by map order.
func TestTwoModelFiles(t *testing.T) {
	var closed atomic.Int32
	loaders := stubLoaders(&closed)
	loaders["model.other"] = loaders["model.stub"]
	dir := repo(t, map[string]string{"m/1/model.stub": "", "m/1/model.other": ""})
	_, err := LoadRepository(dir, loaders)
	if err == nil || !strings.Contains(err.Error(), "model m version 1") || !strings.Contains(err.Error(), "2 model files (model.other and model.stub); want exactly one") {
		t.Fatalf("LoadRepository = %v; want an error naming model.other and model.stub", err)
	}
}

// TestRegistryWithWithout: derived registries leave the original alone,
// keep versions in numeric order, and drop a model with its last version.
func TestRegistryWithWithout(t *testing.T) {
	var closed atomic.Int32
	r, err := LoadRepository(repo(t, map[string]string{"a/1/model.stub": "", "a/2/model.stub": "", "a/config.yaml": "version_policy: {all: true}"}), stubLoaders(&closed))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	v2, _ := r.Get("a", "2")
	versions := func(r *Registry, name string) string {
		var vs []string
		for _, m := range r.Versions(name) {
			vs = append(vs, m.Version)
		}
		return strings.Join(vs, ",")
	}
	n := r.With(&ModelVersion{Name: "a", Version: "10", Meta: v2.Meta}).With(&ModelVersion{Name: "b", Version: "1", Meta: v2.Meta})
	if got := versions(n, "a"); got != "1,2,10" {
		t.Errorf("With(a/10) versions = %s; want 1,2,10", got)
	}
	if got := strings.Join(n.Names(), ","); got != "a,b" {
		t.Errorf("names = %s; want a,b", got)
	}
	if got := versions(r, "a"); got != "1,2" || len(r.Names()) != 1 {
		t.Errorf("original changed: versions %s names %v", got, r.Names())
	}
	replaced := &ModelVersion{Name: "a", Version: "2", Meta: v2.Meta}
	if m, _ := n.With(replaced).Get("a", "2"); m != replaced {
		t.Errorf("With a new load of a/2 kept the old one")
	}
	if got := len(n.With(replaced).All()); got != 4 {
		t.Errorf("All() after replacing a/2 = %d versions; want 4", got)
	}
	w := n.Without("a", "10").Without("b", "")
	if got := versions(w, "a"); got != "1,2" || strings.Join(w.Names(), ",") != "a" {
		t.Errorf("Without: versions %s names %v; want 1,2 and [a]", got, w.Names())
	}
	if _, err := w.Lookup("b", ""); err != ErrModelNotFound {
		t.Errorf("Lookup(b) after Without = %v; want ErrModelNotFound itself", err)
	}
	if _, err := w.Lookup("a", "10"); err != ErrVersionNotFound {
		t.Errorf("Lookup(a, 10) after Without = %v; want ErrVersionNotFound", err)
	}
}

// TestVersionPolicy: latest N (default 1), all and specific choose among
// the versions on disk; LoadRepository loads only those.
func TestVersionPolicy(t *testing.T) {
	onDisk := []string{"1", "2", "3", "10"}
	f := func(p config.VersionPolicy, want string) {
		t.Helper()
		if got := strings.Join(SelectVersions(p, onDisk), ","); got != want {
			t.Errorf("SelectVersions(%+v) = %s; want %s", p, got, want)
		}
	}
	f(config.VersionPolicy{}, "10")
	f(config.VersionPolicy{Latest: 1}, "10")
	f(config.VersionPolicy{Latest: 2}, "3,10")
	f(config.VersionPolicy{Latest: 9}, "1,2,3,10")
	f(config.VersionPolicy{All: true}, "1,2,3,10")
	f(config.VersionPolicy{Specific: []string{"2", "10", "7"}}, "2,10")

	var closed atomic.Int32
	r, err := LoadRepository(repo(t, map[string]string{"a/1/model.stub": "", "a/2/model.stub": "", "a/3/model.stub": "",
		"a/config.yaml": "version_policy: {latest: 2}\n", "b/1/model.stub": "", "b/2/model.stub": ""}), stubLoaders(&closed))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for name, want := range map[string]string{"a": "2,3", "b": "2"} {
		var vs []string
		for _, m := range r.Versions(name) {
			vs = append(vs, m.Version)
		}
		if got := strings.Join(vs, ","); got != want {
			t.Errorf("Versions(%s) = %s; want %s", name, got, want)
		}
	}
}
