// Package cpu is Coalesce's in-process inference engine: a pure-Go (no cgo)
// runtime for ONNX models.
//
// Load decodes the model with a small hand-written protobuf decoder
// (onnx_*.go), checks the graph and infers every shape and datatype from the
// declared input shapes (graph.go, compile.go), so that an unsupported
// operator, a bad attribute or a shape mismatch is an error at load time that
// names the node, never a wrong answer at run time. Nodes whose inputs are
// all constants are folded once at load; then fuse (fuse.go) merges into
// each matrix multiply the neighbours its kernel applies for free: a
// power-of-two scaling of its input, a bias Add after a MatMul, a Relu,
// and a BatchNormalization after a Gemm (folded into its weights and
// bias).
//
// conformance_test.go runs the ONNX node test cases of Debian's
// libonnx-testdata package for every operator the engine implements (the
// package has no ai.onnx.ml cases; ops_ml_test.go covers those).
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
// # ONNX-ML operators and strings
//
// Nodes of domain ai.onnx.ml (opsets 1 to 3, imported with opset_import;
// a model importing only ai.onnx.ml gets the latest ai.onnx opset, and
// ONNX-ML nodes without an import the latest ONNX-ML one, as in
// onnxruntime) are looked up by lookupMLOp (ops_ml*.go): LinearClassifier,
// LinearRegressor, Scaler, Normalizer, Binarizer, Imputer, OneHotEncoder,
// LabelEncoder, ArrayFeatureExtractor, FeatureVectorizer and ZipMap, plus
// the tree ensembles (ops_trees.go). Where the spec leaves a case open
// they do what onnxruntime's CPU kernels do, and reject at load what
// onnxruntime computes inconsistently (e.g. PROBIT on a one-row binary
// LinearClassifier). Numeric inputs of type double, int64 or int32 are
// converted to float as onnxruntime does; scores are FP32.
//
// Strings (ONNX STRING, tensor.Bytes) are int64 ids inside the engine,
// 8 bytes per element in the arena, into a per-model vocabulary holding
// every string constant of the graph (class labels, LabelEncoder keys and
// values, one-hot categories, Constant value_strings), interned at load
// (opCtx.stringID) and read-only afterwards; kernels compare and copy ids
// and never allocate. Infer maps each element of a BYTES input (the
// KServe V2 layout of tensor.FromStrings) to its id, or to a negative id
// matching no key when the vocabulary lacks it (so an unknown category
// gets LabelEncoder's default, OneHotEncoder's zeros), and builds BYTES
// outputs from the ids, an unknown input string coming back as itself.
// Only operators that take strings (LabelEncoder, OneHotEncoder,
// ArrayFeatureExtractor) or merely move elements (Identity, Reshape,
// Gather, Concat, Slice, Transpose, ...) accept BYTES inputs; string
// initializers and Cast to or from STRING are unsupported.
//
// A graph output of type sequence(map(string or int64, float)) is accepted
// only from a ZipMap, which is a view of its FP32 [N, C] input: the output
// is served as that tensor, its backends.TensorSpec carrying the class
// labels in Keys (int64 labels in decimal). A ZipMap output read by
// another node, or any other non-tensor output, is a load error.
//
// # Tree models
//
// TreeEnsembleClassifier and TreeEnsembleRegressor (ops_trees.go) read
// their nodes_* and class_*/target_* attributes once per node into a
// forest.Forest (package forest: flat breadth-first nodes, thresholds
// rewritten exactly for float32 and float64 inputs, level-wise walks,
// AVX-512 gathers where the CPU has them), shared by the plans of every
// batch size. XGBoost JSON (model.json) and LightGBM text (model.txt)
// files are read by forest/xgboost and forest/lightgbm into the same
// forest and served without conversion (native.go): a one-node graph
// with one input (FP32 or FP64 rows) and the outputs label,
// probabilities and margin (classifiers) or prediction and margin
// (regressors), named in the model's config.yaml (Loaders). Inputs of
// tree models and of graphs with an Imputer take NaN as a missing value
// (backends.TensorSpec.Missing).
//
// # Per-call cost
//
// A call takes an idle worker, looks its plan up (the worker remembers the
// previous call's shapes and frame, so a repeated batch size costs one
// byte comparison), runs the plan's steps on the worker's arena and copies
// the graph outputs into two allocations: one block of words holding every
// output's shape and data, one for the tensor headers and the result
// slice. Nothing else allocates in the steady state (TestInferAllocations,
// TestMLInferAllocations), except the data of BYTES outputs.
//
// # Matrix-multiply kernels
//
// Gemm and MatMul call an SGEMM driver (kernels.go) with one of three
// kernel sets, chosen at Load from what the CPU supports
// (golang.org/x/sys/cpu, which also checks that the OS saves the vector
// registers):
//
//   - "avx512": Go assembly, a 12×32 register tile (12 rows of A by two
//     ZMM registers of C: 24 accumulators), 32-column panels;
//   - "avx2" (AVX2 and FMA): Go assembly, a 6×16 tile (12 YMM
//     accumulators), 16-column panels;
//   - "generic": portable Go, 2×4 tiles of scalar accumulators over 8-column
//     panels. It is the only set in builds with the purego tag and on
//     architectures other than amd64.
//
// Options.Kernels forces a set ("avx512", "avx2" or "generic"; "" or "auto"
// for the best); Metadata().Info["kernels"] reports the one in use. Tests
// and benchmarks run every set the machine supports
// (BenchmarkSgemm/avx2/M=8, TestKernels, TestGoldenModels).
//
// Constant weights are packed once at load (and shared by the plans of all
// batch sizes): op(B), transposed as transB says and multiplied by Gemm's
// alpha, is stored as panels of nr consecutive columns, each K rows of nr
// floats, so that the kernel reads B sequentially; a last panel of width
// nr/2 holds a narrow tail (N mod nr ≤ nr/2), columns past N are zeros. A
// constant C that is one value per column (the bias: shape [N], [1, N] or a
// scalar) becomes beta·C, padded the same way. B computed at run time is
// packed per call into pooled buffers.
//
// A strip kernel (the .s files, generated by sgemm_gen.go; see there for
// the register use) computes up to mr rows of C across the panels: per K
// step two vector loads of B, one broadcast of A per row and two FMAs per
// row, with a body specialised for every row count so that M tails cost no
// extra code paths. Bodies of 1-3 rows split K over several accumulator
// sets (an FMA's latency needs 8 chains in flight); one-row strips (a
// matrix-vector product, bound by how fast B streams from L2) run four
// panels per K loop with B as FMA memory operands. The epilogue, applied
// as C is stored, adds C (for a C that is not a bias, copied into the
// output first, and for K blocks after the first), adds the bias, applies
// ReLU (NaN passes through, like Go's max), and masks the columns past N
// (AVX-512 opmask registers, AVX2 VMASKMOVPS). The driver blocks K by at
// most 512 (an A strip stays in L1) and N by 512 KiB of B (stays in L2).
// Transposed A is copied transposed first. The AVX-512 set also has a
// vectorised FP32 softmax over contiguous rows (softmax_avx512_amd64.s);
// other sets use plain Go with an inlined exponential.
//
// Element-wise and shape operators are plain Go loops; compute is FP32 (the
// path that matters); shape operators and ArgMax use INT64, and Cast
// converts between all fixed-size numeric types.
//
// # Benchmarks
//
//	go test -run '^$' -bench 'Sgemm|MLP|FMAPeak' -benchtime 2s -count 3 ./backends/cpu/
//
// A product with constant weights and at least Options.SplitRows rows
// (default 16) is split into chunks of whole row strips, computed by the
// calling worker and idle helper goroutines of the Backend (split.go);
// the results are bit-identical to the unsplit driver's.
// BenchmarkMLP/split and /nosplit force it on and off.
//
// BenchmarkSgemm/M=<m> multiplies M×256 by a packed 256×256 B (GFLOPS),
// BenchmarkMLP/batch=<n> runs digits-mlp through Infer on one worker
// (ns/op is the time of one call), BenchmarkFMAPeak is the core's FMA rate
// at the time (the machine may be shared). testdata/compare.sh runs
// BenchmarkMLP and the same network in PyTorch on one thread
// (testdata/torch_mlp_bench.py) back to back.
package cpu
