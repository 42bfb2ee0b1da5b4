// Package cpu is Coalesce's in-process inference engine: a pure-Go
// runtime for ONNX models and for XGBoost and LightGBM tree models.
//
// # Guarantees
//
// What a caller may rely on, each backed by the tests named:
//
//   - No cgo: the module builds with CGO_ENABLED=0; the only assembly is
//     Go assembly (internal/sgemm, forest), and the purego build tag
//     replaces it with portable Go (go test -tags purego ./backends/...).
//   - Concurrency: a Backend is safe for concurrent use; at most
//     Options.Concurrency calls run at once, each on its own worker, and
//     every answer equals a serial run's (TestInferConcurrent, run with
//     -race). Close stops the helper goroutines (TestSplitClose).
//   - Determinism: for a given kernel set, the same inputs give the same
//     bits, whatever the batch splitting or the calls running beside
//     (TestSplitInfer: split and unsplit products are bit-identical).
//     Kernel sets differ in the order of additions, so their results
//     agree to float32 rounding, not bit for bit.
//   - Allocation: intermediate tensors live at fixed offsets of the
//     calling worker's arena, and larger per-call scratch (convolution
//     and recurrent buffers) in per-kernel free lists; in the steady
//     state a call allocates its outputs only, two blocks
//     (TestInferAllocations, TestMLInferAllocations, and every
//     architecture of TestArchitectures), plus the data of BYTES outputs
//     and the per-call index state of TopK and of Einsum's general loop.
//   - Bad models: Load and LoadBytes return an error wrapping
//     ErrMalformed, ErrInvalidModel or ErrUnsupported and naming the node
//     or field, and never panic (FuzzLoadBytes, errors_test.go); a panic
//     inside a kernel at run time becomes an error naming the node.
//   - Numbers: FP32 outputs of the shipped models (models/*/golden.json:
//     PyTorch 1.13, scikit-learn 1.2.1 converted to ONNX, XGBoost 1.7.4) agree
//     with the framework's within 1e-5 relative to max(1, |want|), and
//     XGBoost margins bit for bit, on every kernel set (TestGoldenModels);
//     served LightGBM margins agree with LightGBM's within 1e-5 and
//     probabilities within 1e-6 (TestNativeLightGBM; forest/lightgbm
//     checks the margins bit for bit). Every test case of
//     libonnx-testdata's node, pytorch-converted, pytorch-operator and
//     simple suites whose operators the engine implements passes within
//     1e-5 + 1e-5·|want| (1e-2 for FP16 and BF16), every expected output
//     present, or is refused at load with ErrUnsupported
//     (TestONNXNodeConformance). Architectures exported by torch.onnx
//     with random weights (an MLP with LayerNorm and GELU, a 1-D CNN,
//     LSTM and GRU classifiers, a TransformerEncoder, and torchvision's
//     SqueezeNet 1.1, MobileNetV2 and ResNet-18 exported at test time
//     when Python has torch) agree with torch within 1e-4 relative to
//     max(1, |want|) at batch 1 and 3 (TestArchitectures);
//     ONNX-ML operators reproduce onnxruntime's unit-test numbers
//     (ops_ml_test.go). A NaN or Inf matches only the same value.
//
// # Loading
//
// Load decodes the model with a small hand-written protobuf decoder
// (package internal/onnx), checks the graph and infers every shape and datatype from the
// declared input shapes (graph.go, compile.go), so that an unsupported
// operator, a bad attribute or a shape mismatch is an error at load time that
// names the node, never a wrong answer at run time. Nodes whose inputs are
// all constants are folded once at load; then fuse (fuse.go) merges into
// each matrix multiply the neighbours its kernel applies for free: a
// power-of-two scaling of its input, a bias Add after a MatMul, a Relu,
// and a BatchNormalization after a Gemm (folded into its weights and
// bias); into each Conv a following BatchNormalization (folded), Relu
// or Clip; and it replaces the exporters' spelled-out LayerNorm
// (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add) and
// erf-based GELU subgraphs by one LayerNormalization or Gelu node each
// (fuse_patterns.go).
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
// # Matrix multiplies
//
// Gemm, MatMul and LinearClassifier/LinearRegressor call package
// internal/sgemm, whose doc describes the kernels, their choice per CPU
// and their efficiency. Options.Kernels forces a kernel set ("avx512",
// "avx2" or "generic"; "" or "auto" for the best the CPU supports);
// Metadata().Info["kernels"] reports the one in use, and the tests run
// every set the machine supports (TestGoldenModels, TestKernels). Constant
// weights are packed once at load and shared by the plans of all batch
// sizes (opCtx.packB); B computed at run time is packed per call. The
// AVX-512 set also has a vectorised FP32 softmax, used by Softmax and by
// LinearClassifier's SOFTMAX post transform.
//
// Conv lowers onto the same kernels (ops_conv*.go). A 1-D or 2-D
// convolution with constant weights is an implicit GEMM: the input is
// copied once into a zero-padded channels-last buffer split into its
// stride phases, in which the inputs under a kernel row's taps of
// consecutive output positions are overlapping rows of one matrix
// (sgemm.Kernels.Gemm accepts lda < k), so each kernel row and phase
// column is one product over a block of output rows by weights packed
// once at load, the bias and ReLU in the epilogue; the block is then
// stored to NCHW (with a fused Clip). A pointwise convolution multiplies
// the weights by the packed input planes; depthwise convolutions (one
// input channel per group) add each tap's weight times a shifted stride
// phase of the padded plane to the whole output plane
// (sgemm.Kernels.Axpy, vectorised); other shapes (3-D, weights computed
// at run time) write their im2col matrix straight into the packed panels
// (sgemm.Kernels.PackFill).
// ConvTranspose is a product followed by col2im. LSTM, GRU and RNN
// project every time step's input with one product and run one product
// per step for the whole batch (ops_rnn.go); Einsum contractions of two
// operands become batched products after permuting the operands.
// BenchmarkConvEfficiency reports ResNet-18's 3×3 convolutions as a share
// of the FMA peak, measured alternately as in BenchmarkSgemmEfficiency.
//
// Element-wise and shape operators are plain Go loops; compute is FP32 (the
// path that matters); shape operators and ArgMax use INT64, and Cast
// converts between all fixed-size numeric types.
//
// # Benchmarks
//
//	go test -run '^$' -bench 'MLP|Load' -benchtime 2s -count 3 ./backends/cpu/
//
// A product with constant weights and at least Options.SplitRows rows
// (default 16) is split into chunks of whole row strips, computed by the
// calling worker and idle helper goroutines of the Backend
// (sgemm.Splitter); the results are bit-identical to the unsplit
// driver's. BenchmarkMLP/split and /nosplit force it on and off. A
// product whose packed weights reach 4 MiB is split by columns instead,
// at any number of rows (below 64 rows when the weights are under 16 MiB,
// which L3 holds), so that each core streams its share of the weights
// once; such a Backend reports Metadata.Parallel, and a batcher runs its
// batches one at a time. BenchmarkWideMLP measures the per-row cost of
// 1024→H→H→16 MLPs (8.4 to 84 MB of weights) by batch size.
//
// BenchmarkMLP/batch=<n> runs digits-mlp through Infer on one worker
// (ns/op is the time of one call); BenchmarkLoad the rate at which model
// files become backends. testdata/compare.sh runs BenchmarkMLP and the
// same network in PyTorch on one thread (testdata/torch_mlp_bench.py) back
// to back. The SGEMM benchmarks (BenchmarkSgemm, BenchmarkFMAPeak,
// BenchmarkSgemmEfficiency) live in internal/sgemm.
package cpu
