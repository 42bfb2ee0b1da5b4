package codec

import (
	"testing"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/tensor"
)

var clientSpecs = []backends.TensorSpec{
	{Name: "y", DType: tensor.FP32, Shape: []int64{-1, 2}},
	{Name: "s", DType: tensor.Bytes, Shape: []int64{-1}},
}

// FuzzClientDecode: no upstream answer makes the client decoders panic
// or allocate beyond what the answer holds; what they accept has the
// declared rows and datatypes.
func FuzzClientDecode(f *testing.F) {
	f.Add([]byte(`{"outputs":[{"name":"y","datatype":"FP32","shape":[1,2],"data":[1.5,2]},{"name":"s","datatype":"BYTES","shape":[1],"data":["a"]}]}`), 0)
	f.Add([]byte(`{"outputs":[{"name":"y","datatype":"FP32","shape":[100000000,100],"data":[1]}]}`), 0)
	f.Add([]byte(`{"outputs":[{"name":"y","datatype":"FP32","shape":[1,2],"parameters":{"binary_data_size":8}}]}`+"\x00\x00\x80\x3f\x00\x00\x00\x40"), 87)
	f.Add([]byte(`{"outputs":{"y":[[1,2]],"s":["x"]}}`), -1)
	f.Add([]byte(`{"prediction":[3]}`), -2)
	f.Add([]byte(`{"name":"m","inputs":[{"name":"x","datatype":"FP32","shape":[-1,4]}],"outputs":[{"name":"y","datatype":"FP32","shape":[-1]}]}`), -3)
	f.Add([]byte(`{"metadata":{"signature_def":{"signature_def":{"serving_default":{"inputs":{"x":{"dtype":"DT_FLOAT","tensor_shape":{"dim":[{"size":"-1"}]}}},"outputs":{}}}}}}`), -4)
	f.Fuzz(func(t *testing.T, body []byte, header int) {
		var d ClientDecoder
		var out []*tensor.Tensor
		var err error
		switch {
		case header == -1:
			out, err = d.DecodeTFSResponse(body, clientSpecs, 1)
		case header == -2:
			out, err = d.DecodePredictResponse(body, clientSpecs[:1], 1)
		case header == -3:
			d.DecodeV2Metadata(body) //nolint:errcheck // must not panic
			return
		case header == -4:
			d.DecodeTFSMetadata(body) //nolint:errcheck // must not panic
			d.ErrorMessage(body)
			return
		default:
			out, err = d.DecodeV2Response(body, max(header, 0), clientSpecs, 1)
		}
		if err != nil {
			return
		}
		for i, o := range out {
			if o.BatchSize() != 1 || o.DType != clientSpecs[i].DType {
				t.Fatalf("accepted output %d: %v %v; want 1 row of %v", i, o.DType, o.Shape, clientSpecs[i].DType)
			}
			if err := o.Validate(); err != nil {
				t.Fatalf("accepted an invalid tensor: %v", err)
			}
		}
	})
}

// TestClientRequestBodies: the encoders write what the protocols expect.
func TestClientRequestBodies(t *testing.T) {
	x := tensor.FromFloat32s("x", []int64{2, 2}, []float32{0.1, 1e-40, -0, 3.4e38})
	f := func(got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("body = %s; want %s", got, want)
		}
	}
	b, h := AppendV2Request(nil, []*tensor.Tensor{x}, []string{"y"}, false)
	f(string(b), `{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[0.1,1e-40,0,3.4e+38]}],"outputs":[{"name":"y"}]}`)
	if h != 0 {
		t.Errorf("JSON header length = %d; want 0", h)
	}
	b, h = AppendV2Request(nil, []*tensor.Tensor{x}, nil, true)
	f(string(b[:h]), `{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","parameters":{"binary_data_size":16}}],"parameters":{"binary_data_output":true}}`)
	if len(b) != h+16 {
		t.Errorf("binary body = %d bytes; want the header and 16", len(b))
	}
	f(string(AppendTFSRequest(nil, []*tensor.Tensor{x})), `{"inputs":{"x":[[0.1,1e-40],[0,3.4e+38]]}}`)
	f(string(AppendPredictRequest(nil, tensor.FromFloat32s("x", []int64{1, 2}, []float32{1, 2.5}))), `{"features":[1,2.5]}`)
}
