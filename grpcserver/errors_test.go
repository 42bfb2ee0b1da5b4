package grpcserver_test

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/proto/inferencepb"
)

type inputs = []*inferencepb.ModelInferRequest_InferInputTensor

// doubleReq is a request of one row to the fake model double.
func doubleReq(x ...float32) *inferencepb.ModelInferRequest {
	return &inferencepb.ModelInferRequest{ModelName: "double", Inputs: inputs{{Name: "x", Datatype: "FP32", Shape: []int64{1, 4},
		Contents: &inferencepb.InferTensorContents{Fp32Contents: x}}}}
}

func f32raw(v ...float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// TestErrorCodes checks the code and message of each error kind.
func TestErrorCodes(t *testing.T) {
	h := start(t, testConfig())
	tests := []struct {
		name string
		req  *inferencepb.ModelInferRequest
		code codes.Code
		msg  string // a part of the message
	}{
		{"unknown model", &inferencepb.ModelInferRequest{ModelName: "nope"}, codes.NotFound, `model "nope"`},
		{"unknown version", &inferencepb.ModelInferRequest{ModelName: "double", ModelVersion: "9"}, codes.NotFound, `version "9"`},
		{"no inputs", &inferencepb.ModelInferRequest{ModelName: "double"}, codes.InvalidArgument, "inputs: empty"},
		{"wrong shape", &inferencepb.ModelInferRequest{ModelName: "double", Inputs: inputs{{Name: "x", Datatype: "FP32", Shape: []int64{1, 3},
			Contents: &inferencepb.InferTensorContents{Fp32Contents: []float32{1, 2, 3}}}}}, codes.InvalidArgument, `input "x" has shape [1,3]; want [-1,4]`},
		{"count", doubleReq(1, 2, 3), codes.InvalidArgument, "inputs[0].contents.fp32_contents: has 3 values; want 4"},
		{"wrong field", &inferencepb.ModelInferRequest{ModelName: "double", Inputs: inputs{{Name: "x", Datatype: "FP32", Shape: []int64{1, 4},
			Contents: &inferencepb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4}, IntContents: []int32{1}}}}}, codes.InvalidArgument, "other than fp32_contents"},
		{"bad datatype", &inferencepb.ModelInferRequest{ModelName: "double", Inputs: inputs{{Name: "x", Datatype: "FP8", Shape: []int64{1, 4}}}}, codes.InvalidArgument, `"FP8" is not a datatype`},
		{"unknown input", &inferencepb.ModelInferRequest{ModelName: "double", Inputs: inputs{{Name: "z", Datatype: "FP32", Shape: []int64{1, 4},
			Contents: &inferencepb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4}}}}}, codes.InvalidArgument, `has no input "z"`},
		{"raw size", &inferencepb.ModelInferRequest{ModelName: "double", Inputs: inputs{{Name: "x", Datatype: "FP32", Shape: []int64{1, 4}}},
			RawInputContents: [][]byte{f32raw(1, 2)}}, codes.InvalidArgument, "raw_input_contents[0]: 8 bytes; want 16"},
		{"raw and contents", &inferencepb.ModelInferRequest{ModelName: "double", Inputs: inputs{{Name: "x", Datatype: "FP32", Shape: []int64{1, 4},
			Contents: &inferencepb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4}}}}, RawInputContents: [][]byte{f32raw(1, 2, 3, 4)}}, codes.InvalidArgument, "raw_input_contents"},
		{"nan", doubleReq(1, float32(math.NaN()), 3, 4), codes.InvalidArgument, "want a finite number"},
		{"unknown output", &inferencepb.ModelInferRequest{ModelName: "double", Inputs: doubleReq(1, 2, 3, 4).Inputs,
			Outputs: []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{{Name: "q"}}}, codes.InvalidArgument, `has no output "q"`},
		{"too many elements", &inferencepb.ModelInferRequest{ModelName: "double", Inputs: inputs{{Name: "x", Datatype: "FP32", Shape: []int64{1000, 4}}}}, codes.ResourceExhausted, "limits.max_tensor_elements"},
		{"batch too large", &inferencepb.ModelInferRequest{ModelName: "double", Inputs: inputs{{Name: "x", Datatype: "FP32", Shape: []int64{9, 4}}},
			RawInputContents: [][]byte{make([]byte, 9*16)}}, codes.InvalidArgument, "max_batch_size 8"},
		{"timeout parameter", &inferencepb.ModelInferRequest{ModelName: "double", Parameters: map[string]*inferencepb.InferParameter{
			"timeout": {ParameterChoice: &inferencepb.InferParameter_StringParam{StringParam: "1s"}}}}, codes.InvalidArgument, `parameters["timeout"]`},
		{"backend panic", &inferencepb.ModelInferRequest{ModelName: "panic", Inputs: inputs{{Name: "x", Datatype: "FP32", Shape: []int64{1, 1}}},
			RawInputContents: [][]byte{f32raw(1)}}, codes.Internal, "panic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.infer.ModelInfer(context.Background(), tt.req)
			st := status.Convert(err)
			if st.Code() != tt.code || !strings.Contains(st.Message(), tt.msg) {
				t.Errorf("ModelInfer = %v %q; want %v with %q", st.Code(), st.Message(), tt.code, tt.msg)
			}
		})
	}
	// The same message as the HTTP answer for the same mistake.
	_, err := h.infer.ModelInfer(context.Background(), doubleReq(1, 2, 3))
	_, _, body := h.httpDo(t, "POST", "/v2/models/double/infer", []byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3]}]}`))
	if got := status.Convert(err).Message(); !strings.Contains(string(body), strings.TrimPrefix(got, "inputs[0].contents.fp32_contents: ")) {
		t.Errorf("gRPC message %q is not the HTTP one %s (but for the field)", got, body)
	}
	for _, name := range []string{"ModelReady", "ModelMetadata"} {
		var err error
		if name == "ModelReady" {
			_, err = h.infer.ModelReady(context.Background(), &inferencepb.ModelReadyRequest{Name: "nope"})
		} else {
			_, err = h.infer.ModelMetadata(context.Background(), &inferencepb.ModelMetadataRequest{Name: "double", Version: "7"})
		}
		if c := status.Code(err); c != codes.NotFound {
			t.Errorf("%s of an unknown model = %v; want NotFound", name, c)
		}
	}
}

// TestMessageTooLarge: a message over limits.max_body_bytes is refused by
// gRPC's own limit.
func TestMessageTooLarge(t *testing.T) {
	h := start(t, testConfig())
	req := &inferencepb.ModelInferRequest{ModelName: "double", Inputs: inputs{{Name: "x", Datatype: "FP32", Shape: []int64{8, 4}}},
		RawInputContents: [][]byte{make([]byte, 1<<17)}}
	_, err := h.infer.ModelInfer(context.Background(), req)
	if c := status.Code(err); c != codes.ResourceExhausted {
		t.Errorf("ModelInfer of 128 KiB with limits.max_body_bytes 64 KiB = %v; want ResourceExhausted", err)
	}
}

// TestDeadline: the gRPC deadline is the request's deadline; a model that
// does not answer within it gives DeadlineExceeded, as do requests whose
// deadline passed before they arrived.
func TestDeadline(t *testing.T) {
	h := start(t, testConfig())
	slow := &inferencepb.ModelInferRequest{ModelName: "slow", Inputs: inputs{{Name: "x", Datatype: "FP32", Shape: []int64{1, 1}}}, RawInputContents: [][]byte{f32raw(1)}}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := h.infer.ModelInfer(ctx, slow)
	if c := status.Code(err); c != codes.DeadlineExceeded {
		t.Errorf("ModelInfer(slow) with a 50ms deadline = %v; want DeadlineExceeded", err)
	}
	// The server's own answer, not the client's: a deadline a client
	// does not enforce (the timeout parameter, in µs).
	slow.Parameters = map[string]*inferencepb.InferParameter{"timeout": {ParameterChoice: &inferencepb.InferParameter_Int64Param{Int64Param: 20000}}}
	_, err = h.infer.ModelInfer(context.Background(), slow)
	if st := status.Convert(err); st.Code() != codes.DeadlineExceeded || !strings.Contains(st.Message(), "within the request deadline (20ms)") {
		t.Errorf("ModelInfer(slow, timeout 20ms) = %v; want DeadlineExceeded naming 20ms", err)
	}
}

// TestOverload: a request beyond http.max_inflight is refused with
// ResourceExhausted and RetryInfo; one to a closed server with
// Unavailable. The request holding the one slot waits in its batch for a
// second row (batchConfig) until Close runs it.
func TestOverload(t *testing.T) {
	cfg := batchConfig()
	cfg.HTTP.MaxInflight = 1
	h := start(t, cfg)
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := h.infer.ModelInfer(context.Background(), doubleReq(1, 2, 3, 4)); err != nil {
			t.Errorf("the request in flight: %v; want its answer", err)
		}
	})
	waitQueued(t, h, "double", "2")
	_, err := h.infer.ModelInfer(context.Background(), doubleReq(1, 2, 3, 4))
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "http.max_inflight") || retryDelay(st) != time.Second {
		t.Errorf("ModelInfer with another in flight and http.max_inflight 1 = %v; want ResourceExhausted naming http.max_inflight, RetryInfo 1s", err)
	}
	must(t, h.p.Close(context.Background())) // runs the queued request
	wg.Wait()
	_, err = h.infer.ModelInfer(context.Background(), doubleReq(1, 2, 3, 4))
	if st := status.Convert(err); st.Code() != codes.Unavailable || retryDelay(st) != time.Second {
		t.Errorf("ModelInfer after Close = %v; want Unavailable with RetryInfo 1s", err)
	}
}

// waitQueued returns once a request waits in the queue of model version.
func waitQueued(t *testing.T, h *harness, model, version string) {
	t.Helper()
	g := h.set.GetOrCreateGauge(`coalesce_queue_rows{model="`+model+`",version="`+version+`"}`, nil)
	for deadline := time.Now().Add(10 * time.Second); g.Get() < 1; {
		if time.Now().After(deadline) {
			t.Fatalf("no request queued for %s version %s within 10s", model, version)
		}
		time.Sleep(time.Millisecond) // polling a gauge: there is no event to wait on
	}
}

func retryDelay(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return -1
}

// TestAPIKeys: keys come from the authorization (Bearer) or x-api-key
// metadata; health needs none; a key may call only its models.
func TestAPIKeys(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.yaml")
	must(t, os.WriteFile(keys, []byte("keys:\n  - {name: app, key: s3cret-0123456789abcdef}\n  - {name: narrow, key: n4rrow-0123456789abcdef, models: [multi]}\n"), 0o600))
	cfg := testConfig()
	cfg.Auth.KeysFile = keys
	h := start(t, cfg)
	call := func(md ...string) error {
		ctx := metadata.AppendToOutgoingContext(context.Background(), md...)
		_, err := h.infer.ModelInfer(ctx, doubleReq(1, 2, 3, 4))
		return err
	}
	tests := []struct {
		name string
		md   []string
		code codes.Code
	}{
		{"none", nil, codes.Unauthenticated},
		{"wrong", []string{"authorization", "Bearer nope"}, codes.Unauthenticated},
		{"bearer", []string{"authorization", "Bearer s3cret-0123456789abcdef"}, codes.OK},
		{"x-api-key", []string{"x-api-key", "s3cret-0123456789abcdef"}, codes.OK},
		{"other model's key", []string{"x-api-key", "n4rrow-0123456789abcdef"}, codes.PermissionDenied},
	}
	for _, tt := range tests {
		if c := status.Code(call(tt.md...)); c != tt.code {
			t.Errorf("%s: ModelInfer = %v; want %v", tt.name, c, tt.code)
		}
	}
	if _, err := h.infer.ServerMetadata(context.Background(), &inferencepb.ServerMetadataRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("ServerMetadata without a key = %v; want Unauthenticated", err)
	}
	if _, err := h.infer.ServerReady(context.Background(), &inferencepb.ServerReadyRequest{}); err != nil {
		t.Errorf("ServerReady without a key = %v; want an answer (health needs no key)", err)
	}
	if c := h.set.GetOrCreateCounter(`coalesce_auth_failures_total{reason="missing"}`).Get(); c < 2 {
		t.Errorf("coalesce_auth_failures_total{reason=\"missing\"} = %d; want at least 2", c)
	}
}

// TestRateLimit: a client address's empty bucket refuses with
// ResourceExhausted, the HTTP 429 message and RetryInfo for when it
// holds a token again; the gRPC peer is the client.
func TestRateLimit(t *testing.T) {
	cfg := testConfig()
	cfg.Rate.Client = config.Bucket{Rate: 0.1, Burst: 1} // one token per 10s
	h := start(t, cfg)
	if _, err := h.infer.ModelInfer(context.Background(), doubleReq(1, 2, 3, 4)); err != nil {
		t.Fatalf("first call: %v; want an answer", err)
	}
	_, err := h.infer.ModelInfer(context.Background(), doubleReq(1, 2, 3, 4))
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "this client address's limit") {
		t.Fatalf("second call = %v %q; want ResourceExhausted naming the client address's limit", st.Code(), st.Message())
	}
	if d := retryDelay(st); d < 9*time.Second || d > 10*time.Second {
		t.Errorf("RetryInfo delay = %v; want 9-10s (a token per 10s)", d)
	}
	if n := h.set.GetOrCreateCounter(`coalesce_requests_total{model="double",version="2",protocol="grpc",code="429"}`).Get(); n != 1 {
		t.Errorf(`coalesce_requests_total{model="double",version="2",protocol="grpc",code="429"} = %d; want 1`, n)
	}
}
