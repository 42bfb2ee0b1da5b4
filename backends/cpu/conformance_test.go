package cpu

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx/onnxtest"
	"github.com/coalesce-ml/coalesce/tensor"
)

// onnxNodeTests is where Debian's libonnx-testdata package (ONNX 1.12's
// backend test data) puts the node tests: one directory per case, holding
// model.onnx and test_data_set_*/{input,output}_<i>.pb TensorProtos. It
// has no ai.onnx.ml cases (ONNX 1.12 shipped none), so the ONNX-ML
// operators are tested in ops_ml_test.go against hand-computed values,
// float64 references and onnxruntime's own unit-test numbers.
const onnxTestData = "/usr/share/libonnx-testdata/data"

// conformanceSuites are the suites of libonnx-testdata the conformance
// test runs: node (one operator per case), pytorch-converted (torch.nn
// modules exported by torch.onnx), pytorch-operator (torch functions)
// and simple (small multi-node graphs). The package's "real" suite holds
// only download links (data.json), no models.
var conformanceSuites = []string{"node", "pytorch-converted", "pytorch-operator", "simple"}

const noTestdata = "libonnx-testdata not installed: apt-get install -y libonnx-testdata"

// caseResult is the outcome of one conformance case.
type caseResult struct {
	op     string // the operator under test
	status string // "pass", "fail", "skip", or "" for a case using an operator the engine lacks
	detail string // why it failed or was skipped
}

// TestONNXNodeConformance runs every test case of the conformance suites
// whose operators the engine implements, and logs passed/failed/skipped
// counts per operator and the number of cases per suite that use an
// operator the engine lacks. A case is skipped only when the engine rejects it at load time
// with ErrUnsupported (a clear error for a feature it lacks, e.g. a
// datatype); a load failure of any other kind or a wrong answer fails.
func TestONNXNodeConformance(t *testing.T) {
	dirs := conformanceCases(t)
	type counts struct {
		pass, fail, skip int
		reasons          map[string]int
	}
	byOp := map[string]*counts{}
	type suiteCounts struct{ pass, fail, skip, unimplemented int }
	bySuite := map[string]*suiteCounts{}
	for _, dir := range dirs {
		var res caseResult
		suite := filepath.Base(filepath.Dir(dir))
		sc := bySuite[suite]
		if sc == nil {
			sc = &suiteCounts{}
			bySuite[suite] = sc
		}
		t.Run(suite+"/"+filepath.Base(dir), func(t *testing.T) {
			res = runConformanceCase(dir)
			switch res.status {
			case "":
				t.Skipf("uses an operator the engine does not implement: %s", res.detail)
			case "skip":
				t.Skipf("%s: %s", res.op, res.detail)
			case "fail":
				t.Errorf("%s: %s", res.op, res.detail)
			}
		})
		switch res.status {
		case "":
			sc.unimplemented++
			continue
		case "pass":
			sc.pass++
		case "fail":
			sc.fail++
		case "skip":
			sc.skip++
		}
		c := byOp[res.op]
		if c == nil {
			c = &counts{reasons: map[string]int{}}
			byOp[res.op] = c
		}
		switch res.status {
		case "pass":
			c.pass++
		case "fail":
			c.fail++
		case "skip":
			c.skip++
			c.reasons[res.detail]++
		}
	}
	ops := make([]string, 0, len(byOp))
	for op := range byOp {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	for _, op := range ops {
		c := byOp[op]
		line := fmt.Sprintf("%-20s passed %3d  failed %3d  skipped %3d", op, c.pass, c.fail, c.skip)
		for r, n := range c.reasons {
			line += fmt.Sprintf("\n%22s %d× %s", "", n, r)
		}
		t.Log(line)
	}
	for _, suite := range conformanceSuites {
		if c := bySuite[suite]; c != nil {
			t.Logf("suite %-18s passed %3d  failed %3d  refused at load %3d  using an unimplemented operator %3d",
				suite, c.pass, c.fail, c.skip, c.unimplemented)
		}
	}
}

// conformanceRequired are the operators of issues 5 and 18 that must have
// at least one passing conformance case. Every one of them has cases in ONNX 1.12's
// node tests.
var conformanceRequired = []string{
	"Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "Sigmoid", "Tanh",
	"Softmax", "LogSoftmax", "Flatten", "Reshape", "Identity", "Cast", "ArgMax", "Squeeze",
	"Unsqueeze", "Concat", "Shape", "Gather", "Slice", "BatchNormalization", "Clip", "Exp",
	"Log", "Sqrt", "Pow", "Neg", "Abs", "Erf", "Dropout", "Constant", "Transpose",
	// issue 18
	// (GlobalAveragePool, GlobalMaxPool and Not have opset 1 cases only:
	// ops_pool_test.go covers them.)
	"Conv", "ConvTranspose", "MaxPool", "AveragePool",
	"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
	"ReduceSumSquare", "ReduceLogSumExp", "LayerNormalization", "InstanceNormalization",
	"Where", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or",
	"Expand", "Tile", "ConstantOfShape", "Range", "Split", "Pad", "Resize", "HardSigmoid",
	"HardSwish", "Elu", "Selu", "PRelu", "Softplus", "Min", "Max", "Sum", "Mean", "Reciprocal",
	"Floor", "Ceil", "Round", "Sign", "TopK", "CumSum", "Trilu", "Einsum", "LSTM", "GRU", "RNN",
}

// TestONNXNodeConformanceCoverage checks that each required operator
// passed at least one conformance case.
func TestONNXNodeConformanceCoverage(t *testing.T) {
	passed := map[string]int{}
	for _, dir := range conformanceCases(t) {
		if res := runConformanceCase(dir); res.status == "pass" {
			passed[res.op]++
		}
	}
	for _, op := range conformanceRequired {
		if lookupOp(op) == nil {
			t.Errorf("%s: required operator has no kernel (lookupOp returned nil)", op)
			continue
		}
		if passed[op] == 0 {
			t.Errorf("%s: no conformance case passed", op)
		}
	}
}

// conformanceCases returns the test case directories of every suite,
// skipping the test when the package is not installed.
func conformanceCases(t *testing.T) []string {
	t.Helper()
	var all []string
	for _, suite := range conformanceSuites {
		dirs, err := filepath.Glob(filepath.Join(onnxTestData, suite, "test_*"))
		if err != nil || len(dirs) == 0 {
			t.Skip(noTestdata)
		}
		sort.Strings(dirs)
		all = append(all, dirs...)
	}
	return all
}

// runConformanceCase loads one case's model and runs it on every test data
// set.
func runConformanceCase(dir string) caseResult {
	model, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
	if err != nil {
		return caseResult{op: "?", status: "fail", detail: err.Error()}
	}
	m, err := onnx.Decode(model)
	if err != nil {
		return caseResult{op: "?", status: "fail", detail: "decode: " + err.Error()}
	}
	res := caseResult{op: caseOp(filepath.Base(dir), m)}
	for _, n := range m.Graph.Nodes {
		if (n.Domain != "" && n.Domain != "ai.onnx") || lookupOp(n.OpType) == nil {
			res.detail = n.Domain + n.OpType
			return res // not counted
		}
	}
	sets, _ := filepath.Glob(filepath.Join(dir, "test_data_set_*"))
	if len(sets) == 0 {
		res.status, res.detail = "fail", "no test_data_set"
		return res
	}
	for _, set := range sets {
		res.status, res.detail = runDataSet(model, m, set)
		if res.status != "pass" {
			return res
		}
	}
	return res
}

// caseOp names the operator a case tests: the node whose lower-cased
// type the directory name starts with (test_logsoftmax_axis_0 tests
// LogSoftmax), else the first node that is not a Constant.
func caseOp(dir string, m *onnx.Model) string {
	name := strings.ReplaceAll(strings.TrimPrefix(dir, "test_"), "_", "")
	best := ""
	for _, n := range m.Graph.Nodes {
		lower := strings.ToLower(n.OpType)
		if lower == "batchnormalization" {
			lower = "batchnorm"
		}
		if strings.HasPrefix(name, lower) && len(n.OpType) > len(best) {
			best = n.OpType
		}
	}
	if best != "" {
		return best
	}
	for _, n := range m.Graph.Nodes {
		if n.OpType != "Constant" {
			return n.OpType
		}
	}
	if len(m.Graph.Nodes) > 0 {
		return m.Graph.Nodes[0].OpType
	}
	return "?"
}

// runDataSet runs one test_data_set directory and compares the outputs.
func runDataSet(model []byte, m *onnx.Model, set string) (status, detail string) {
	be, err := LoadBytes(model, Options{Concurrency: 1})
	constErr := err != nil && errors.Is(err, ErrUnsupported) && strings.Contains(err.Error(), "must be a constant")
	if err != nil && !constErr {
		return skipOrFail(fmt.Errorf("load: %w", err))
	}
	// The graph inputs with data are the declared ones that are not
	// initializers, in order.
	inits := map[string]bool{}
	for _, it := range m.Graph.Initializers {
		inits[it.Name] = true
	}
	var decl []*onnx.ValueInfo
	for _, vi := range m.Graph.Inputs {
		if !inits[vi.Name] {
			decl = append(decl, vi)
		}
	}
	var inputs []*tensor.Tensor
	var inputPBs [][]byte
	for i := 0; ; i++ {
		b, err := os.ReadFile(filepath.Join(set, fmt.Sprintf("input_%d.pb", i)))
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return "fail", err.Error()
		}
		x, err := decodePB(b)
		if err != nil {
			return "fail", fmt.Sprintf("input_%d.pb: %v", i, err)
		}
		if i >= len(decl) {
			return "fail", fmt.Sprintf("more input files than the %d graph inputs", len(decl))
		}
		bf16Quirk(x, decl[i])
		inputs, inputPBs = append(inputs, x), append(inputPBs, b)
	}
	if constErr {
		// The engine needs shape-deciding and mode inputs (Reshape's shape,
		// Slice's starts, Unsqueeze's axes, Dropout's training_mode, ...)
		// at load time, as an exporter provides them. The node tests feed
		// them as graph inputs, so embed the integer, bool and scalar
		// inputs as initializers and load again (ConstantOfShape and
		// Range take them first).
		var embedded []int
		orig := model
		model, embedded = embedConstInputs(orig, decl, inputs, inputPBs, false)
		be, err = LoadBytes(model, Options{Concurrency: 1})
		if err != nil && strings.Contains(err.Error(), "must be a constant") {
			// Float parameters too (a recurrent layer's W, R and B,
			// Resize's scales and roi): embed every input after the first.
			model, embedded = embedConstInputs(orig, decl, inputs, inputPBs, true)
			be, err = LoadBytes(model, Options{Concurrency: 1})
		}
		if err != nil {
			return skipOrFail(fmt.Errorf("load: %w", err))
		}
		for k := len(embedded) - 1; k >= 0; k-- {
			inputs = slices.Delete(inputs, embedded[k], embedded[k]+1)
		}
	}
	defer be.Close()
	for i, spec := range be.Metadata().Inputs {
		if i < len(inputs) && !shapeFits(inputs[i].Shape, spec.Shape) {
			// test_castlike_*BFLOAT16*_expanded feed "like" as [1]
			// where the model declares [3, 4]; the engine rightly refuses.
			return "skip", fmt.Sprintf("test data: input %q has shape %v, the model declares %v", spec.Name, inputs[i].Shape, spec.Shape)
		}
	}
	outs, err := be.Infer(context.Background(), inputs)
	if err != nil {
		return "fail", "infer: " + err.Error()
	}
	// Every expected output must be there: walk the output files, not the
	// outputs the engine returned.
	i := 0
	for ; ; i++ {
		b, err := os.ReadFile(filepath.Join(set, fmt.Sprintf("output_%d.pb", i)))
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return "fail", err.Error()
		}
		if i >= len(outs) {
			return "fail", fmt.Sprintf("output %d missing: the engine returned %d outputs", i, len(outs))
		}
		want, err := decodePB(b)
		if err != nil {
			return "fail", fmt.Sprintf("output_%d.pb: %v", i, err)
		}
		if i < len(m.Graph.Outputs) {
			bf16Quirk(want, m.Graph.Outputs[i])
		}
		if msg := compareConformance(outs[i], want); msg != "" {
			return "fail", fmt.Sprintf("output %d: %s", i, msg)
		}
	}
	if i == 0 || i < len(outs) {
		return "fail", fmt.Sprintf("the engine returned %d outputs, the test data has %d", len(outs), i)
	}
	return "pass", ""
}

// shapeFits reports whether shape matches the declared one (-1: any).
func shapeFits(shape, decl []int64) bool {
	if len(shape) != len(decl) {
		return false
	}
	for d := range decl {
		if decl[d] >= 0 && shape[d] != decl[d] {
			return false
		}
	}
	return true
}

// bf16Quirk relabels x as BF16 when the value is declared BF16 but the
// test data stores it as UINT16: ONNX 1.12 wrote bfloat16 test data
// through numpy, which has no bfloat16, as the raw 16-bit patterns.
func bf16Quirk(x *tensor.Tensor, vi *onnx.ValueInfo) {
	if x.DType == tensor.Uint16 && vi.TensorType && vi.ElemType == onnx.TypeBfloat16 {
		x.DType = tensor.BF16
	}
}

// skipOrFail turns a load error into a skip when it is a clear
// ErrUnsupported and a failure otherwise. The reason is the error's last
// part, so that counts group by cause.
func skipOrFail(err error) (string, string) {
	if errors.Is(err, ErrUnsupported) {
		msg := err.Error()
		if i := strings.Index(msg, "unsupported"); i >= 0 {
			msg = msg[i:]
		}
		return "skip", msg
	}
	return "fail", err.Error()
}

// decodePB decodes a serialized TensorProto.
func decodePB(b []byte) (*tensor.Tensor, error) {
	ot, err := onnx.DecodeTensor(b)
	if err != nil {
		return nil, err
	}
	return ot.ToTensor()
}

// embedConstInputs returns model with the graph inputs that are INT32,
// INT64 or BOOL, or scalars (with weights, every input after the first),
// turned into initializers
// holding their test data, and the positions it embedded.
func embedConstInputs(model []byte, decl []*onnx.ValueInfo, inputs []*tensor.Tensor, pbs [][]byte, weights bool) ([]byte, []int) {
	var extra []byte
	var embedded []int
	for i := range inputs {
		dt := inputs[i].DType
		if dt == tensor.Int64 || dt == tensor.Int32 || dt == tensor.Bool || inputs[i].Len() == 1 || i > 0 && weights {
			tp := onnxtest.AppendString(slices.Clone(pbs[i]), 8, decl[i].Name) // the last name wins
			extra = onnxtest.AppendBytes(extra, 5, tp)
			embedded = append(embedded, i)
		}
	}
	var out []byte
	for b := model; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return model, nil
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return model, nil
		}
		if num == 7 && typ == protowire.BytesType { // ModelProto.graph
			g, _ := protowire.ConsumeBytes(b[n:])
			out = onnxtest.AppendBytes(out, 7, append(slices.Clone(g), extra...))
		} else {
			out = append(out, b[:n+m]...)
		}
		b = b[n+m:]
	}
	return out, embedded
}

// compareConformance compares an output with the expected tensor: floats
// within 1e-5 + 1e-5·|want| (NaN matches NaN), everything else exactly.
func compareConformance(got, want *tensor.Tensor) string {
	if got.DType != want.DType {
		return fmt.Sprintf("datatype %s, want %s", got.DType, want.DType)
	}
	if !sameShape(got.Shape, want.Shape) {
		return fmt.Sprintf("shape %v, want %v", got.Shape, want.Shape)
	}
	for i := range want.Len() {
		g, w := got.Float64At(i), want.Float64At(i)
		if want.DType.IsFloat() {
			tol := 1e-5 + 1e-5*math.Abs(w)
			if want.DType == tensor.FP16 || want.DType == tensor.BF16 {
				tol = 1e-2 + 1e-2*math.Abs(w)
			}
			if math.IsNaN(w) && math.IsNaN(g) || g == w {
				continue
			}
			if math.IsNaN(g) || math.IsNaN(w) || !(math.Abs(g-w) <= tol) {
				return fmt.Sprintf("[%d] (%v) = %v, want %v", i, unravel(i, want.Shape), g, w)
			}
			continue
		}
		if g != w {
			return fmt.Sprintf("[%d] (%v) = %v, want %v", i, unravel(i, want.Shape), g, w)
		}
	}
	return ""
}
