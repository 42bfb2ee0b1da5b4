package codec

import (
	"bytes"
	"encoding/binary"
	"math"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/internal/fakemodel"
	"github.com/coalesce-ml/coalesce/proto/inferencepb"
	"github.com/coalesce-ml/coalesce/tensor"
)

type grpcInputs = []*inferencepb.ModelInferRequest_InferInputTensor

func decodeGRPC(m *backends.ModelVersion, lim *config.Limits, req *inferencepb.ModelInferRequest) (*Request, error) {
	r := &Request{Model: m, Limits: lim, byName: map[string]*tensor.Tensor{}}
	return r, DecodeGRPC(r, req)
}

func le32(v ...float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// TestDecodeGRPC decodes each kind of contents, converted to the model's
// datatypes, and refuses what does not fit with a message naming the
// field.
func TestDecodeGRPC(t *testing.T) {
	reg := fakemodel.Registry(t)
	get := func(name string) *backends.ModelVersion {
		m, err := reg.Get(name, "")
		must(t, err)
		return m
	}
	lim := testLimits()
	x := func(dt string, shape []int64, c *inferencepb.InferTensorContents) *inferencepb.ModelInferRequest {
		return &inferencepb.ModelInferRequest{Inputs: grpcInputs{{Name: "x", Datatype: dt, Shape: shape, Contents: c}}}
	}
	one4 := []int64{1, 4}
	ok := func(model string, req *inferencepb.ModelInferRequest, want []byte) {
		t.Helper()
		r, err := decodeGRPC(get(model), &lim, req)
		if err != nil {
			t.Errorf("%s: DecodeGRPC = %v; want success", model, err)
			return
		}
		if !bytes.Equal(r.Inputs[0].Data, want) {
			t.Errorf("%s: input 0 = % x; want % x", model, r.Inputs[0].Data, want)
		}
	}
	fail := func(model string, req *inferencepb.ModelInferRequest, msg string) {
		t.Helper()
		_, err := decodeGRPC(get(model), &lim, req)
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: DecodeGRPC = %v; want an error with %q", model, err, msg)
		}
		checkDecodeErrT(t, err)
	}
	ok("double", x("FP32", one4, &inferencepb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 0.5}}), le32(1, 2, 3, 0.5))
	ok("double", x("FP64", one4, &inferencepb.InferTensorContents{Fp64Contents: []float64{1, 2, 3, 0.5}}), le32(1, 2, 3, 0.5))
	ok("double", x("INT32", one4, &inferencepb.InferTensorContents{IntContents: []int32{1, -2, 3, 0}}), le32(1, -2, 3, 0))
	ok("double", x("UINT8", one4, &inferencepb.InferTensorContents{UintContents: []uint32{1, 255, 3, 0}}), le32(1, 255, 3, 0))
	ok("double", x("INT64", one4, &inferencepb.InferTensorContents{Int64Contents: []int64{1, 2, 3, 4}}), le32(1, 2, 3, 4))
	ok("double", x("UINT64", one4, &inferencepb.InferTensorContents{Uint64Contents: []uint64{1, 2, 3, 4}}), le32(1, 2, 3, 4))
	ok("double", x("BOOL", one4, &inferencepb.InferTensorContents{BoolContents: []bool{true, false, true, true}}), le32(1, 0, 1, 1))
	half := binary.LittleEndian.AppendUint16(nil, tensor.Float32ToHalf(1.5))
	ok("double", &inferencepb.ModelInferRequest{Inputs: grpcInputs{{Name: "x", Datatype: "FP16", Shape: one4}},
		RawInputContents: [][]byte{slices.Concat(half, half, half, half)}}, le32(1.5, 1.5, 1.5, 1.5))
	ok("missing", &inferencepb.ModelInferRequest{Inputs: grpcInputs{{Name: "x", Datatype: "FP32", Shape: []int64{1, 2},
		Contents: &inferencepb.InferTensorContents{Fp32Contents: []float32{float32(math.NaN()), 1}}}}}, le32(float32(math.NaN()), 1))
	strs := &inferencepb.ModelInferRequest{Inputs: grpcInputs{{Name: "s", Datatype: "BYTES", Shape: []int64{1, 2},
		Contents: &inferencepb.InferTensorContents{BytesContents: [][]byte{[]byte("a"), []byte("\xff\x00")}}}}}
	ok("strs", strs, []byte(strBlob("a", "\xff\x00")))
	ok("strs", &inferencepb.ModelInferRequest{Inputs: grpcInputs{{Name: "s", Datatype: "BYTES", Shape: []int64{1, 2}}},
		RawInputContents: [][]byte{[]byte(strBlob("a", "bc"))}}, []byte(strBlob("a", "bc")))

	fail("double", x("UINT8", one4, &inferencepb.InferTensorContents{UintContents: []uint32{1, 256, 3, 0}}), "inputs[0].contents.uint_contents: element 1 is 256, out of range for UINT8")
	fail("double", x("INT8", one4, &inferencepb.InferTensorContents{IntContents: []int32{1, -129, 3, 0}}), "element 1 is -129, out of range for INT8")
	fail("double", x("FP16", one4, &inferencepb.InferTensorContents{}), "datatype FP16 has no typed contents; want raw_input_contents")
	fail("double", x("FP32", []int64{1, -4}, nil), "dimension 1 is -4")
	fail("double", x("FP32", one4, &inferencepb.InferTensorContents{Fp32Contents: []float32{1, float32(math.Inf(1)), 3, 4}}), "element 1 is +Inf")
	fail("double", x("FP32", []int64{1, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, nil), "17 dimensions; want at most 16")
	fail("double", x("BYTES", one4, nil), `datatype: BYTES, but input "x" of model double is FP32`)
	fail("double", &inferencepb.ModelInferRequest{Inputs: grpcInputs{{Name: "x", Datatype: "FP32", Shape: one4}, {Name: "x", Datatype: "FP32", Shape: one4}},
		RawInputContents: [][]byte{le32(1, 2, 3, 4), le32(1, 2, 3, 4)}}, `inputs[1].name: input "x" appears twice`)
	fail("double", &inferencepb.ModelInferRequest{Inputs: grpcInputs{{Name: "x", Datatype: "FP32", Shape: one4}},
		RawInputContents: [][]byte{le32(1, 2, 3, 4), le32(1)}}, "raw_input_contents: 2 blobs for 1 inputs")
	fail("strs", &inferencepb.ModelInferRequest{Inputs: grpcInputs{{Name: "s", Datatype: "BYTES", Shape: []int64{1, 2}}},
		RawInputContents: [][]byte{[]byte("\x09\x00\x00\x00ab")}}, "raw_input_contents[0]: BYTES binary data")
	fail("double", &inferencepb.ModelInferRequest{Parameters: map[string]*inferencepb.InferParameter{
		"priority": {ParameterChoice: &inferencepb.InferParameter_Int64Param{Int64Param: -1}}}, Inputs: x("FP32", one4, nil).Inputs}, `parameters["priority"]`)
	fail("double", &inferencepb.ModelInferRequest{Inputs: x("FP32", one4, &inferencepb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4}}).Inputs,
		Outputs: []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{{Name: "y"}, {Name: "y"}}}, `outputs[1].name: output "y" is requested twice`)

	// A tiny message with a large shape allocates nothing large.
	big := config.Limits{MaxTensorElements: 1 << 26, MaxJSONDepth: 8, MaxBodyBytes: 1 << 20}
	var err error
	n := bytesAllocated(func() {
		_, err = decodeGRPC(get("double"), &big, x("FP32", []int64{1 << 22, 4}, &inferencepb.InferTensorContents{}))
	})
	if err == nil || n > 1<<20 {
		t.Errorf("shape [4194304,4] without contents: %v after %d bytes allocated; want an error before allocating the tensor", err, n)
	}
}

func checkDecodeErrT(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if _, ok := err.(*Error); !ok {
		t.Errorf("error %v (%T) is not a *codec.Error", err, err)
	}
}

// TestEncodeGRPC: outputs come typed unless the request was raw or asked
// for raw outputs; requested outputs in request order; the id returns.
func TestEncodeGRPC(t *testing.T) {
	reg := fakemodel.Registry(t)
	m, err := reg.Get("double", "")
	must(t, err)
	lim := testLimits()
	y := tensor.FromFloat32s("y", []int64{1, 4}, []float32{2, 4, 6, 8})
	cls := tensor.FromInt64s("cls", []int64{1}, []int64{3})
	in := grpcInputs{{Name: "x", Datatype: "FP32", Shape: []int64{1, 4}, Contents: &inferencepb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4}}}}
	typed, err := decodeGRPC(m, &lim, &inferencepb.ModelInferRequest{Id: "a", Inputs: in})
	must(t, err)
	resp := EncodeGRPC(typed, []*tensor.Tensor{y, cls})
	if resp.GetId() != "a" || len(resp.GetRawOutputContents()) != 0 || !slices.Equal(resp.GetOutputs()[0].GetContents().GetFp32Contents(), []float32{2, 4, 6, 8}) ||
		!slices.Equal(resp.GetOutputs()[1].GetContents().GetInt64Contents(), []int64{3}) {
		t.Errorf("typed answer = %v", resp)
	}
	sel, err := decodeGRPC(m, &lim, &inferencepb.ModelInferRequest{Inputs: in, Outputs: []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{
		{Name: "cls", Parameters: map[string]*inferencepb.InferParameter{"binary_data": {ParameterChoice: &inferencepb.InferParameter_BoolParam{BoolParam: true}}}}}})
	must(t, err)
	resp = EncodeGRPC(sel, []*tensor.Tensor{y, cls})
	if len(resp.GetOutputs()) != 1 || resp.GetOutputs()[0].GetName() != "cls" || resp.GetOutputs()[0].GetContents() != nil ||
		!bytes.Equal(resp.GetRawOutputContents()[0], cls.Data) {
		t.Errorf("raw cls answer = %v", resp)
	}
}

// FuzzDecodeGRPC decodes ModelInferRequest messages from protobuf bytes:
// the decoder never panics, fails only with *Error, allocates in
// proportion to the message, and what it accepts fits the model, runs and
// encodes into a message that marshals.
func FuzzDecodeGRPC(f *testing.F) {
	model := fuzzModel(f)
	lim := testLimits()
	add := func(m *inferencepb.ModelInferRequest, sel uint8) {
		b, err := proto.Marshal(m)
		must(f, err)
		f.Add(b, sel)
	}
	one4 := []int64{1, 4}
	add(&inferencepb.ModelInferRequest{Id: "r", Inputs: grpcInputs{{Name: "x", Datatype: "FP32", Shape: one4,
		Contents: &inferencepb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4}}}}}, fzDouble)
	add(&inferencepb.ModelInferRequest{Inputs: grpcInputs{{Name: "x", Datatype: "FP32", Shape: one4}}, RawInputContents: [][]byte{le32(1, 2, 3, 4)}}, fzDouble)
	add(&inferencepb.ModelInferRequest{Inputs: grpcInputs{
		{Name: "a", Datatype: "FP64", Shape: []int64{1, 2}, Contents: &inferencepb.InferTensorContents{Fp64Contents: []float64{1, 2}}},
		{Name: "b", Datatype: "INT32", Shape: []int64{1, 2}, Contents: &inferencepb.InferTensorContents{IntContents: []int32{1, 2}}}}}, fzMulti)
	add(&inferencepb.ModelInferRequest{Inputs: grpcInputs{{Name: "s", Datatype: "BYTES", Shape: []int64{1, 2},
		Contents: &inferencepb.InferTensorContents{BytesContents: [][]byte{[]byte("a"), []byte("b")}}}},
		Outputs: []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{{Name: "echo"}}}, fzStrs)
	add(&inferencepb.ModelInferRequest{Inputs: grpcInputs{{Name: "x", Datatype: "FP32", Shape: []int64{2, 3}}}, RawInputContents: [][]byte{le32(1, 4, 2, 6, 0, -1)},
		Parameters: map[string]*inferencepb.InferParameter{"binary_data_output": {ParameterChoice: &inferencepb.InferParameter_BoolParam{BoolParam: true}}}}, fzZip)
	add(&inferencepb.ModelInferRequest{Inputs: grpcInputs{{Name: "x", Datatype: "FP32", Shape: []int64{1, 2},
		Contents: &inferencepb.InferTensorContents{Fp32Contents: []float32{float32(math.NaN()), 1}}}}}, fzMissing)
	f.Fuzz(func(t *testing.T, body []byte, sel uint8) {
		m := model(sel)
		var msg inferencepb.ModelInferRequest
		if proto.Unmarshal(body, &msg) != nil {
			return
		}
		var req *Request
		var err error
		checkAllocated(t, body, bytesAllocated(func() { req, err = decodeGRPC(m, &lim, &msg) }))
		checkDecodeErr(t, err)
		if err != nil {
			return
		}
		checkInputs(t, m, req.Inputs, &lim)
		out := runFake(t, m, req.Inputs)
		if out == nil {
			return
		}
		if _, err := proto.Marshal(EncodeGRPC(req, out)); err != nil {
			t.Fatalf("the answer does not marshal: %v", err)
		}
	})
}
