package backends

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

// Loader loads one model version from the file at path. Its key in the
// registry's loader map is the file name it loads ("model.onnx").
type Loader func(path string, opts LoadOptions) (Backend, error)

// LoadOptions is what a loader takes from a model's configuration. The
// zero value means: no batch limit, and a model file that declares its own
// tensors.
type LoadOptions struct {
	// Model and Version name the version being loaded (the repository's
	// directory names), for loaders that label what they create with
	// them (an upstream's metrics) or use the name (an upstream's remote
	// model name defaults to it).
	Model, Version string
	// MaxBatchSize is the largest number of rows one Infer call takes;
	// 0 means no limit.
	MaxBatchSize int
	// Inputs and Outputs describe the tensors of a model whose file does
	// not (native tree models); a format that declares its own must
	// refuse them. A spec's DType may be Invalid (the loader's default)
	// and its Shape holds the dimensions after the batch dimension.
	Inputs  []TensorSpec
	Outputs []TensorSpec
}

// LoadOptionsOf converts a model's config.yaml into LoadOptions.
func LoadOptionsOf(mc *config.ModelConfig) LoadOptions {
	o := LoadOptions{MaxBatchSize: mc.MaxBatchSize}
	for _, in := range mc.Inputs {
		dt, _ := tensor.ParseDataType(in.DataType) // validated by config
		o.Inputs = append(o.Inputs, TensorSpec{Name: in.Name, DType: dt, Shape: in.Dims})
	}
	for _, out := range mc.Outputs {
		o.Outputs = append(o.Outputs, TensorSpec{Name: out.Name})
	}
	return o
}

// ModelVersion is one loaded version of a model. It is immutable.
type ModelVersion struct {
	Name    string
	Version string
	Path    string // the model file
	Config  config.ModelConfig
	Backend Backend
	Meta    *Metadata
}

// Registry resolves model names and versions to loaded models. It is
// immutable and safe for concurrent use; With and Without derive new
// registries from it, so that a server can swap the set it serves whole.
type Registry struct {
	models map[string]*versions
	names  []string // sorted
}

type versions struct {
	byName map[string]*ModelVersion
	order  []*ModelVersion // ascending version number
}

// LoadRepository loads every model of the repository dir, laid out as
// <dir>/<name>/config.yaml (optional) and <dir>/<name>/<version>/<file>,
// where <version> is a positive integer and <file> is a key of loaders.
// Any model that fails to load fails the whole load, naming the path.
func LoadRepository(dir string, loaders map[string]Loader) (*Registry, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("model repository: %w", err)
	}
	r := &Registry{models: map[string]*versions{}}
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		vs, err := loadModel(filepath.Join(dir, e.Name()), e.Name(), loaders)
		if err != nil {
			r.Close()
			return nil, err
		}
		r.models[e.Name()] = vs
		r.names = append(r.names, e.Name())
	}
	if len(r.names) == 0 {
		return nil, fmt.Errorf("model repository %s: no models; want <name>/<version>/%s", dir, loaderFiles(loaders))
	}
	sort.Strings(r.names)
	return r, nil
}

func loadModel(dir, name string, loaders map[string]Loader) (*versions, error) {
	cfg, err := config.LoadModel(filepath.Join(dir, "config.yaml"))
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", name, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", name, err)
	}
	vs := &versions{byName: map[string]*ModelVersion{}}
	for _, v := range SelectVersions(cfg.VersionPolicy, versionDirs(entries)) {
		m, err := LoadVersion(dir, name, v, cfg, loaders)
		if err != nil {
			for _, m := range vs.order {
				m.Backend.Close()
			}
			return nil, err
		}
		vs.byName[m.Version] = m
		vs.order = append(vs.order, m)
	}
	if len(vs.order) == 0 {
		hint := ""
		if fi, err := os.Stat(filepath.Join(dir, "gen")); err == nil && fi.IsDir() {
			// A shipped model whose weights are generated rather than
			// committed (models/wide-mlp): say how to make them.
			hint = fmt.Sprintf(" (its weights are generated: run `make models`, or `go run ./%s` from the repository root)", filepath.ToSlash(filepath.Join(filepath.Base(filepath.Dir(dir)), name, "gen")))
		}
		return nil, fmt.Errorf("model %s: no version directories in %s; want %s/1/%s%s", name, dir, dir, loaderFiles(loaders), hint)
	}
	sort.Slice(vs.order, func(i, j int) bool { return versionLess(vs.order[i].Version, vs.order[j].Version) })
	return vs, nil
}

// ScanModel reads the model directory dir (<repository>/<name>): its
// config.yaml and the version directories on disk, ascending, before any
// version policy.
func ScanModel(dir string) (config.ModelConfig, []string, error) {
	cfg, err := config.LoadModel(filepath.Join(dir, "config.yaml"))
	if err != nil {
		return cfg, nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return cfg, nil, err
	}
	return cfg, versionDirs(entries), nil
}

// versionDirs returns the names of the version directories among
// entries (positive integers, in canonical form), ascending.
func versionDirs(entries []os.DirEntry) []string {
	var vs []string
	for _, e := range entries {
		n, err := strconv.ParseUint(e.Name(), 10, 63)
		if !e.IsDir() || err != nil || n == 0 || strconv.FormatUint(n, 10) != e.Name() {
			continue // not a version directory (examples/, scripts, 01, ...)
		}
		vs = append(vs, e.Name())
	}
	sort.Slice(vs, func(i, j int) bool { return versionLess(vs[i], vs[j]) })
	return vs
}

// SelectVersions returns the versions of onDisk (ascending) that policy p
// serves, ascending: all of them, the specific ones present, or the
// p.Latest highest (1 when Latest is 0).
func SelectVersions(p config.VersionPolicy, onDisk []string) []string {
	switch {
	case p.All:
		return slices.Clone(onDisk)
	case len(p.Specific) > 0:
		var out []string
		for _, v := range onDisk {
			if slices.Contains(p.Specific, v) {
				out = append(out, v)
			}
		}
		return out
	}
	n := max(p.Latest, 1)
	return slices.Clone(onDisk[max(len(onDisk)-n, 0):])
}

// LoadVersion loads version of model name from <dir>/<version>/<file>,
// where file is the one key of loaders present, configured by cfg (the
// model's config.yaml). The caller owns the returned backend.
func LoadVersion(dir, name, version string, cfg config.ModelConfig, loaders map[string]Loader) (*ModelVersion, error) {
	vdir := filepath.Join(dir, version)
	var found []string
	for file := range loaders {
		if _, err := os.Stat(filepath.Join(vdir, file)); err == nil {
			found = append(found, file)
		}
	}
	sort.Strings(found)
	if len(found) > 1 {
		return nil, fmt.Errorf("model %s version %s: %s holds %d model files (%s); want exactly one", name, version, vdir, len(found), strings.Join(found, " and "))
	}
	for _, file := range found {
		path := filepath.Join(vdir, file)
		opts := LoadOptionsOf(&cfg)
		opts.Model, opts.Version = name, version
		b, err := loaders[file](path, opts)
		if err != nil {
			return nil, fmt.Errorf("model %s version %s: %w", name, version, err)
		}
		meta := b.Metadata()
		if p := cfg.Predict; p.Output != "" && meta.Output(p.Output) < 0 {
			b.Close()
			return nil, fmt.Errorf("model %s: config predict.output %q is not an output of the model; want one of %s", name, p.Output, specNames(meta.Outputs))
		}
		if p := cfg.Predict; p.Input != "" && meta.Input(p.Input) < 0 {
			b.Close()
			return nil, fmt.Errorf("model %s: config predict.input %q is not an input of the model; want one of %s", name, p.Input, specNames(meta.Inputs))
		}
		return &ModelVersion{Name: name, Version: version, Path: path, Config: cfg, Backend: b, Meta: meta}, nil
	}
	return nil, fmt.Errorf("model %s version %s: no model file in %s; want %s", name, version, vdir, loaderFiles(loaders))
}

func specNames(specs []TensorSpec) string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = strconv.Quote(s.Name)
	}
	return strings.Join(names, ", ")
}

func loaderFiles(loaders map[string]Loader) string {
	var files []string
	for f := range loaders {
		files = append(files, f)
	}
	sort.Strings(files)
	return strings.Join(files, " or ")
}

// Get returns the model name at version, or at its highest version when
// version is empty. The error wraps ErrModelNotFound or ErrVersionNotFound.
//
// Get retains neither string (callers may pass views of request bytes).
func (r *Registry) Get(name, version string) (*ModelVersion, error) {
	vs := r.models[name]
	if vs == nil {
		return nil, fmt.Errorf("model %q: %w", name, ErrModelNotFound)
	}
	if version == "" {
		return vs.order[len(vs.order)-1], nil
	}
	if m := vs.byName[version]; m != nil {
		return m, nil
	}
	return nil, fmt.Errorf("model %q version %q: %w", name, version, ErrVersionNotFound)
}

// Lookup is Get without a formatted error: it returns ErrModelNotFound or
// ErrVersionNotFound themselves, so that a caller holding untrusted names
// decides how much of them to repeat.
func (r *Registry) Lookup(name, version string) (*ModelVersion, error) {
	vs := r.models[name]
	if vs == nil {
		return nil, ErrModelNotFound
	}
	if version == "" {
		return vs.order[len(vs.order)-1], nil
	}
	if m := vs.byName[version]; m != nil {
		return m, nil
	}
	return nil, ErrVersionNotFound
}

// Names returns the names of all models, sorted.
func (r *Registry) Names() []string { return r.names }

// Versions returns every loaded version of model name, ascending, or nil.
func (r *Registry) Versions(name string) []*ModelVersion {
	if vs := r.models[name]; vs != nil {
		return vs.order
	}
	return nil
}

// Close closes every backend and returns their errors. A server that
// serves the registry owns its backends and closes them itself.
func (r *Registry) Close() error {
	var errs []error
	for _, vs := range r.models {
		for _, m := range vs.order {
			errs = append(errs, m.Backend.Close())
		}
	}
	return errors.Join(errs...)
}

// With returns a registry holding r's versions and m, which replaces the
// version of the same model and version number if r has one. r is not
// modified: registries are values, swapped whole.
func (r *Registry) With(m *ModelVersion) *Registry {
	n := r.clone()
	vs := n.models[m.Name]
	if vs == nil {
		vs = &versions{byName: map[string]*ModelVersion{}}
		n.models[m.Name] = vs
		n.names = append(n.names, m.Name)
		sort.Strings(n.names)
	} else {
		vs = vs.clone()
		n.models[m.Name] = vs
	}
	if old := vs.byName[m.Version]; old != nil {
		vs.order = slices.DeleteFunc(vs.order, func(v *ModelVersion) bool { return v == old })
	}
	vs.byName[m.Version] = m
	vs.order = append(vs.order, m)
	sort.Slice(vs.order, func(i, j int) bool { return versionLess(vs.order[i].Version, vs.order[j].Version) })
	return n
}

// Without returns a registry holding r's versions except version of model
// name (every version when version is empty). The last version of a model
// removes the model. r is not modified.
func (r *Registry) Without(name, version string) *Registry {
	n := r.clone()
	vs := n.models[name]
	if vs == nil {
		return n
	}
	vs = vs.clone()
	for v, m := range vs.byName {
		if version == "" || v == version {
			delete(vs.byName, v)
			vs.order = slices.DeleteFunc(vs.order, func(o *ModelVersion) bool { return o == m })
		}
	}
	if len(vs.order) == 0 {
		delete(n.models, name)
		n.names = slices.DeleteFunc(n.names, func(s string) bool { return s == name })
	} else {
		n.models[name] = vs
	}
	return n
}

// All returns every version of every model, by name then ascending
// version.
func (r *Registry) All() []*ModelVersion {
	var all []*ModelVersion
	for _, name := range r.names {
		all = append(all, r.models[name].order...)
	}
	return all
}

func (r *Registry) clone() *Registry {
	n := &Registry{models: make(map[string]*versions, len(r.models)), names: slices.Clone(r.names)}
	for k, v := range r.models {
		n.models[k] = v
	}
	return n
}

func (vs *versions) clone() *versions {
	n := &versions{byName: make(map[string]*ModelVersion, len(vs.byName)), order: slices.Clone(vs.order)}
	for k, v := range vs.byName {
		n.byName[k] = v
	}
	return n
}

// versionLess orders version numbers numerically.
func versionLess(a, b string) bool {
	x, _ := strconv.ParseUint(a, 10, 63)
	y, _ := strconv.ParseUint(b, 10, 63)
	return x < y
}
