package codec_test

import (
	"fmt"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/codec"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

type headers map[string]string

// Peek returns nil for an absent header, as fasthttp does.
func (h headers) Peek(k string) []byte {
	if v, ok := h[k]; ok {
		return []byte(v)
	}
	return nil
}
func (h headers) Set(k, v string)          { h[k] = v }
func (h headers) SetContentType(ct string) { h["Content-Type"] = ct }

// Decoding a KServe V2 request for a model with one FP32 input of two
// features, and encoding the model's answer in the same protocol.
func Example() {
	mc := config.DefaultModelConfig()
	m := &backends.ModelVersion{Name: "sum", Version: "1", Config: mc, Meta: &backends.Metadata{
		Inputs:  []backends.TensorSpec{{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 2}}},
		Outputs: []backends.TensorSpec{{Name: "y", DType: tensor.FP64, Shape: []int64{-1}}},
	}}
	lim := config.Default().Limits
	r := codec.AcquireRequest(m, &lim)
	defer codec.ReleaseRequest(r)

	body := []byte(`{"id":"a","inputs":[{"name":"x","datatype":"FP64","shape":[2,2],"data":[1,2,3,4.5]}]}`)
	if err := codec.V2.Decode(r, body, headers{}); err != nil {
		fmt.Println(err)
		return
	}
	x := r.Inputs[0]
	fmt.Println(x.Name, x.DType, x.Shape, x.Float32s()) // converted to the declared FP32

	y := tensor.New("y", tensor.FP64, []int64{2})
	for i := range 2 {
		y.Float64s()[i] = float64(x.Float32s()[2*i] + x.Float32s()[2*i+1])
	}
	h := headers{}
	out, _ := codec.V2.Encode(nil, r, []*tensor.Tensor{y}, h)
	fmt.Println(h["Content-Type"])
	fmt.Println(string(out))

	// A client mistake is an *Error naming the field and what was expected.
	err := codec.V2.Decode(codec.AcquireRequest(m, &lim), []byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,3],"data":[1,2,3]}]}`), headers{})
	fmt.Println(err)
	// Output:
	// x FP32 [2 2] [1 2 3 4.5]
	// application/json
	// {"model_name":"sum","model_version":"1","id":"a","outputs":[{"name":"y","datatype":"FP64","shape":[2],"data":[3,7.5]}]}
	// inputs: input "x" has shape [1,3]; want [-1,2] (-1 = any size)
}
