package cpu

// opDef describes one operator: how many inputs and outputs it takes, the
// attributes it understands (any other is a load error, so that an
// attribute this engine ignores can never change a result) and its
// compile function.
type opDef struct {
	minIn, maxIn int
	maxOut       int
	attrs        []string
	compile      func(c *opCtx) (kernel, error)
}

// lookupOp returns the definition of an ai.onnx operator, or nil when the
// engine does not implement it.
func lookupOp(op string) *opDef {
	switch op {
	case "Add", "Sub", "Mul", "Div":
		return &opDef{2, 2, 1, []string{"axis", "broadcast"}, compileBinary}
	case "Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Neg", "Abs", "Erf":
		return &opDef{1, 1, 1, nil, compileUnary}
	case "LeakyRelu":
		return &opDef{1, 1, 1, []string{"alpha"}, compileUnary}
	case "Clip":
		return &opDef{1, 3, 1, []string{"min", "max"}, compileClip}
	case "Gemm":
		return &opDef{2, 3, 1, []string{"alpha", "beta", "broadcast", "transA", "transB"}, compileGemm}
	case "MatMul":
		return &opDef{2, 2, 1, nil, compileMatMul}
	case "Softmax", "LogSoftmax":
		return &opDef{1, 1, 1, []string{"axis"}, compileSoftmax}
	case "ArgMax", "ArgMin":
		return &opDef{1, 1, 1, []string{"axis", "keepdims", "select_last_index"}, compileArgMax}
	case "BatchNormalization":
		return &opDef{5, 5, 5, []string{"epsilon", "is_test", "momentum", "spatial", "training_mode"}, compileBatchNorm}
	case "Constant":
		return &opDef{0, 0, 1, []string{"value", "value_float", "value_floats", "value_int", "value_ints",
			"value_string", "value_strings", "sparse_value"}, compileConstant}
	case "Identity":
		return &opDef{1, 1, 1, nil, compileIdentity}
	case "Dropout":
		return &opDef{1, 3, 2, []string{"is_test", "ratio", "seed"}, compileDropout}
	case "Shape":
		return &opDef{1, 1, 1, []string{"start", "end"}, compileShape}
	case "Reshape":
		return &opDef{2, 2, 1, []string{"allowzero"}, compileReshape}
	case "Flatten":
		return &opDef{1, 1, 1, []string{"axis"}, compileFlatten}
	case "Squeeze":
		return &opDef{1, 2, 1, []string{"axes"}, compileSqueeze}
	case "Unsqueeze":
		return &opDef{1, 2, 1, []string{"axes"}, compileUnsqueeze}
	case "Concat":
		return &opDef{1, 1 << 16, 1, []string{"axis"}, compileConcat}
	case "Gather":
		return &opDef{2, 2, 1, []string{"axis"}, compileGather}
	case "Transpose":
		return &opDef{1, 1, 1, []string{"perm"}, compileTranspose}
	case "Slice":
		return &opDef{1, 5, 1, []string{"starts", "ends", "axes"}, compileSlice}
	case "Pow":
		return &opDef{2, 2, 1, nil, compilePow}
	case "Conv":
		return &opDef{2, 3, 1, []string{"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"}, compileConv}
	case "MaxPool":
		return &opDef{1, 1, 2, []string{"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"}, compilePool}
	case "AveragePool":
		return &opDef{1, 1, 1, []string{"auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "strides"}, compilePool}
	case "GlobalAveragePool", "GlobalMaxPool":
		return &opDef{1, 1, 1, nil, compileGlobalPool}
	case "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
		"ReduceSumSquare", "ReduceLogSumExp", "ReduceLogSum":
		return &opDef{1, 2, 1, []string{"axes", "keepdims", "noop_with_empty_axes"}, compileReduce}
	case "HardSigmoid":
		return &opDef{1, 1, 1, []string{"alpha", "beta"}, compileMoreUnary}
	case "Elu", "Celu", "ThresholdedRelu":
		return &opDef{1, 1, 1, []string{"alpha"}, compileMoreUnary}
	case "Selu":
		return &opDef{1, 1, 1, []string{"alpha", "gamma"}, compileMoreUnary}
	case "HardSwish", "Softplus", "Softsign", "Reciprocal", "Floor", "Ceil", "Round", "Sign":
		return &opDef{1, 1, 1, nil, compileMoreUnary}
	case "Gelu":
		return &opDef{1, 1, 1, []string{"approximate"}, compileMoreUnary}
	case "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual":
		return &opDef{2, 2, 1, nil, compileCompare}
	case "And", "Or", "Xor":
		return &opDef{2, 2, 1, nil, compileLogical}
	case "Not":
		return &opDef{1, 1, 1, nil, compileLogical}
	case "Where":
		return &opDef{3, 3, 1, nil, compileWhere}
	case "Sum", "Mean", "Min", "Max":
		return &opDef{1, 1 << 16, 1, nil, compileVariadic}
	case "PRelu":
		return &opDef{2, 2, 1, nil, compilePRelu}
	case "Expand":
		return &opDef{2, 2, 1, nil, compileExpand}
	case "Tile":
		return &opDef{2, 2, 1, nil, compileTile}
	case "ConstantOfShape":
		return &opDef{1, 1, 1, []string{"value"}, compileConstantOfShape}
	case "Range":
		return &opDef{3, 3, 1, nil, compileRange}
	case "Split":
		return &opDef{1, 2, 1 << 16, []string{"axis", "split", "num_outputs"}, compileSplit}
	case "Pad":
		return &opDef{1, 4, 1, []string{"mode", "pads", "value"}, compilePad}
	case "LayerNormalization":
		return &opDef{1, 3, 3, []string{"axis", "epsilon", "stash_type"}, compileLayerNorm}
	case "LSTM":
		return &opDef{3, 8, 3, []string{"activation_alpha", "activation_beta", "activations", "clip", "direction",
			"hidden_size", "input_forget", "layout"}, compileRNN}
	case "GRU":
		return &opDef{3, 6, 2, []string{"activation_alpha", "activation_beta", "activations", "clip", "direction",
			"hidden_size", "layout", "linear_before_reset"}, compileRNN}
	case "RNN":
		return &opDef{3, 6, 2, []string{"activation_alpha", "activation_beta", "activations", "clip", "direction",
			"hidden_size", "layout"}, compileRNN}
	case "ConvTranspose":
		return &opDef{2, 3, 1, []string{"auto_pad", "dilations", "group", "kernel_shape", "output_padding", "output_shape",
			"pads", "strides"}, compileConvTranspose}
	case "InstanceNormalization":
		return &opDef{3, 3, 1, []string{"epsilon"}, compileInstanceNorm}
	case "TopK":
		return &opDef{1, 2, 2, []string{"axis", "k", "largest", "sorted"}, compileTopK}
	case "CumSum":
		return &opDef{2, 2, 1, []string{"exclusive", "reverse"}, compileCumSum}
	case "Trilu":
		return &opDef{1, 2, 1, []string{"upper"}, compileTrilu}
	case "Resize":
		return &opDef{1, 4, 1, []string{"antialias", "axes", "coordinate_transformation_mode", "cubic_coeff_a",
			"exclude_outside", "extrapolation_value", "keep_aspect_ratio_policy", "mode", "nearest_mode"}, compileResize}
	case "Einsum":
		return &opDef{1, 1 << 16, 1, []string{"equation"}, compileEinsum}
	case "Cast":
		return &opDef{1, 1, 1, []string{"to", "saturate"}, compileCast}
	}
	return nil
}
