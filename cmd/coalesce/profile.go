package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/backends/cpu"
	"github.com/coalesce-ml/coalesce/drift"
	"github.com/coalesce-ml/coalesce/tensor"
)

// profileCmd is `coalesce profile`: it writes the reference profile of a
// model (drift.Profile) from a data file of its inputs. The outputs come
// from the file when it holds them (the V2-style golden.json of the
// shipped models), else from running the model on the CPU engine.
func profileCmd(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("coalesce profile", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	repo := fs.String("repository", "models", "model repository directory")
	model := fs.String("model", "", "model name (required); its highest version is profiled")
	data := fs.String("data", "", "reference data (required): .csv (optional header), .json (rows as arrays, or {\"inputs\": {name: {datatype, shape, data}}, \"outputs\": ...}) or .npy (2-D)")
	input := fs.String("input", "", "model input the rows of a .csv, row .json or .npy fill (empty: the only input)")
	names := fs.String("names", "", "comma-separated feature names for the input's columns (default: the CSV header, else input[j])")
	categorical := fs.String("categorical", "", "comma-separated numeric feature names to bin by value (class-like codes)")
	bins := fs.Int("bins", 10, "most quantile bins per numeric feature")
	cats := fs.Int("max-categories", 20, "most categories per categorical feature; the rest are \"other\"")
	out := fs.String("out", "", "output file (default <repository>/<model>/profile.json; - for stdout)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprintln(stdout, "Usage: coalesce profile --model NAME --data FILE [flags]")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return exitOK
		}
		fmt.Fprintf(stderr, "coalesce profile: %v\n", err)
		return exitConfig
	}
	if *model == "" || *data == "" || *bins < 2 || *cats < 1 {
		fmt.Fprintln(stderr, "coalesce profile: want --model and --data, --bins >= 2 and --max-categories >= 1 (coalesce profile --help)")
		return exitConfig
	}
	o := profileOpts{input: *input, names: splitList(*names), categorical: splitList(*categorical), bins: *bins, cats: *cats}
	p, err := buildProfile(*repo, *model, *data, o)
	if err != nil {
		fmt.Fprintf(stderr, "coalesce profile: %v\n", err)
		return exitFail
	}
	b, err := json.MarshalIndent(p, "", " ")
	if err != nil {
		fmt.Fprintf(stderr, "coalesce profile: %v\n", err)
		return exitFail
	}
	b = append(b, '\n')
	path := *out
	if path == "" {
		path = filepath.Join(*repo, *model, "profile.json")
	}
	if path == "-" {
		_, err = stdout.Write(b)
	} else {
		err = os.WriteFile(path, b, 0o644)
	}
	if err != nil {
		fmt.Fprintf(stderr, "coalesce profile: %v\n", err)
		return exitFail
	}
	if path != "-" {
		fmt.Fprintf(stderr, "coalesce profile: %s: %d rows, %d features, %d outputs\n", path, p.Rows, len(p.Features), len(p.Outputs))
	}
	return exitOK
}

type profileOpts struct {
	input              string
	names, categorical []string
	bins, cats         int
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// buildProfile profiles model (its highest version in repo) on the data
// file.
func buildProfile(repo, model, data string, o profileOpts) (*drift.Profile, error) {
	reg, err := backends.LoadRepository(repo, cpu.Loaders(cpu.Options{}))
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, m := range reg.All() {
			m.Backend.Close()
		}
	}()
	m, err := reg.Get(model, "")
	if err != nil {
		return nil, err
	}
	in, outs, header, err := readData(data, m.Meta, o.input)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", data, err)
	}
	if len(o.names) == 0 {
		o.names = header
	}
	rows := 0
	for _, t := range in {
		if t != nil {
			rows = t.BatchSize()
		}
	}
	if rows == 0 {
		return nil, fmt.Errorf("%s: no rows", data)
	}
	if outs == nil {
		if outs, err = runModel(m, in, rows); err != nil {
			return nil, err
		}
	}
	p := &drift.Profile{Version: drift.ProfileVersion, Model: model, Rows: int64(rows)}
	for i, spec := range m.Meta.Inputs {
		names := o.names
		if len(m.Meta.Inputs) > 1 || (o.input != "" && spec.Name != o.input) {
			names = nil // --names and the header name the columns of the one input
		}
		fs, err := features(in[i], spec, names, o)
		if err != nil {
			return nil, err
		}
		p.Features = append(p.Features, fs...)
	}
	for i, spec := range m.Meta.Outputs {
		fs, err := features(outs[i], spec, nil, o)
		if err != nil {
			return nil, err
		}
		p.Outputs = append(p.Outputs, fs...)
		if spec.Name == m.Config.Predict.Output && len(fs) == 1 {
			p.Prediction = fs[0].Name
		}
	}
	return p, p.Validate()
}

// features profiles every column of t (nil: the tensor was not in the
// data, skipped). Columns are named by names, else "tensor" for a
// one-column tensor and "tensor[j]" otherwise.
func features(t *tensor.Tensor, spec backends.TensorSpec, names []string, o profileOpts) ([]drift.Feature, error) {
	if t == nil {
		return nil, nil
	}
	rows := t.BatchSize()
	width := t.Len() / max(rows, 1)
	if len(names) > 0 && len(names) != width {
		return nil, fmt.Errorf("%d names for the %d columns of %s", len(names), width, spec.Name)
	}
	var strs []string
	if t.DType == tensor.Bytes {
		strs = t.Strings()
	}
	var fs []drift.Feature
	for j := range width {
		c := drift.Column{Name: spec.Name, Tensor: spec.Name, Column: j}
		switch {
		case len(names) > 0:
			c.Name = names[j]
		case width > 1:
			c.Name = spec.Name + "[" + strconv.Itoa(j) + "]"
		}
		c.Categorical = slices.Contains(o.categorical, c.Name) || (t.DType.IsNumeric() && !t.DType.IsFloat())
		for r := range rows {
			if strs != nil {
				c.Strings = append(c.Strings, strs[r*width+j])
			} else {
				c.Values = append(c.Values, t.Float64At(r*width+j))
			}
		}
		f, err := drift.BuildFeature(c, o.bins, o.cats)
		if err != nil {
			return nil, err
		}
		fs = append(fs, f)
	}
	return fs, nil
}

// runModel runs m on the rows of in, in batches it accepts, and returns
// its outputs for all rows.
func runModel(m *backends.ModelVersion, in []*tensor.Tensor, rows int) ([]*tensor.Tensor, error) {
	for i, t := range in {
		if t == nil {
			return nil, fmt.Errorf("the data has no input %s, which running model %s needs", m.Meta.Inputs[i].Name, m.Name)
		}
	}
	bs := m.Meta.MaxBatchSize
	if bs <= 0 || bs > 256 {
		bs = 256
	}
	var sizes []int
	for r := 0; r < rows; r += bs {
		sizes = append(sizes, min(bs, rows-r))
	}
	parts := make([][]*tensor.Tensor, len(in))
	for i, t := range in {
		var err error
		if parts[i], err = tensor.Split(t, sizes); err != nil {
			return nil, err
		}
	}
	outParts := make([][]*tensor.Tensor, len(m.Meta.Outputs))
	for b := range sizes {
		batch := make([]*tensor.Tensor, len(in))
		for i := range in {
			batch[i] = parts[i][b]
		}
		out, err := m.Backend.Infer(context.Background(), batch)
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", m.Name, err)
		}
		for i := range outParts {
			outParts[i] = append(outParts[i], out[i])
		}
	}
	outs := make([]*tensor.Tensor, len(outParts))
	for i, ps := range outParts {
		var err error
		if outs[i], err = tensor.Concat(m.Meta.Outputs[i].Name, ps); err != nil {
			return nil, err
		}
	}
	return outs, nil
}
