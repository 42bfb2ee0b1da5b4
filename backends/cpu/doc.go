// Package cpu is Coalesce's in-process inference engine: a pure-Go (no cgo)
// runtime for ONNX models.
//
// Load decodes the model with a small hand-written protobuf decoder
// (onnx_*.go), checks the graph and infers every shape and datatype from the
// declared input shapes (graph.go, compile.go), so that an unsupported
// operator, a bad attribute or a shape mismatch is an error at load time that
// names the node, never a wrong answer at run time. Nodes whose inputs are
// all constants are folded once at load.
//
// Dynamic dimensions (the batch dimension, declared -1 or with a dim_param)
// are handled by compiling one concrete plan per set of input shapes: the
// first call with a new batch size compiles (microseconds for small graphs)
// and caches a plan in which every shape is known, shape arithmetic such as
// torch's x.view(x.size(0), -1) (Shape, Gather, Unsqueeze, Concat, Reshape)
// is folded to constants, and every intermediate tensor has a fixed offset
// in a per-worker arena. At load the graph is compiled at probe batch sizes
// (2 and 3, or smaller when Options.MaxBatchSize says so) to report errors
// early and to learn which output dimensions follow the batch.
//
// Kernels are plain Go loops, separate from the graph layer: sgemm.go holds
// the matrix multiply that the Gemm and MatMul operators call, so that
// architecture-specific kernels can replace it without touching operators.
// Compute is FP32 (the path that matters); shape operators and ArgMax use
// INT64, and Cast converts between all fixed-size numeric types.
package cpu
