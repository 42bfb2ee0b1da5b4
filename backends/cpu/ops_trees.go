package cpu

// lookupTreeOp returns the definition of an ai.onnx.ml tree-ensemble
// operator (TreeEnsembleClassifier, TreeEnsembleRegressor), or nil.
func lookupTreeOp(op string) *opDef {
	return nil
}
