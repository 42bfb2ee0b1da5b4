package cpu

import (
	"fmt"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/backends/cpu/forest"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/tensor"
)

// Native tree models (XGBoost JSON, LightGBM text) are served without a
// conversion step: the file is read into a forest.Ensemble and wrapped in a
// one-node graph, so that they run on the same workers, arenas and plans
// as ONNX models.
//
// A native model has one input, rows of features ([N, F], FP32 or FP64),
// and, for a classifier, the outputs "label" (INT64 [N], the class index),
// "probabilities" (FP32 [N, classes]) and "margin" (FP32, the raw scores
// before the objective's transform: [N] for a binary classifier, [N,
// classes] otherwise); for a regressor "prediction" and "margin" (FP32 [N],
// or [N, targets]).

// NativeIO says how a native model is served: its input's name and
// datatype and which outputs, in order (all of them when empty).
type NativeIO struct {
	Input   string
	DType   tensor.DataType // FP32 (default) or FP64
	Outputs []string
	// Features, when non-zero, must equal the model's feature count.
	Features int
}

// nativeOutputs lists the outputs a model can serve.
func nativeOutputs(m *forest.Ensemble) []string {
	if m.Classes > 0 {
		return []string{"label", "probabilities", "margin"}
	}
	return []string{"prediction", "margin"}
}

// NewNative serves a tree model read from a native format.
func NewNative(m *forest.Ensemble, io NativeIO, opts Options) (be *Backend, err error) {
	defer func() {
		if r := recover(); r != nil {
			be, err = nil, fmt.Errorf("cpu: BUG: panic while loading: %v", r)
		}
	}()
	f := m.Forest
	if io.Input == "" {
		io.Input = "input"
	}
	if io.DType == tensor.Invalid {
		io.DType = tensor.FP32
	}
	if io.DType != tensor.FP32 && io.DType != tensor.FP64 {
		return nil, fmt.Errorf("cpu: input %q: datatype %s; want FP32 or FP64", io.Input, io.DType)
	}
	if io.Features != 0 && io.Features != f.NumFeatures() {
		return nil, fmt.Errorf("cpu: input %q has %d features in the configuration; the model has %d", io.Input, io.Features, f.NumFeatures())
	}
	avail := nativeOutputs(m)
	if len(io.Outputs) == 0 {
		io.Outputs = avail
	}
	kinds := make([]int, len(io.Outputs))
	seen := map[string]bool{}
	for i, o := range io.Outputs {
		kinds[i] = -1
		for k, a := range avail {
			if o == a {
				kinds[i] = k
			}
		}
		if kinds[i] < 0 {
			return nil, fmt.Errorf("cpu: output %q: want one of %v for this %s model", o, avail, m.Objective)
		}
		if seen[o] {
			return nil, fmt.Errorf("cpu: output %q listed twice", o)
		}
		seen[o] = true
	}
	g := &graph{opset: maxOpset}
	g.names = append(g.names, io.Input)
	g.consts = append(g.consts, nil)
	g.inputs = []graphInput{{id: 0, spec: backends.TensorSpec{Name: io.Input, DType: io.DType, Shape: []int64{-1, int64(f.NumFeatures())}, Missing: true}}}
	nk := &nativeKernel{m: m, kinds: kinds, dt: io.DType}
	n := &node{name: "native", op: "TreeModel", in: []int{0},
		def: &opDef{minIn: 1, maxIn: 1, maxOut: len(io.Outputs), compile: nk.compile}}
	for _, o := range io.Outputs {
		id := len(g.names)
		g.names = append(g.names, o)
		g.consts = append(g.consts, nil)
		n.out = append(n.out, id)
		g.outputs = append(g.outputs, graphOutput{id: id, declared: &onnx.ValueInfo{Name: o}})
	}
	g.nodes = []*node{n}
	platform := "xgboost_json"
	if len(m.Framework) >= 8 && m.Framework[:8] == "lightgbm" {
		platform = "lightgbm_text"
	}
	be, err = newBackend(g, opts, platform)
	if err != nil {
		return nil, err
	}
	be.meta.Info["framework"] = m.Framework
	be.meta.Info["objective"] = m.Objective
	be.meta.Info["trees"] = fmt.Sprint(f.NumTrees())
	return be, nil
}

// nativeKernel computes a native model's outputs.
type nativeKernel struct {
	m     *forest.Ensemble
	kinds []int // per output: index into nativeOutputs
	dt    tensor.DataType
}

const (
	outLabel      = 0 // classifier
	outProbs      = 1
	outMargin     = 2
	outPrediction = 0 // regressor
	outRegMargin  = 1
)

func (k *nativeKernel) compile(c *opCtx) (kernel, error) {
	x := c.input(0)
	f := k.m.Forest
	if len(x.shape) != 2 || x.shape[1] != int64(f.NumFeatures()) {
		return nil, invalidf("input has shape %v; want [N, %d]", x.shape, f.NumFeatures())
	}
	n := x.shape[0]
	nt := int64(f.NumTargets())
	classes := int64(k.m.Classes)
	for i, kind := range k.kinds {
		switch {
		case classes > 0 && kind == outLabel:
			c.setOut(i, tensor.Int64, []int64{n})
		case classes > 0 && kind == outProbs:
			c.setOut(i, tensor.FP32, []int64{n, classes})
		case nt == 1:
			c.setOut(i, tensor.FP32, []int64{n})
		default:
			c.setOut(i, tensor.FP32, []int64{n, nt})
		}
	}
	marginOut, probOut, labelOut, predOut := -1, -1, -1, -1
	for i, kind := range k.kinds {
		switch {
		case classes > 0 && kind == outLabel:
			labelOut = i
		case classes > 0 && kind == outProbs:
			probOut = i
		case classes > 0 && kind == outMargin, classes == 0 && kind == outRegMargin:
			marginOut = i
		default:
			predOut = i
		}
	}
	rows, targets := int(n), int(nt)
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		var margin []float32
		if marginOut >= 0 {
			margin = viewAs[float32](out[marginOut].Data)
		} else {
			p := scorePool(rows * targets)
			defer scorePut(p)
			margin = *p
		}
		if k.dt == tensor.FP64 {
			f.Predict64(viewAs[float64](in[0].Data), rows, margin)
		} else {
			f.Predict(viewAs[float32](in[0].Data), rows, margin)
		}
		if classes == 0 {
			if predOut >= 0 {
				y := viewAs[float32](out[predOut].Data)
				copy(y, margin)
				for r := range rows {
					k.m.Transform.Apply(y[r*targets:r*targets+targets], k.m.Scale)
				}
			}
			return nil
		}
		var probs []float32
		if probOut >= 0 {
			probs = viewAs[float32](out[probOut].Data)
		}
		var labels []int64
		if labelOut >= 0 {
			labels = viewAs[int64](out[labelOut].Data)
		}
		cl := int(classes)
		for r := range rows {
			if targets == 1 { // binary: one margin, the positive class's
				var p [1]float32
				p[0] = margin[r]
				k.m.Transform.Apply(p[:], k.m.Scale)
				if probs != nil {
					probs[2*r], probs[2*r+1] = 1-p[0], p[0]
				}
				if labels != nil {
					positive := margin[r] > 0 // logitraw and hinge-like objectives
					if k.m.Transform == forest.Sigmoid {
						positive = p[0] > 0.5
					}
					labels[r] = int64(boolIndex(positive))
				}
				continue
			}
			row := margin[r*cl : r*cl+cl]
			if labels != nil {
				best := 0
				for j, v := range row {
					if v > row[best] {
						best = j
					}
				}
				labels[r] = int64(best)
			}
			if probs != nil {
				pr := probs[r*cl : r*cl+cl]
				copy(pr, row)
				k.m.Transform.Apply(pr, k.m.Scale)
			}
		}
		return nil
	}), nil
}
