package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unsafe"

	"github.com/valyala/fastjson"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/tensor"
)

// The client side of the protocols, for backends/upstream: request bodies
// for a batch of input tensors, and the output tensors of a response. The
// encoders append to a caller's buffer without reflection; the decoders
// convert numbers from their text correctly rounded (number.go), so that a
// tensor sent through an upstream comes back bit for bit as calling the
// upstream directly gives it.

// ErrMalformed reports an upstream response that is not a valid answer of
// its protocol (the decoders' errors wrap it).
var ErrMalformed = errors.New("malformed upstream response")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// AppendV2Request appends a KServe V2 inference request for inputs to dst,
// asking for the outputs named (all when empty). With binary set, tensor
// data follows the JSON header as the binary tensor extension specifies
// and every output is asked for in binary; it returns the header's length
// for the Inference-Header-Content-Length header (0 for a JSON body).
func AppendV2Request(dst []byte, inputs []*tensor.Tensor, outputs []string, binary bool) ([]byte, int) {
	start := len(dst)
	dst = append(dst, `{"inputs":[`...)
	for i, t := range inputs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = AppendString(dst, t.Name)
		dst = append(dst, `,"shape":`...)
		dst = AppendShape(dst, t.Shape)
		dst = append(dst, `,"datatype":"`...)
		dst = append(dst, t.DType.String()...)
		if binary {
			dst = append(dst, `","parameters":{"binary_data_size":`...)
			dst = strconv.AppendInt(dst, int64(len(t.Data)), 10)
			dst = append(dst, `}}`...)
			continue
		}
		dst = append(dst, `","data":`...)
		dst = appendFlat(dst, t, nonFiniteNull)
		dst = append(dst, '}')
	}
	dst = append(dst, ']')
	if len(outputs) > 0 {
		dst = append(dst, `,"outputs":[`...)
		for i, name := range outputs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"name":`...)
			dst = AppendString(dst, name)
			if binary {
				dst = append(dst, `,"parameters":{"binary_data":true}`...)
			}
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	} else if binary {
		dst = append(dst, `,"parameters":{"binary_data_output":true}`...)
	}
	dst = append(dst, '}')
	if !binary {
		return dst, 0
	}
	header := len(dst) - start
	for _, t := range inputs {
		dst = append(dst, t.Data...)
	}
	return dst, header
}

// AppendTFSRequest appends a TF Serving REST predict request for inputs in
// the columnar format ({"inputs": {name: nested values}}).
func AppendTFSRequest(dst []byte, inputs []*tensor.Tensor) []byte {
	dst = append(dst, `{"inputs":{`...)
	for i, t := range inputs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, t.Name)
		dst = append(dst, ':')
		dst, _ = appendNested(dst, t, t.Shape, 0, nonFiniteTokens)
	}
	return append(dst, `}}`...)
}

// AppendPredictRequest appends the seed's /predict request for the one
// row of in: {"features": [values]}.
func AppendPredictRequest(dst []byte, in *tensor.Tensor) []byte {
	dst = append(dst, `{"features":`...)
	dst = appendFlat(dst, in, nonFiniteNull)
	return append(dst, '}')
}

// ClientDecoder decodes upstream responses. The zero value is ready; it is
// not safe for concurrent use (pool it).
type ClientDecoder struct {
	p   fastjson.Parser
	num []byte
}

// DecodeV2Response decodes a KServe V2 inference response into the
// tensors of want (in want's order, with want's datatypes), each with
// rows rows. header is the Inference-Header-Content-Length (0: all JSON);
// binary data follows the header in the order of the outputs.
func (d *ClientDecoder) DecodeV2Response(body []byte, header int, want []backends.TensorSpec, rows int) ([]*tensor.Tensor, error) {
	js, bin := body, []byte(nil)
	if header > 0 {
		if header > len(body) {
			return nil, malformed("Inference-Header-Content-Length %d is past the body's %d bytes", header, len(body))
		}
		js, bin = body[:header], body[header:]
	}
	v, err := d.p.ParseBytes(js)
	if err != nil {
		return nil, malformed("not JSON: %v", err)
	}
	outs := v.GetArray("outputs")
	if outs == nil {
		return nil, malformed(`no "outputs" array`)
	}
	got := make([]*tensor.Tensor, len(want))
	for _, o := range outs {
		name := string(o.GetStringBytes("name"))
		k := specIndexOf(want, name)
		dt, ok := tensor.ParseDataType(string(o.GetStringBytes("datatype")))
		if !ok {
			return nil, malformed("output %q: datatype %q", name, o.GetStringBytes("datatype"))
		}
		shape, err := shapeOf(o.Get("shape"))
		if err != nil {
			return nil, malformed("output %q: %v", name, err)
		}
		n := tensor.NumElements(shape)
		if n < 0 {
			return nil, malformed("output %q: shape %v", name, shape)
		}
		var t *tensor.Tensor
		if size := o.Get("parameters", "binary_data_size"); size != nil {
			sz, err := size.Int()
			if err != nil || sz < 0 || sz > len(bin) {
				return nil, malformed("output %q: binary_data_size %s with %d bytes left", name, size, len(bin))
			}
			t, err = fromBinary(name, dt, shape, bin[:sz])
			if err != nil {
				return nil, err
			}
			bin = bin[sz:]
		} else {
			// Count before allocating: a shape is the upstream's word,
			// the values are what it actually sent.
			data, leaves := o.Get("data"), 0
			if data != nil {
				countLeaves(data, &leaves)
			}
			if int64(leaves) != n {
				return nil, malformed("output %q: %d values for shape %v", name, leaves, shape)
			}
			if t, err = d.fromJSON(name, dt, shape, data); err != nil {
				return nil, err
			}
		}
		if k < 0 {
			continue // an output we did not ask for
		}
		if got[k], err = conform(t, &want[k], rows); err != nil {
			return nil, err
		}
	}
	for k, t := range got {
		if t == nil {
			return nil, malformed("no output %q", want[k].Name)
		}
	}
	return got, nil
}

// DecodeTFSResponse decodes a TF Serving columnar response ({"outputs":
// value} for one output, {"outputs": {name: value}} for several) into the
// tensors of want with rows rows each.
func (d *ClientDecoder) DecodeTFSResponse(body []byte, want []backends.TensorSpec, rows int) ([]*tensor.Tensor, error) {
	v, err := d.p.ParseBytes(body)
	if err != nil {
		return nil, malformed("not JSON: %v", err)
	}
	outs := v.Get("outputs")
	if outs == nil {
		return nil, malformed(`no "outputs"`)
	}
	got := make([]*tensor.Tensor, len(want))
	for k := range want {
		ov := outs
		if outs.Type() == fastjson.TypeObject {
			if ov = outs.Get(want[k].Name); ov == nil {
				if len(want) > 1 {
					return nil, malformed("no output %q", want[k].Name)
				}
				ov = outs
			}
		}
		if got[k], err = d.fromRows(&want[k], ov, rows); err != nil {
			return nil, err
		}
	}
	return got, nil
}

// DecodePredictResponse decodes the seed's /predict answer
// ({"prediction": [value per row]}) into the one output of want.
func (d *ClientDecoder) DecodePredictResponse(body []byte, want []backends.TensorSpec, rows int) ([]*tensor.Tensor, error) {
	if len(want) != 1 {
		return nil, fmt.Errorf("BUG: predict protocol with %d outputs", len(want))
	}
	v, err := d.p.ParseBytes(body)
	if err != nil {
		return nil, malformed("not JSON: %v", err)
	}
	p := v.Get("prediction")
	if p == nil {
		return nil, malformed(`no "prediction"`)
	}
	t, err := d.fromRows(&want[0], p, rows)
	if err != nil {
		return nil, err
	}
	return []*tensor.Tensor{t}, nil
}

// ErrorMessage returns the "error" string of a JSON error body (KServe V2,
// TF Serving and Coalesce all answer {"error": "..."}), or the body itself
// truncated, for the message of an upstream's 4xx.
func (d *ClientDecoder) ErrorMessage(body []byte) string {
	if v, err := d.p.ParseBytes(body); err == nil {
		if s := v.GetStringBytes("error"); s != nil {
			return TruncateBytes(s)
		}
	}
	return TruncateBytes(body)
}

// fromRows reads v, nested rows of values (or one scalar per row), as the
// output sp with rows rows: its shape is [rows] + sp's dims after the
// batch dimension, a -1 among them taken from the element count.
func (d *ClientDecoder) fromRows(sp *backends.TensorSpec, v *fastjson.Value, rows int) (*tensor.Tensor, error) {
	n := 0
	countLeaves(v, &n)
	shape := append([]int64{int64(rows)}, sp.Shape[1:]...)
	free, known := -1, int64(rows)
	for i, dim := range shape[1:] {
		if dim < 0 {
			free = i + 1
			continue
		}
		known *= dim
	}
	if free >= 0 && known > 0 {
		shape[free] = int64(n) / known
	}
	if tensor.NumElements(shape) != int64(n) {
		return nil, malformed("output %q: %d values for shape %v", sp.Name, n, shape)
	}
	return d.fromJSON(sp.Name, sp.DType, shape, v)
}

func countLeaves(v *fastjson.Value, n *int) {
	if v.Type() != fastjson.TypeArray {
		*n++
		return
	}
	a, _ := v.Array()
	for _, e := range a {
		countLeaves(e, n)
	}
}

// fromJSON reads v (nested or flat arrays, or a scalar) as a tensor of
// dt and shape.
func (d *ClientDecoder) fromJSON(name string, dt tensor.DataType, shape []int64, v *fastjson.Value) (*tensor.Tensor, error) {
	if v == nil {
		return nil, malformed("output %q: no data", name)
	}
	n := int(tensor.NumElements(shape))
	var t *tensor.Tensor
	if dt == tensor.Bytes {
		t = &tensor.Tensor{Name: name, DType: dt, Shape: shape}
	} else {
		t = tensor.New(name, dt, shape)
	}
	i := 0
	if err := d.fill(t, v, &i, n); err != nil {
		return nil, malformed("output %q: %v", name, err)
	}
	if i != n {
		return nil, malformed("output %q: %d values for shape %v", name, i, shape)
	}
	return t, nil
}

func (d *ClientDecoder) fill(t *tensor.Tensor, v *fastjson.Value, i *int, n int) error {
	if v.Type() == fastjson.TypeArray {
		a, _ := v.Array()
		for _, e := range a {
			if err := d.fill(t, e, i, n); err != nil {
				return err
			}
		}
		return nil
	}
	if *i >= n {
		return errors.New("more values than the shape holds")
	}
	switch {
	case t.DType == tensor.Bytes:
		s, err := v.StringBytes()
		if err != nil {
			return errors.New("a BYTES element is not a string")
		}
		t.Data = tensor.AppendString(t.Data, s)
	case t.DType == tensor.Bool:
		b, err := v.Bool()
		if err != nil {
			return errors.New("a BOOL element is not true or false")
		}
		if b {
			t.Data[*i] = 1
		}
	case v.Type() == fastjson.TypeNull && t.DType.IsFloat():
		t.SetFloat64(*i, math.NaN())
	case v.Type() == fastjson.TypeNumber && t.DType.IsFloat():
		d.num = v.MarshalTo(d.num[:0])
		bits := 64
		if t.DType == tensor.FP32 {
			bits = 32
		}
		x, err := parseFloatText(unsafe.String(unsafe.SliceData(d.num), len(d.num)), bits)
		if err != nil {
			return err
		}
		t.SetFloat64(*i, x)
	case v.Type() == fastjson.TypeNumber:
		d.num = v.MarshalTo(d.num[:0])
		s := unsafe.String(unsafe.SliceData(d.num), len(d.num))
		if t.DType == tensor.Uint64 {
			x, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return fmt.Errorf("%s is not a UINT64", s)
			}
			binary.LittleEndian.PutUint64(t.Data[*i*8:], x)
			break
		}
		x, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			// sklearn answers integral classes as floats ("3.0").
			f, ferr := strconv.ParseFloat(s, 64)
			if ferr != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
				return fmt.Errorf("%s is not an integer", s)
			}
			x = int64(f)
		}
		t.SetInt64(*i, x)
	case v.Type() == fastjson.TypeString && t.DType.IsFloat():
		// TF Serving writes non-finite floats as "NaN" and "Infinity".
		x, err := strconv.ParseFloat(string(v.GetStringBytes()), 64)
		if err != nil {
			return fmt.Errorf("%s is not a number", v)
		}
		t.SetFloat64(*i, x)
	default:
		return fmt.Errorf("%s is not a %s", TruncateBytes(v.MarshalTo(nil)), t.DType)
	}
	*i++
	return nil
}

// fromBinary copies b, one output's binary data, into a tensor.
func fromBinary(name string, dt tensor.DataType, shape []int64, b []byte) (*tensor.Tensor, error) {
	n := tensor.NumElements(shape)
	if dt == tensor.Bytes {
		got, err := tensor.CountStrings(b)
		if err != nil || int64(got) != n {
			return nil, malformed("output %q: BYTES data holds %d elements for shape %v", name, got, shape)
		}
		data := tensor.Alloc(len(b))
		copy(data, b)
		return &tensor.Tensor{Name: name, DType: dt, Shape: shape, Data: data}, nil
	}
	if int64(len(b)) != n*int64(dt.Size()) {
		return nil, malformed("output %q: %d bytes for shape %v of %s", name, len(b), shape, dt)
	}
	t := tensor.New(name, dt, shape)
	copy(t.Data, b)
	return t, nil
}

// conform checks t against its spec: the declared datatype (converted
// exactly when the upstream chose a wider one) and rows rows.
func conform(t *tensor.Tensor, sp *backends.TensorSpec, rows int) (*tensor.Tensor, error) {
	if len(t.Shape) == 0 || t.Shape[0] != int64(rows) {
		return nil, malformed("output %q: shape %v for a batch of %d rows", t.Name, t.Shape, rows)
	}
	if sp.DType != tensor.Invalid && t.DType != sp.DType {
		return nil, malformed("output %q: datatype %s; the model declares %s", t.Name, t.DType, sp.DType)
	}
	return t, nil
}

func shapeOf(v *fastjson.Value) ([]int64, error) {
	if v == nil {
		return nil, errors.New("no shape")
	}
	a, err := v.Array()
	if err != nil {
		return nil, errors.New("shape is not an array")
	}
	shape := make([]int64, len(a))
	for i, e := range a {
		if shape[i], err = e.Int64(); err != nil || shape[i] < 0 {
			return nil, fmt.Errorf("shape %s", v)
		}
	}
	return shape, nil
}

func specIndexOf(specs []backends.TensorSpec, name string) int {
	for i := range specs {
		if specs[i].Name == name {
			return i
		}
	}
	return -1
}

// DecodeV2Metadata reads the inputs and outputs of a KServe V2 model
// metadata response (GET /v2/models/{m}[/versions/{v}]). Shapes keep the
// batch dimension as the upstream declares it (-1 when variable).
func (d *ClientDecoder) DecodeV2Metadata(body []byte) (inputs, outputs []backends.TensorSpec, err error) {
	v, err := d.p.ParseBytes(body)
	if err != nil {
		return nil, nil, malformed("metadata is not JSON: %v", err)
	}
	for _, list := range []struct {
		key string
		dst *[]backends.TensorSpec
	}{{"inputs", &inputs}, {"outputs", &outputs}} {
		for _, e := range v.GetArray(list.key) {
			dt, ok := tensor.ParseDataType(string(e.GetStringBytes("datatype")))
			if !ok {
				return nil, nil, malformed("metadata %s %q: datatype %q", list.key, e.GetStringBytes("name"), e.GetStringBytes("datatype"))
			}
			a := e.GetArray("shape")
			shape := make([]int64, len(a))
			for i, x := range a {
				if shape[i], err = x.Int64(); err != nil {
					return nil, nil, malformed("metadata %s %q: shape", list.key, e.GetStringBytes("name"))
				}
			}
			*list.dst = append(*list.dst, backends.TensorSpec{Name: string(e.GetStringBytes("name")), DType: dt, Shape: shape})
		}
		if len(*list.dst) == 0 {
			return nil, nil, malformed("metadata lists no %s", list.key)
		}
	}
	return inputs, outputs, nil
}

// DecodeTFSMetadata reads the serving_default signature of a TF Serving
// metadata response (GET /v1/models/{m}[/versions/{v}]/metadata). Inputs
// and outputs come in the order the body lists them.
func (d *ClientDecoder) DecodeTFSMetadata(body []byte) (inputs, outputs []backends.TensorSpec, err error) {
	v, err := d.p.ParseBytes(body)
	if err != nil {
		return nil, nil, malformed("metadata is not JSON: %v", err)
	}
	sig := v.Get("metadata", "signature_def", "signature_def", "serving_default")
	if sig == nil {
		return nil, nil, malformed("metadata has no serving_default signature")
	}
	for _, list := range []struct {
		key string
		dst *[]backends.TensorSpec
	}{{"inputs", &inputs}, {"outputs", &outputs}} {
		ov := sig.Get(list.key)
		if ov == nil {
			return nil, nil, malformed("signature has no %s", list.key)
		}
		o, err := ov.Object()
		if err != nil {
			return nil, nil, malformed("signature has no %s", list.key)
		}
		o.Visit(func(k []byte, e *fastjson.Value) {
			sp := backends.TensorSpec{Name: string(k), DType: tfsDataType(string(e.GetStringBytes("dtype")))}
			for _, dim := range e.GetArray("tensor_shape", "dim") {
				n, perr := strconv.ParseInt(string(dim.GetStringBytes("size")), 10, 64)
				if perr != nil {
					n, _ = dim.Get("size").Int64()
				}
				sp.Shape = append(sp.Shape, n)
			}
			*list.dst = append(*list.dst, sp)
		})
		for _, sp := range *list.dst {
			if sp.DType == tensor.Invalid {
				return nil, nil, malformed("signature %s %q: unsupported dtype", list.key, sp.Name)
			}
		}
	}
	return inputs, outputs, nil
}

// tfsDataType is the inverse of tensor.DataType.TFName.
func tfsDataType(name string) tensor.DataType {
	for dt := tensor.Bool; dt <= tensor.Bytes; dt++ {
		if dt.TFName() == name {
			return dt
		}
	}
	return tensor.Invalid
}
