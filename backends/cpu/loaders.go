package cpu

import (
	"fmt"
	"os"
	"strings"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/backends/cpu/forest"
	"github.com/coalesce-ml/coalesce/backends/cpu/forest/lightgbm"
	"github.com/coalesce-ml/coalesce/backends/cpu/forest/xgboost"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

// Loaders returns the registry loaders of the engine, keyed by model file
// name: model.onnx (ONNX), model.json (XGBoost JSON) and model.txt
// (LightGBM text). o is the base engine configuration; each model's
// config.yaml adds its max_batch_size and, for the native formats, its
// inputs and outputs.
func Loaders(o Options) map[string]backends.Loader {
	native := func(path string, mc config.Model) (backends.Backend, error) {
		opts := o
		opts.MaxBatchSize = mc.MaxBatchSize
		io, err := nativeIO(mc)
		if err != nil {
			return nil, err
		}
		return LoadNative(path, io, opts)
	}
	return map[string]backends.Loader{
		"model.onnx": func(path string, mc config.Model) (backends.Backend, error) {
			if len(mc.Inputs)+len(mc.Outputs) > 0 {
				return nil, fmt.Errorf("config: inputs/outputs describe native tree models (model.json, model.txt); an ONNX model declares its own, remove them")
			}
			opts := o
			opts.MaxBatchSize = mc.MaxBatchSize
			return Load(path, opts)
		},
		"model.json": native,
		"model.txt":  native,
	}
}

// nativeIO turns a model's inputs/outputs configuration into NativeIO.
func nativeIO(mc config.Model) (NativeIO, error) {
	var io NativeIO
	if len(mc.Inputs) == 1 {
		in := mc.Inputs[0]
		io.Input = in.Name
		if in.DataType != "" {
			io.DType, _ = tensor.ParseDataType(in.DataType)
		}
		if len(in.Dims) == 1 {
			io.Features = int(in.Dims[0])
		}
	}
	for _, o := range mc.Outputs {
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
	var m *forest.Model
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
