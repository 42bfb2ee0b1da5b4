package cpu

import (
	"fmt"
	"os"
	"strings"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/backends/cpu/forest"
	"github.com/coalesce-ml/coalesce/backends/cpu/forest/lightgbm"
	"github.com/coalesce-ml/coalesce/backends/cpu/forest/xgboost"
)

// Loaders returns the registry loaders of the engine, keyed by model file
// name: model.onnx (ONNX), model.json (XGBoost JSON) and model.txt
// (LightGBM text). o is the base engine configuration; each model's
// config.yaml adds its max_batch_size and, for the native formats, its
// inputs and outputs.
func Loaders(o Options) map[string]backends.Loader {
	native := func(path string, lo backends.LoadOptions) (backends.Backend, error) {
		opts := o
		opts.MaxBatchSize = lo.MaxBatchSize
		io, err := nativeIO(lo)
		if err != nil {
			return nil, err
		}
		return LoadNative(path, io, opts)
	}
	return map[string]backends.Loader{
		"model.onnx": func(path string, lo backends.LoadOptions) (backends.Backend, error) {
			if len(lo.Inputs)+len(lo.Outputs) > 0 {
				return nil, fmt.Errorf("config: inputs/outputs describe native tree models (model.json, model.txt); an ONNX model declares its own, remove them")
			}
			opts := o
			opts.MaxBatchSize = lo.MaxBatchSize
			return Load(path, opts)
		},
		"model.json": native,
		"model.txt":  native,
	}
}

// nativeIO turns a model's inputs/outputs configuration into NativeIO.
func nativeIO(lo backends.LoadOptions) (NativeIO, error) {
	var io NativeIO
	if len(lo.Inputs) == 1 {
		in := lo.Inputs[0]
		io.Input = in.Name
		io.DType = in.DType
		if len(in.Shape) == 1 {
			io.Features = int(in.Shape[0])
		}
	}
	for _, o := range lo.Outputs {
		io.Outputs = append(io.Outputs, o.Name)
	}
	return io, nil
}

// LoadNative reads the native tree model at path: XGBoost's JSON model
// (a name ending in .json) or LightGBM's text model (any other name).
func LoadNative(path string, io NativeIO, opts Options) (*Backend, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cpu: %w", err)
	}
	var m *forest.Ensemble
	if strings.HasSuffix(path, ".json") {
		m, err = xgboost.Read(data)
	} else {
		m, err = lightgbm.Read(data)
	}
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	be, err := NewNative(m, io, opts)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return be, nil
}
