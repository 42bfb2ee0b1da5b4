package codec

import (
	"encoding/binary"
	"math"
	"strconv"
	"time"

	"github.com/coalesce-ml/coalesce/proto/inferencepb"
	"github.com/coalesce-ml/coalesce/tensor"
)

// ProtoGRPC names the KServe V2 gRPC protocol (proto/grpc_predict_v2.proto)
// in metrics.
const ProtoGRPC = "grpc"

// KServe V2 / Open Inference Protocol over gRPC (reference/protocols.md §1,
// proto/grpc_predict_v2.proto). A tensor's data comes either typed, in its
// InferTensorContents field of the datatype (FP16 and BF16 have none), or
// raw in raw_input_contents, one little-endian row-major blob per input in
// input order (BYTES elements each behind a 4-byte little-endian length, as
// in the REST binary extension); never both in one request. Outputs come
// back raw, in raw_output_contents, when the request was raw, when it sets
// parameters binary_data_output or an output's binary_data (the REST
// extension's names), or when an output is FP16 or BF16; else typed.
// Decoding and encoding share the REST codec's checks and messages, with
// the fields named as in the proto.

// DecodeGRPC decodes m, a request for r.Model, into r like Codec.Decode:
// the inputs in the model's order with the declared datatypes, the
// parameters timeout (µs) and priority, and the output selection. m's
// model_name and model_version were resolved by the caller. The tensors
// are copies: m may be reused once DecodeGRPC returns. It fails only with
// *Error.
func DecodeGRPC(r *Request, m *inferencepb.ModelInferRequest) error {
	if id := m.GetId(); id != "" {
		r.id, r.hasID = id, true
	}
	for k, p := range m.GetParameters() {
		switch k {
		case "timeout":
			us, ok := p.GetParameterChoice().(*inferencepb.InferParameter_Int64Param)
			if !ok || us.Int64Param < 0 {
				return badRequest("parameters[\"timeout\"]: want int64_param, a non-negative number of microseconds")
			}
			r.Timeout = time.Duration(min(us.Int64Param, int64(time.Hour/time.Microsecond))) * time.Microsecond
		case "priority":
			pr, ok := p.GetParameterChoice().(*inferencepb.InferParameter_Int64Param)
			if !ok || pr.Int64Param < 0 || pr.Int64Param > 1<<16 {
				return badRequest("parameters[\"priority\"]: want int64_param, a priority level, 1 = highest (0 = the default)")
			}
			r.Priority = int(pr.Int64Param)
		case "binary_data_output":
			b, ok := p.GetParameterChoice().(*inferencepb.InferParameter_BoolParam)
			if !ok {
				return badRequest("parameters[\"binary_data_output\"]: want bool_param")
			}
			r.binaryAll = b.BoolParam
		}
	}
	ins, raw := m.GetInputs(), m.GetRawInputContents()
	if len(ins) == 0 {
		return badRequest("inputs: empty; want at least one input tensor")
	}
	if len(raw) > 0 {
		if len(raw) != len(ins) {
			return badRequest("raw_input_contents: %d blobs for %d inputs; want one per input, in input order", len(raw), len(ins))
		}
		r.raw = true
	}
	for i, in := range ins {
		var blob []byte
		if r.raw {
			blob = raw[i]
		}
		t, err := decodeGRPCInput(r, in, blob, i)
		if err != nil {
			return err
		}
		if _, dup := r.byName[t.Name]; dup {
			return badRequest("inputs[%d].name: input %q appears twice; want each input once", i, Truncate(t.Name))
		}
		r.byName[t.Name] = t
	}
	if err := r.setInputs(r.byName, "inputs"); err != nil {
		return err
	}
	return decodeGRPCOutputs(r, m.GetOutputs())
}

// decodeGRPCInput decodes input i, its data from blob when the request is
// raw.
func decodeGRPCInput(r *Request, in *inferencepb.ModelInferRequest_InferInputTensor, blob []byte, i int) (*tensor.Tensor, error) {
	names := v2InputNames(i)
	field := names.field
	m, lim := r.Model, r.Limits
	name := in.GetName()
	idx := m.Meta.Input(name)
	if idx >= 0 {
		name = m.Meta.Inputs[idx].Name // the spec's string: the message's may go
	}
	dt, ok := tensor.ParseDataType(in.GetDatatype())
	if !ok {
		return nil, badRequest("%s.datatype: %q is not a datatype; want one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BF16, BYTES", field, Truncate(in.GetDatatype()))
	}
	if idx >= 0 {
		if sp := m.Meta.Inputs[idx]; (dt == tensor.Bytes) != (sp.DType == tensor.Bytes) {
			return nil, badRequest("%s.datatype: %s, but input %q of model %s is %s; want datatype %s", field, dt, name, m.Name, sp.DType, sp.DType)
		}
	}
	if len(in.GetShape()) > maxDims {
		return nil, badRequest("%s.shape: %d dimensions; want at most %d", field, len(in.GetShape()), maxDims)
	}
	shape := append([]int64(nil), in.GetShape()...)
	n, err := checkElements(names.shape, shape, lim)
	if err != nil {
		return nil, err
	}
	t := &tensor.Tensor{Name: name, DType: dt, Shape: shape}
	missing := idx >= 0 && m.Meta.Inputs[idx].Missing
	if r.raw {
		if in.GetContents() != nil {
			return nil, badRequest("%s.contents: set in a request with raw_input_contents; want one of them for every input", field)
		}
		if dt == tensor.Bytes {
			if err := checkStrings(blob, n, "raw_input_contents["+strconv.Itoa(i)+"]", shape); err != nil {
				return nil, err
			}
			t.Data = append(make([]byte, 0, len(blob)), blob...)
			return t, nil
		}
		if want := n * dt.Size(); len(blob) != want {
			return nil, badRequest("raw_input_contents[%d]: %d bytes; want %d (shape %v of %s)", i, len(blob), want, shape, dt)
		}
		t.Data = tensor.Alloc(len(blob))
		copy(t.Data, blob)
		return t, checkFinite(t, field, lim, missing)
	}
	if err := fillContents(t, in.GetContents(), n, names.data); err != nil {
		return nil, err
	}
	return t, checkFinite(t, field, lim, missing)
}

// fillContents fills t, of n elements, from the typed contents field of
// its datatype; field names the contents in errors. Nothing is allocated
// before the field is known to hold n values: a small message cannot make
// the server allocate a large tensor.
func fillContents(t *tensor.Tensor, c *inferencepb.InferTensorContents, n int, field string) error {
	field = field[:len(field)-len("data")] + "contents"
	var got int
	var name string
	switch t.DType {
	case tensor.Bool:
		got, name = len(c.GetBoolContents()), "bool_contents"
	case tensor.Int8, tensor.Int16, tensor.Int32:
		got, name = len(c.GetIntContents()), "int_contents"
	case tensor.Uint8, tensor.Uint16, tensor.Uint32:
		got, name = len(c.GetUintContents()), "uint_contents"
	case tensor.Int64:
		got, name = len(c.GetInt64Contents()), "int64_contents"
	case tensor.Uint64:
		got, name = len(c.GetUint64Contents()), "uint64_contents"
	case tensor.FP32:
		got, name = len(c.GetFp32Contents()), "fp32_contents"
	case tensor.FP64:
		got, name = len(c.GetFp64Contents()), "fp64_contents"
	case tensor.Bytes:
		got, name = len(c.GetBytesContents()), "bytes_contents"
	default: // FP16, BF16
		return badRequest("%s: datatype %s has no typed contents; want raw_input_contents", field, t.DType)
	}
	if got != n {
		return badRequest("%s.%s: has %d values; want %d for shape %v", field, name, got, n, t.Shape)
	}
	if other := contentsLen(c) - got; other != 0 {
		return badRequest("%s: %d values in fields other than %s; want only %s for datatype %s", field, other, name, name, t.DType)
	}
	if t.DType == tensor.Bytes {
		size := 0
		for _, s := range c.GetBytesContents() {
			size += 4 + len(s)
		}
		t.Data = make([]byte, 0, size)
		for _, s := range c.GetBytesContents() {
			t.Data = tensor.AppendString(t.Data, s)
		}
		return nil
	}
	sz := t.DType.Size()
	t.Data = tensor.Alloc(n * sz)
	d := t.Data
	switch t.DType {
	case tensor.Bool:
		for i, b := range c.GetBoolContents() {
			if b {
				d[i] = 1
			}
		}
	case tensor.Int8, tensor.Int16, tensor.Int32:
		hi := int64(1)<<(8*sz-1) - 1
		for i, x := range c.GetIntContents() {
			if v := int64(x); v < -hi-1 || v > hi {
				return badRequest("%s.%s: element %d is %d, out of range for %s", field, name, i, v, t.DType)
			}
			putInt(d, i, sz, uint64(x))
		}
	case tensor.Uint8, tensor.Uint16, tensor.Uint32:
		hi := uint64(1)<<(8*sz) - 1
		for i, x := range c.GetUintContents() {
			if uint64(x) > hi {
				return badRequest("%s.%s: element %d is %d, out of range for %s", field, name, i, x, t.DType)
			}
			putInt(d, i, sz, uint64(x))
		}
	case tensor.Int64:
		for i, x := range c.GetInt64Contents() {
			binary.LittleEndian.PutUint64(d[8*i:], uint64(x))
		}
	case tensor.Uint64:
		for i, x := range c.GetUint64Contents() {
			binary.LittleEndian.PutUint64(d[8*i:], x)
		}
	case tensor.FP32:
		for i, x := range c.GetFp32Contents() {
			binary.LittleEndian.PutUint32(d[4*i:], math.Float32bits(x))
		}
	case tensor.FP64:
		for i, x := range c.GetFp64Contents() {
			binary.LittleEndian.PutUint64(d[8*i:], math.Float64bits(x))
		}
	}
	return nil
}

// contentsLen is the number of values in every field of c.
func contentsLen(c *inferencepb.InferTensorContents) int {
	return len(c.GetBoolContents()) + len(c.GetIntContents()) + len(c.GetInt64Contents()) +
		len(c.GetUintContents()) + len(c.GetUint64Contents()) + len(c.GetFp32Contents()) +
		len(c.GetFp64Contents()) + len(c.GetBytesContents())
}

// putInt stores the low sz bytes of v as element i of d, little-endian.
func putInt(d []byte, i, sz int, v uint64) {
	switch sz {
	case 1:
		d[i] = byte(v)
	case 2:
		binary.LittleEndian.PutUint16(d[2*i:], uint16(v))
	default:
		binary.LittleEndian.PutUint32(d[4*i:], uint32(v))
	}
}

// decodeGRPCOutputs decodes the requested outputs into r.Outputs.
func decodeGRPCOutputs(r *Request, outs []*inferencepb.ModelInferRequest_InferRequestedOutputTensor) error {
	m := r.Model
	r.Outputs = r.Outputs[:0]
	for i, o := range outs {
		idx := m.Meta.Output(o.GetName())
		if idx < 0 {
			return badRequest("outputs[%d].name: model %s has no output %q; want one of %s", i, m.Name, Truncate(o.GetName()), outputNames(m))
		}
		for _, prev := range r.Outputs {
			if prev.Index == idx {
				return badRequest("outputs[%d].name: output %q is requested twice; want each output once", i, Truncate(o.GetName()))
			}
		}
		out := Output{Index: idx}
		if p, ok := o.GetParameters()["binary_data"]; ok {
			b, ok := p.GetParameterChoice().(*inferencepb.InferParameter_BoolParam)
			if !ok {
				return badRequest("outputs[%d].parameters[\"binary_data\"]: want bool_param", i)
			}
			out.Binary = b.BoolParam
		}
		r.Outputs = append(r.Outputs, out)
	}
	return nil
}

// EncodeGRPC returns the answer to r, whose model returned out (in the
// model's output order). Raw contents alias out's data, which the caller
// must not change until the response is sent.
func EncodeGRPC(r *Request, out []*tensor.Tensor) *inferencepb.ModelInferResponse {
	m := r.Model
	if len(r.Outputs) == 0 {
		for i := range out {
			r.Outputs = append(r.Outputs, Output{Index: i})
		}
	}
	// raw_output_contents covers every output or none (the proto's rule).
	raw := r.raw || r.binaryAll
	for _, o := range r.Outputs {
		if dt := out[o.Index].DType; o.Binary || dt == tensor.FP16 || dt == tensor.BF16 {
			raw = true
		}
	}
	resp := &inferencepb.ModelInferResponse{ModelName: m.Name, ModelVersion: m.Version, Id: r.id}
	resp.Outputs = make([]*inferencepb.ModelInferResponse_InferOutputTensor, len(r.Outputs))
	tensors := make([]inferencepb.ModelInferResponse_InferOutputTensor, len(r.Outputs)) // one allocation for all
	if raw {
		resp.RawOutputContents = make([][]byte, len(r.Outputs))
	}
	for i, o := range r.Outputs {
		t := out[o.Index]
		ot := &tensors[i]
		ot.Name, ot.Datatype, ot.Shape = m.Meta.Outputs[o.Index].Name, t.DType.String(), t.Shape
		if raw {
			resp.RawOutputContents[i] = t.Data
		} else {
			ot.Contents = typedContents(t)
		}
		resp.Outputs[i] = ot
	}
	return resp
}

// typedContents returns t's data in the InferTensorContents field of its
// datatype (not FP16 or BF16, which go raw).
func typedContents(t *tensor.Tensor) *inferencepb.InferTensorContents {
	c := &inferencepb.InferTensorContents{}
	n := t.Len()
	d := t.Data
	switch t.DType {
	case tensor.Bool:
		c.BoolContents = make([]bool, n)
		for i := range n {
			c.BoolContents[i] = d[i] != 0
		}
	case tensor.Int8, tensor.Int16, tensor.Int32:
		c.IntContents = make([]int32, n)
		for i := range n {
			c.IntContents[i] = int32(t.Int64At(i))
		}
	case tensor.Uint8, tensor.Uint16, tensor.Uint32:
		c.UintContents = make([]uint32, n)
		for i := range n {
			c.UintContents[i] = uint32(t.Int64At(i))
		}
	case tensor.Int64:
		c.Int64Contents = make([]int64, n)
		for i := range n {
			c.Int64Contents[i] = t.Int64At(i)
		}
	case tensor.Uint64:
		c.Uint64Contents = make([]uint64, n)
		for i := range n {
			c.Uint64Contents[i] = binary.LittleEndian.Uint64(d[8*i:])
		}
	case tensor.FP32:
		c.Fp32Contents = make([]float32, n)
		for i := range n {
			c.Fp32Contents[i] = math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:]))
		}
	case tensor.FP64:
		c.Fp64Contents = make([]float64, n)
		for i := range n {
			c.Fp64Contents[i] = math.Float64frombits(binary.LittleEndian.Uint64(d[8*i:]))
		}
	case tensor.Bytes:
		c.BytesContents = make([][]byte, 0, n)
		for rest := d; ; {
			s, next, ok := tensor.NextString(rest)
			if !ok {
				break
			}
			c.BytesContents = append(c.BytesContents, s)
			rest = next
		}
	}
	return c
}
