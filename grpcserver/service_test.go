package grpcserver_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"

	"github.com/coalesce-ml/coalesce/proto/inferencepb"
	"github.com/coalesce-ml/coalesce/tensor"
)

// golden is the input of a shipped model's golden.json.
type golden struct {
	Name     string
	Datatype string
	Shape    []int64
	Data     []float32 // null is NaN: a missing value
}

func readGolden(t *testing.T, model string) golden { return readGoldenB(t, model) }

func readGoldenB(t testing.TB, model string) golden {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "models", model, "golden.json"))
	must(t, err)
	var g struct {
		Inputs map[string]struct {
			Datatype string
			Shape    []int64
			Data     []*float64
		}
	}
	must(t, json.Unmarshal(b, &g))
	for name, in := range g.Inputs {
		out := golden{Name: name, Datatype: in.Datatype, Shape: in.Shape}
		for _, v := range in.Data {
			if v == nil {
				out.Data = append(out.Data, float32(math.NaN()))
			} else {
				out.Data = append(out.Data, float32(*v))
			}
		}
		return out
	}
	t.Fatalf("%s: golden.json has no input", model)
	return golden{}
}

func (g golden) raw() []byte {
	b := make([]byte, 0, 4*len(g.Data))
	for _, v := range g.Data {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// outTensor is one output of an answer, its data in the binary layout.
type outTensor struct {
	Name, Datatype string
	Shape          []int64
	Data           []byte
}

// httpV2Binary sends g to model over HTTP V2 with binary tensors both ways
// and returns the outputs.
func httpV2Binary(t *testing.T, h *harness, model string, g golden) []outTensor {
	t.Helper()
	raw := g.raw()
	hdr := fmt.Sprintf(`{"parameters":{"binary_data_output":true},"inputs":[{"name":%q,"datatype":%q,"shape":%s,"parameters":{"binary_data_size":%d}}]}`,
		g.Name, g.Datatype, shapeJSON(g.Shape), len(raw))
	status, rh, body := h.httpDo(t, "POST", "/v2/models/"+model+"/infer", append([]byte(hdr), raw...), "Inference-Header-Content-Length", strconv.Itoa(len(hdr)))
	if status != 200 {
		t.Fatalf("POST /v2/models/%s/infer = %d %s", model, status, body)
	}
	n, err := strconv.Atoi(rh["Inference-Header-Content-Length"])
	must(t, err)
	var resp struct {
		Outputs []struct {
			Name, Datatype string
			Shape          []int64
			Parameters     struct {
				BinaryDataSize int `json:"binary_data_size"`
			}
		}
	}
	must(t, json.Unmarshal(body[:n], &resp))
	blobs := body[n:]
	var outs []outTensor
	for _, o := range resp.Outputs {
		sz := o.Parameters.BinaryDataSize
		outs = append(outs, outTensor{o.Name, o.Datatype, o.Shape, blobs[:sz]})
		blobs = blobs[sz:]
	}
	return outs
}

func shapeJSON(s []int64) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// grpcOutputs returns the outputs of a ModelInfer answer, raw or typed
// contents turned into the binary layout.
func grpcOutputs(t *testing.T, resp *inferencepb.ModelInferResponse) []outTensor {
	t.Helper()
	var outs []outTensor
	for i, o := range resp.GetOutputs() {
		var data []byte
		if raw := resp.GetRawOutputContents(); len(raw) > 0 {
			data = raw[i]
		} else {
			dt, ok := tensor.ParseDataType(o.GetDatatype())
			if !ok {
				t.Fatalf("output %s: datatype %q", o.GetName(), o.GetDatatype())
			}
			data = contentsBytes(dt, o.GetContents())
		}
		outs = append(outs, outTensor{o.GetName(), o.GetDatatype(), o.GetShape(), data})
	}
	return outs
}

// contentsBytes is typed contents in the binary layout of dt.
func contentsBytes(dt tensor.DataType, c *inferencepb.InferTensorContents) []byte {
	var b []byte
	switch dt {
	case tensor.Bool:
		for _, v := range c.GetBoolContents() {
			if v {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		}
	case tensor.Int8, tensor.Uint8, tensor.Int16, tensor.Uint16, tensor.Int32, tensor.Uint32:
		vals := c.GetIntContents()
		sz := dt.Size()
		for _, v := range c.GetUintContents() {
			vals = append(vals, int32(v))
		}
		for _, v := range vals {
			b = binary.LittleEndian.AppendUint32(b, uint32(v))[:len(b)+sz]
		}
	case tensor.Int64:
		for _, v := range c.GetInt64Contents() {
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		}
	case tensor.Uint64:
		for _, v := range c.GetUint64Contents() {
			b = binary.LittleEndian.AppendUint64(b, v)
		}
	case tensor.FP32:
		for _, v := range c.GetFp32Contents() {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
	case tensor.FP64:
		for _, v := range c.GetFp64Contents() {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
		}
	case tensor.Bytes:
		for _, v := range c.GetBytesContents() {
			b = tensor.AppendString(b, v)
		}
	}
	return b
}

func sameOutputs(t *testing.T, what string, got, want []outTensor) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d outputs; want %d", what, len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.Datatype != w.Datatype || !slices.Equal(g.Shape, w.Shape) {
			t.Errorf("%s: output %d is %s %s %v; want %s %s %v", what, i, g.Name, g.Datatype, g.Shape, w.Name, w.Datatype, w.Shape)
		}
		if len(w.Data) == 0 {
			t.Errorf("%s: output %s of the HTTP V2 answer is empty; want data to compare", what, w.Name)
		}
		if !bytes.Equal(g.Data, w.Data) {
			t.Errorf("%s: output %s: %d bytes differ from the HTTP V2 answer's %d", what, w.Name, len(g.Data), len(w.Data))
		}
	}
}

// TestShippedModels calls every RPC against every shipped model and checks
// ModelInfer, with typed and with raw contents, bit for bit against the
// HTTP V2 binary answer for the same tensors, and ModelMetadata against
// GET /v2/models/{m}.
func TestShippedModels(t *testing.T) {
	h := startShipped(t, shippedConfig())
	ctx := context.Background()
	live, err := h.infer.ServerLive(ctx, &inferencepb.ServerLiveRequest{})
	must(t, err)
	ready, err := h.infer.ServerReady(ctx, &inferencepb.ServerReadyRequest{})
	must(t, err)
	if !live.GetLive() || !ready.GetReady() {
		t.Errorf("ServerLive, ServerReady = %v, %v; want true, true", live.GetLive(), ready.GetReady())
	}
	sm, err := h.infer.ServerMetadata(ctx, &inferencepb.ServerMetadataRequest{})
	must(t, err)
	if sm.GetName() != "coalesce" || sm.GetVersion() != "test" {
		t.Errorf("ServerMetadata = %v; want name coalesce, version test", sm)
	}
	dirs, err := os.ReadDir("../models")
	must(t, err)
	n := 0
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		model := d.Name()
		n++
		t.Run(model, func(t *testing.T) {
			mr, err := h.infer.ModelReady(ctx, &inferencepb.ModelReadyRequest{Name: model})
			must(t, err)
			if !mr.GetReady() {
				t.Errorf("ModelReady(%s) = false; want true", model)
			}
			checkMetadata(t, h, model)

			g := readGolden(t, model)
			want := httpV2Binary(t, h, model, g)
			in := &inferencepb.ModelInferRequest_InferInputTensor{Name: g.Name, Datatype: g.Datatype, Shape: g.Shape}
			raw, err := h.infer.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: model, Id: "r1",
				Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{in}, RawInputContents: [][]byte{g.raw()}})
			must(t, err)
			if raw.GetId() != "r1" || raw.GetModelName() != model || raw.GetModelVersion() != "1" || len(raw.GetRawOutputContents()) == 0 {
				t.Errorf("raw ModelInfer: id %q model %q version %q, %d raw outputs; want r1, %s, 1, raw outputs", raw.GetId(), raw.GetModelName(), raw.GetModelVersion(), len(raw.GetRawOutputContents()), model)
			}
			sameOutputs(t, "raw_input_contents", grpcOutputs(t, raw), want)

			typedIn := &inferencepb.ModelInferRequest_InferInputTensor{Name: g.Name, Datatype: g.Datatype, Shape: g.Shape,
				Contents: &inferencepb.InferTensorContents{Fp32Contents: g.Data}}
			typed, err := h.infer.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: model, ModelVersion: "1",
				Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{typedIn}})
			must(t, err)
			if len(typed.GetRawOutputContents()) != 0 {
				t.Errorf("typed ModelInfer answered with raw_output_contents; want typed contents")
			}
			sameOutputs(t, "contents", grpcOutputs(t, typed), want)
		})
	}
	if n < 6 {
		t.Errorf("%d shipped models; want at least 6", n)
	}
}

// checkMetadata compares ModelMetadata with GET /v2/models/{model}.
func checkMetadata(t *testing.T, h *harness, model string) {
	t.Helper()
	md, err := h.infer.ModelMetadata(context.Background(), &inferencepb.ModelMetadataRequest{Name: model})
	must(t, err)
	status, _, body := h.httpDo(t, "GET", "/v2/models/"+model, nil)
	if status != 200 {
		t.Fatalf("GET /v2/models/%s = %d %s", model, status, body)
	}
	type spec struct {
		Name, Datatype string
		Shape          []int64
	}
	var want struct {
		Name            string
		Versions        []string
		Platform        string
		Inputs, Outputs []spec
	}
	must(t, json.Unmarshal(body, &want))
	specs := func(ts []*inferencepb.ModelMetadataResponse_TensorMetadata) []spec {
		var s []spec
		for _, x := range ts {
			s = append(s, spec{x.GetName(), x.GetDatatype(), x.GetShape()})
		}
		return s
	}
	got := want
	got.Name, got.Versions, got.Platform, got.Inputs, got.Outputs = md.GetName(), md.GetVersions(), md.GetPlatform(), specs(md.GetInputs()), specs(md.GetOutputs())
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if !bytes.Equal(gj, wj) {
		t.Errorf("ModelMetadata(%s) = %s; want %s (GET /v2/models/%s)", model, gj, wj, model)
	}
}

func maxProcs() int { return runtime.GOMAXPROCS(0) }
