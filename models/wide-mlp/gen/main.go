// Command gen writes the wide-mlp example model: an untrained ReLU MLP
// whose FP32 weights are larger than the build machine's 32 MiB L3, so
// that one row costs a pass over weights streamed from memory, the case
// where batching pays most (see models/README.md and bench/widemlp.sh).
//
// The model is generated rather than committed (it is tens of MB): the
// weights come from a seeded PCG, so every run writes the same bytes.
// make build, run, test, bench and image run it when the file is absent:
//
//	go run ./models/wide-mlp/gen            # writes models/wide-mlp/1/model.onnx
//	go run ./models/wide-mlp/gen -golden    # also golden.json and examples/
//
// The golden outputs are computed by a float64 forward pass here, not by
// the engine under test, on seeded standard-normal rows.
package main

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// The architecture: Gemm(In→Hidden)+ReLU, Gemm(Hidden→Hidden)+ReLU,
// Gemm(Hidden→Out), then Softmax and ArgMax, as torch.onnx exports an
// nn.Sequential of Linear and ReLU with those heads.
const (
	In, Hidden, Out = 1024, 4096, 16
	seed            = 18 // the engine issue's number
	goldenRows      = 8
)

func main() {
	dir := flag.String("dir", "models/wide-mlp", "model directory: writes <dir>/1/model.onnx")
	golden := flag.Bool("golden", false, "also write <dir>/golden.json and <dir>/examples/")
	flag.Parse()
	if err := run(*dir, *golden); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(dir string, golden bool) error {
	m := newModel()
	if err := writeFile(filepath.Join(dir, "1", "model.onnx"), m.onnx()); err != nil {
		return err
	}
	if !golden {
		return nil
	}
	return writeGolden(dir, m)
}

// layer is one fully connected layer: w is [out][in] row-major (the
// Gemm's transB = 1 layout, as torch stores nn.Linear).
type layer struct {
	in, out int
	w, b    []float32
}

type model struct{ layers []layer }

// newModel draws the weights as PyTorch's default nn.Linear
// initialisation does: uniform in ±1/√fan_in, weights then bias.
func newModel() *model {
	r := rand.New(rand.NewPCG(seed, 0))
	var m model
	for _, s := range [][2]int{{In, Hidden}, {Hidden, Hidden}, {Hidden, Out}} {
		l := layer{in: s[0], out: s[1], w: make([]float32, s[0]*s[1]), b: make([]float32, s[1])}
		bound := 1 / math.Sqrt(float64(l.in))
		for i := range l.w {
			l.w[i] = float32((2*r.Float64() - 1) * bound)
		}
		for i := range l.b {
			l.b[i] = float32((2*r.Float64() - 1) * bound)
		}
		m.layers = append(m.layers, l)
	}
	return &m
}

// forward computes the logits of one row in float64.
func (m *model) forward(x []float32) []float64 {
	h := make([]float64, len(x))
	for i, v := range x {
		h[i] = float64(v)
	}
	for li, l := range m.layers {
		next := make([]float64, l.out)
		for o := range next {
			s := float64(l.b[o])
			w := l.w[o*l.in : (o+1)*l.in]
			for i, v := range h {
				s += float64(w[i]) * v
			}
			if li < len(m.layers)-1 {
				s = math.Max(s, 0)
			}
			next[o] = s
		}
		h = next
	}
	return h
}

// ONNX protobuf field numbers (onnx.proto).
const (
	typeFloat = 1
	typeInt64 = 7
)

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	return appendBytes(b, num, []byte(s))
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// tensorProto encodes an FP32 initializer with raw_data (little endian).
func tensorProto(name string, shape []int, v []float32) []byte {
	var dims []byte
	for _, d := range shape {
		dims = protowire.AppendVarint(dims, uint64(d))
	}
	b := appendBytes(nil, 1, dims)
	b = appendVarint(b, 2, typeFloat)
	b = appendString(b, 8, name)
	raw := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
	}
	return appendBytes(b, 9, raw)
}

// valueInfo encodes a ValueInfoProto of a tensor [batch, dims...].
func valueInfo(name string, elem uint64, dims ...int) []byte {
	shape := appendBytes(nil, 1, appendString(nil, 2, "batch"))
	for _, d := range dims {
		shape = appendBytes(shape, 1, appendVarint(nil, 1, uint64(d)))
	}
	tt := appendVarint(nil, 1, elem)
	tt = appendBytes(tt, 2, shape)
	return appendBytes(appendString(nil, 1, name), 2, appendBytes(nil, 1, tt))
}

func attrInt(name string, v int64) []byte {
	b := appendString(nil, 1, name)
	b = appendVarint(b, 20, 2) // AttributeProto.INT
	return appendVarint(b, 3, uint64(v))
}

func node(name, op string, ins, outs []string, attrs ...[]byte) []byte {
	var b []byte
	for _, s := range ins {
		b = appendString(b, 1, s)
	}
	for _, s := range outs {
		b = appendString(b, 2, s)
	}
	b = appendString(b, 3, name)
	b = appendString(b, 4, op)
	for _, a := range attrs {
		b = appendBytes(b, 5, a)
	}
	return b
}

// onnx encodes the model: IR version 8, opset 13, input "input"
// [batch, In], outputs logits, probabilities [batch, Out] and label
// [batch] (INT64).
func (m *model) onnx() []byte {
	var g []byte
	x := "input"
	for i := range m.layers {
		n := strconv.Itoa(i + 1)
		y := "logits"
		if i < len(m.layers)-1 {
			y = "fc" + n
		}
		g = appendBytes(g, 1, node("/fc"+n+"/Gemm", "Gemm", []string{x, "fc" + n + ".weight", "fc" + n + ".bias"}, []string{y}, attrInt("transB", 1)))
		if i < len(m.layers)-1 {
			g = appendBytes(g, 1, node("/relu"+n+"/Relu", "Relu", []string{y}, []string{"relu" + n}))
			y = "relu" + n
		}
		x = y
	}
	g = appendBytes(g, 1, node("/Softmax", "Softmax", []string{"logits"}, []string{"probabilities"}, attrInt("axis", 1)))
	g = appendBytes(g, 1, node("/ArgMax", "ArgMax", []string{"logits"}, []string{"label"}, attrInt("axis", 1), attrInt("keepdims", 0)))
	g = appendString(g, 2, "wide-mlp")
	for i, l := range m.layers {
		n := "fc" + strconv.Itoa(i+1)
		g = appendBytes(g, 5, tensorProto(n+".weight", []int{l.out, l.in}, l.w))
		g = appendBytes(g, 5, tensorProto(n+".bias", []int{l.out}, l.b))
	}
	g = appendBytes(g, 11, valueInfo("input", typeFloat, In))
	g = appendBytes(g, 12, valueInfo("logits", typeFloat, Out))
	g = appendBytes(g, 12, valueInfo("probabilities", typeFloat, Out))
	g = appendBytes(g, 12, valueInfo("label", typeInt64))
	b := appendVarint(nil, 1, 8) // ir_version
	b = appendString(b, 2, "coalesce models/wide-mlp/gen")
	b = appendBytes(b, 7, g)
	return appendBytes(b, 8, appendVarint(appendString(nil, 1, ""), 2, 13))
}

// writeFile writes b to path through a temporary file and a rename, so
// that a server watching the repository never loads half a model.
func writeFile(path string, b []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// writeGolden writes golden.json (the float64 reference's outputs on
// goldenRows seeded standard-normal rows) and the example requests of
// rows 0 and 1 with expected.json (row 0's answer). A row whose two
// largest logits are closer than 1e-4 is replaced by the next draw, so
// that the expected label does not hang on rounding.
func writeGolden(dir string, m *model) error {
	r := rand.New(rand.NewPCG(seed, 1))
	var xs [][]float32
	var logits, probs [][]float64
	var labels []int
	for len(xs) < goldenRows {
		x := make([]float32, In)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		z := m.forward(x)
		best, second := -1, -1
		for i := range z {
			switch {
			case best < 0 || z[i] > z[best]:
				best, second = i, best
			case second < 0 || z[i] > z[second]:
				second = i
			}
		}
		if z[best]-z[second] < 1e-4 {
			continue
		}
		p := softmax(z)
		xs, logits, probs, labels = append(xs, x), append(logits, z), append(probs, p), append(labels, best)
	}
	var in, lo, pr, la []byte
	for i := range xs {
		in = appendFloats(in, xs[i], i > 0)
		lo = appendFloat64s(lo, logits[i], i > 0)
		pr = appendFloat64s(pr, probs[i], i > 0)
		if i > 0 {
			la = append(la, ", "...)
		}
		la = strconv.AppendInt(la, int64(labels[i]), 10)
	}
	n := strconv.Itoa(len(xs))
	tensor := func(dt, shape string, data []byte) string {
		return `{"datatype": "` + dt + `", "shape": [` + shape + `], "data": [` + string(data) + `]}`
	}
	gold := `{"framework": "float64 reference (models/wide-mlp/gen)", "model": "wide-mlp", "version": "1", ` +
		`"inputs": {"input": ` + tensor("FP32", n+", "+strconv.Itoa(In), in) + `}, ` +
		`"outputs": {"logits": ` + tensor("FP32", n+", "+strconv.Itoa(Out), lo) +
		`, "probabilities": ` + tensor("FP32", n+", "+strconv.Itoa(Out), pr) +
		`, "label": ` + tensor("INT64", n, la) + "}}\n"
	row0, row1 := string(appendFloats(nil, xs[0], false)), string(appendFloats(nil, xs[1], false))
	files := map[string]string{
		"golden.json":                 gold,
		"examples/predict.json":       `{"features": [` + row0 + "]}\n",
		"examples/predict-batch.json": `{"features": [[` + row0 + "], [" + row1 + "]]}\n",
		"examples/v2.json":            `{"id": "example-1", "inputs": [{"name": "input", "shape": [1, ` + strconv.Itoa(In) + `], "datatype": "FP32", "data": [` + row0 + "]}]}\n",
		"examples/tfs.json":           `{"instances": [[` + row0 + "]]}\n",
		"examples/expected.json":      `{"label": ` + strconv.Itoa(labels[0]) + `, "probabilities": [` + string(appendFloat64s(nil, probs[0], false)) + "]}\n",
	}
	for name, s := range files {
		if err := writeFile(filepath.Join(dir, name), []byte(s)); err != nil {
			return err
		}
	}
	return nil
}

func softmax(z []float64) []float64 {
	hi := math.Inf(-1)
	for _, v := range z {
		hi = math.Max(hi, v)
	}
	p := make([]float64, len(z))
	var s float64
	for i, v := range z {
		p[i] = math.Exp(v - hi)
		s += p[i]
	}
	for i := range p {
		p[i] /= s
	}
	return p
}

// appendFloats appends vs as the shortest decimals that read back as the
// same float32, comma separated (preceded by one when more is true).
func appendFloats(b []byte, vs []float32, more bool) []byte {
	for i, v := range vs {
		if more || i > 0 {
			b = append(b, ", "...)
		}
		b = strconv.AppendFloat(b, float64(v), 'g', -1, 32)
	}
	return b
}

// appendFloat64s appends vs rounded to float32, as appendFloats does.
func appendFloat64s(b []byte, vs []float64, more bool) []byte {
	for i, v := range vs {
		if more || i > 0 {
			b = append(b, ", "...)
		}
		b = strconv.AppendFloat(b, float64(float32(v)), 'g', -1, 32)
	}
	return b
}
