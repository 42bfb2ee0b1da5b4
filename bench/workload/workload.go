// Package workload builds the requests a benchmark sends: bodies for each
// protocol Coalesce speaks, made from the real rows of a model's golden
// inputs, with a configurable share of repeated inputs and a mix of batch
// sizes per request.
package workload

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/coalesce-ml/coalesce/bench/loadgen"
	"github.com/coalesce-ml/coalesce/proto/inferencepb"
)

// The protocols a workload can speak.
const (
	Predict  = "predict"   // POST /predict {"features": ...}
	V2JSON   = "v2-json"   // POST /v2/models/{m}/infer, JSON tensors
	V2Binary = "v2-binary" // the same with the binary tensor extension
	TFS      = "tfs"       // POST /v1/models/{m}:predict {"instances": ...}
	// GRPC is KServe V2 gRPC ModelInfer with raw_input_contents (package
	// bench/grpcload sends it); GRPCTyped the same with fp32_contents.
	GRPC      = "grpc"
	GRPCTyped = "grpc-typed"
)

// Spec says what to send.
type Spec struct {
	Model     string // model name, a directory of ModelsDir
	ModelsDir string // holds <Model>/golden.json
	Protocol  string
	// Path overrides the request path (e.g. a peer that serves /predict
	// for one model only); empty means the protocol's path for Model.
	Path string
	// Batch is the mix of rows per request, drawn uniformly; empty means 1.
	Batch []int
	// RepeatShare is the share of requests (0..1) that repeat one of a
	// small hot set of inputs exactly, to exercise a response cache; the
	// other requests are all different.
	RepeatShare float64
	// Count is how many requests the pool holds; 0 means 512.
	Count int
	Seed  uint64
	// Headers are added to every request (name, value pairs), e.g. an
	// API key.
	Headers []string
}

// HotSet is how many distinct inputs repeated requests draw from.
const HotSet = 8

// golden is the part of models/<name>/golden.json a workload reads.
type golden struct {
	Inputs map[string]struct {
		Datatype string    `json:"datatype"`
		Shape    []int64   `json:"shape"`
		Data     []float64 `json:"data"`
	} `json:"inputs"`
}

// Rows returns the golden input rows of a model (its only input) and the
// input's name.
func Rows(modelsDir, model string) (name string, rows [][]float64, err error) {
	raw, err := os.ReadFile(filepath.Join(modelsDir, model, "golden.json"))
	if err != nil {
		return "", nil, fmt.Errorf("workload: %w", err)
	}
	var g golden
	if err := json.Unmarshal(raw, &g); err != nil {
		return "", nil, fmt.Errorf("workload: %s golden.json: %w", model, err)
	}
	if len(g.Inputs) != 1 {
		return "", nil, fmt.Errorf("workload: %s has %d inputs; want a single-input model", model, len(g.Inputs))
	}
	for n, in := range g.Inputs {
		if len(in.Shape) != 2 || in.Shape[0] < 1 || int64(len(in.Data)) != in.Shape[0]*in.Shape[1] {
			return "", nil, fmt.Errorf("workload: %s input %s has shape %v; want [rows, features]", model, n, in.Shape)
		}
		width := int(in.Shape[1])
		for r := 0; r < int(in.Shape[0]); r++ {
			rows = append(rows, in.Data[r*width:(r+1)*width])
		}
		name = n
	}
	return name, rows, nil
}

// Build returns the request pool for spec, addressed to host. Unique
// requests are golden rows with one feature nudged by a multiple of 2^-10
// (exact in float32), so no two of them are byte-identical while staying
// within a hair of real data; repeated requests are exact golden rows.
func Build(spec Spec, host string) ([]loadgen.Request, error) {
	input, rows, err := Rows(spec.ModelsDir, spec.Model)
	if err != nil {
		return nil, err
	}
	count := spec.Count
	if count == 0 {
		count = 512
	}
	batch := spec.Batch
	if len(batch) == 0 {
		batch = []int{1}
	}
	for _, b := range batch {
		if b < 1 {
			return nil, fmt.Errorf("workload: batch size %d; want at least 1", b)
		}
	}
	if spec.RepeatShare < 0 || spec.RepeatShare > 1 {
		return nil, fmt.Errorf("workload: repeat share %v; want 0..1", spec.RepeatShare)
	}
	rng := rand.New(rand.NewPCG(spec.Seed, 0x5eed))
	reqs := make([]loadgen.Request, 0, count)
	unique := 0
	for i := 0; i < count; i++ {
		n := batch[rng.IntN(len(batch))]
		var data [][]float64
		if rng.Float64() < spec.RepeatShare {
			hot := rng.IntN(HotSet)
			for j := 0; j < n; j++ {
				data = append(data, rows[(hot+j)%len(rows)])
			}
		} else {
			for j := 0; j < n; j++ {
				unique++
				row := append([]float64(nil), rows[unique%len(rows)]...)
				row[unique%len(row)] += float64(unique/len(rows)+1) / 1024
				data = append(data, row)
			}
		}
		req, err := request(spec, host, input, data)
		if err != nil {
			return nil, err
		}
		reqs = append(reqs, req)
	}
	return reqs, nil
}

func request(spec Spec, host, input string, rows [][]float64) (loadgen.Request, error) {
	path := spec.Path
	json := append([]string{"Content-Type", "application/json"}, spec.Headers...)
	switch spec.Protocol {
	case Predict:
		if path == "" {
			path = "/predict?model=" + spec.Model
		}
		var b []byte
		if len(rows) == 1 {
			b = append(appendRow(append(b, `{"features":`...), rows[0]), '}')
		} else {
			b = append(appendRows(append(b, `{"features":`...), rows), '}')
		}
		return loadgen.NewRequest("POST", host, path, b, json...), nil
	case TFS:
		if path == "" {
			path = "/v1/models/" + spec.Model + ":predict"
		}
		b := append(appendRows([]byte(`{"instances":`), rows), '}')
		return loadgen.NewRequest("POST", host, path, b, json...), nil
	case V2JSON, V2Binary:
		if path == "" {
			path = "/v2/models/" + spec.Model + "/infer"
		}
		b := fmt.Appendf(nil, `{"inputs":[{"name":%q,"shape":[%d,%d],"datatype":"FP32"`, input, len(rows), len(rows[0]))
		if spec.Protocol == V2JSON {
			b = append(b, `,"data":`...)
			b = appendRows(b, rows)
			b = append(b, `}]}`...)
			return loadgen.NewRequest("POST", host, path, b, json...), nil
		}
		b = fmt.Appendf(b, `,"parameters":{"binary_data_size":%d}}]}`, 4*len(rows)*len(rows[0]))
		hdr := len(b)
		for _, r := range rows {
			for _, v := range r {
				b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(v)))
			}
		}
		return loadgen.NewRequest("POST", host, path, b,
			append([]string{"Content-Type", "application/octet-stream", "Inference-Header-Content-Length", strconv.Itoa(hdr)}, spec.Headers...)...), nil
	case GRPC, GRPCTyped:
		return grpcRequest(spec, input, rows)
	}
	return loadgen.Request{}, fmt.Errorf("workload: unknown protocol %q; want %s, %s, %s, %s, %s or %s", spec.Protocol, Predict, V2JSON, V2Binary, TFS, GRPC, GRPCTyped)
}

// grpcRequest returns a ModelInfer request, marshalled: Body holds the
// message and Path the method, for bench/grpcload. Raw contents are
// little-endian FP32, as KServe V2 specifies.
func grpcRequest(spec Spec, input string, rows [][]float64) (loadgen.Request, error) {
	in := &inferencepb.ModelInferRequest_InferInputTensor{Name: input, Datatype: "FP32", Shape: []int64{int64(len(rows)), int64(len(rows[0]))}}
	m := &inferencepb.ModelInferRequest{ModelName: spec.Model, Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{in}}
	if spec.Protocol == GRPCTyped {
		in.Contents = &inferencepb.InferTensorContents{}
		for _, r := range rows {
			for _, v := range r {
				in.Contents.Fp32Contents = append(in.Contents.Fp32Contents, float32(v))
			}
		}
	} else {
		var raw []byte
		for _, r := range rows {
			for _, v := range r {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(float32(v)))
			}
		}
		m.RawInputContents = [][]byte{raw}
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return loadgen.Request{}, fmt.Errorf("workload: %w", err)
	}
	return loadgen.Request{Method: "gRPC", Path: "/inference.GRPCInferenceService/ModelInfer", Body: b}, nil
}

func appendRow(b []byte, row []float64) []byte {
	b = append(b, '[')
	for i, v := range row {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, float64(float32(v)), 'g', -1, 32)
	}
	return append(b, ']')
}

func appendRows(b []byte, rows [][]float64) []byte {
	b = append(b, '[')
	for i, r := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendRow(b, r)
	}
	return append(b, ']')
}
