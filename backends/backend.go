// Package backends defines the Backend interface every model runtime
// implements, and the Registry that loads a model repository and resolves a
// model name and version to a loaded backend.
package backends

import (
	"context"
	"errors"

	"github.com/coalesce-ml/coalesce/tensor"
)

// TensorSpec describes one input or output of a model. A dimension of -1 is
// variable; by convention dimension 0 is the batch dimension.
type TensorSpec struct {
	Name  string
	DType tensor.DataType
	Shape []int64
	// Keys, when set, says that each row of this output (shape [N, K]) is
	// a map from Keys[k] to the row's k-th value, as ONNX-ML's ZipMap
	// produces (class label -> probability). Protocols whose JSON can
	// carry objects (/predict, TF Serving) render such rows as objects;
	// KServe V2 sends the plain tensor.
	Keys []string
	// Missing (inputs) says that NaN is a meaningful value of this input:
	// a missing value, which tree models send down each node's default
	// branch. The protocols then accept NaN (JSON null, or NaN in binary
	// data) even when limits.allow_non_finite is off; ±Inf stays refused.
	Missing bool
}

// Metadata describes what a backend serves. It is fixed once the backend is
// loaded.
type Metadata struct {
	// Platform is the KServe V2 platform string, e.g. "onnx_onnxv1".
	Platform string
	// Inputs and Outputs list the tensors in the order Infer takes and
	// returns them.
	Inputs  []TensorSpec
	Outputs []TensorSpec
	// MaxBatchSize is the largest batch (rows) one Infer call accepts;
	// 0 means no limit.
	MaxBatchSize int
	// Concurrency is how many Infer calls the backend runs at once; more
	// calls wait for a free slot.
	Concurrency int
	// Parallel says that one Infer call already spreads its work over
	// every core the backend uses, whatever its batch size (the CPU
	// engine's column-split products over weights too large for a core's
	// cache): calls side by side would only compete for the same cores
	// and memory bandwidth. A batcher then runs one batch at a time, and
	// the requests that arrive meanwhile form the next batch.
	Parallel bool
	// Info holds free-form facts shown in metadata (e.g. the kernel path).
	Info map[string]string
}

// Backend runs a model on batches. Implementations are safe for concurrent
// use; at most Metadata().Concurrency calls run at the same time.
type Backend interface {
	// Metadata returns the model's description. The caller must not
	// modify it.
	Metadata() *Metadata
	// Infer runs one batch. inputs are in Metadata().Inputs order, with
	// the declared datatypes, and share the same batch size (dimension
	// 0); the outputs come back in Metadata().Outputs order with the same
	// batch size. Infer must not retain or modify inputs after it
	// returns. It returns ctx.Err() (wrapped) if ctx ends before the
	// batch starts.
	Infer(ctx context.Context, inputs []*tensor.Tensor) ([]*tensor.Tensor, error)
	// Close releases the backend's resources. In-flight calls finish.
	Close() error
}

// Sentinel errors of the registry and of backends. The proxy maps them to
// status codes.
var (
	// ErrModelNotFound: no model of that name is loaded.
	ErrModelNotFound = errors.New("model not found")
	// ErrVersionNotFound: the model exists but not that version.
	ErrVersionNotFound = errors.New("model version not found")
	// ErrInvalidInput: the inputs do not fit the model (a client error).
	ErrInvalidInput = errors.New("invalid input")
)

// Input returns the index of the input called name, or -1.
func (m *Metadata) Input(name string) int { return specIndex(m.Inputs, name) }

// Output returns the index of the output called name, or -1.
func (m *Metadata) Output(name string) int { return specIndex(m.Outputs, name) }

func specIndex(specs []TensorSpec, name string) int {
	for i := range specs {
		if specs[i].Name == name {
			return i
		}
	}
	return -1
}
