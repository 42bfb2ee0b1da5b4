package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/batcher"
	"github.com/coalesce-ml/coalesce/codec"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/internal/fakemodel"
	"github.com/coalesce-ml/coalesce/proto/inferencepb"
	"github.com/coalesce-ml/coalesce/ratelimit"
	"github.com/coalesce-ml/coalesce/tensor"
)

// TestCodeOf maps every error kind StatusOf knows to the gRPC code
// Triton's front end gives it, and GRPCStatus adds RetryInfo where HTTP
// sends Retry-After.
func TestCodeOf(t *testing.T) {
	model := func(err error) error { return modelError{err: err, model: "m", version: "1", timeout: time.Second} }
	tests := []struct {
		err   error
		code  codes.Code
		retry time.Duration // RetryInfo's delay; 0: none
	}{
		{badRequest("x"), codes.InvalidArgument, 0},
		{&codec.Error{Kind: codec.BadRequest, Msg: "x"}, codes.InvalidArgument, 0},
		{&codec.Error{Kind: codec.TooLarge, Msg: "x"}, codes.ResourceExhausted, 0},
		{&Error{Status: 405, Msg: "x"}, codes.Unimplemented, 0},
		{notFound{err: backends.ErrModelNotFound, name: "m"}, codes.NotFound, 0},
		{notFound{err: backends.ErrVersionNotFound, name: "m", version: "2"}, codes.NotFound, 0},
		{errUnauthorized{}, codes.Unauthenticated, 0},
		{errForbidden{key: "k", model: "m"}, codes.PermissionDenied, 0},
		{errLimited{d: ratelimit.Decision{Scope: ratelimit.ScopeKey, Limit: 1, RetryAfter: 1500 * time.Millisecond}}, codes.ResourceExhausted, 2 * time.Second},
		{errInflight{1}, codes.ResourceExhausted, time.Second},
		{model(batcher.ErrQueueFull), codes.ResourceExhausted, time.Second},
		{model(batcher.ErrOverloaded), codes.ResourceExhausted, time.Second},
		{model(batcher.ErrClosed), codes.Unavailable, time.Second},
		{model(backends.ErrUnavailable), codes.Unavailable, time.Second},
		{model(retryAfterErr{3 * time.Second}), codes.Unavailable, 3 * time.Second},
		{model(backends.ErrBadGateway), codes.Unavailable, 0},
		{model(batcher.ErrExpired), codes.DeadlineExceeded, 0},
		{model(context.DeadlineExceeded), codes.DeadlineExceeded, 0},
		{model(backends.ErrUpstreamTimeout), codes.DeadlineExceeded, 0},
		{model(backends.ErrInvalidInput), codes.InvalidArgument, 0},
		{fmt.Errorf("%w: boom", errPanic), codes.Internal, 0},
		{errors.New("other"), codes.Internal, 0},
	}
	for _, tt := range tests {
		if got := CodeOf(tt.err); got != tt.code {
			t.Errorf("CodeOf(%v) = %v; want %v (HTTP %d)", tt.err, got, tt.code, StatusOf(tt.err))
		}
		st := status.Convert(GRPCStatus(tt.err))
		if st.Code() != tt.code || st.Message() != tt.err.Error() {
			t.Errorf("GRPCStatus(%v) = %v %q; want %v with the HTTP message", tt.err, st.Code(), st.Message(), tt.code)
		}
		var got time.Duration
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				got = ri.GetRetryDelay().AsDuration()
			}
		}
		if got != tt.retry {
			t.Errorf("GRPCStatus(%v): RetryInfo %v; want %v", tt.err, got, tt.retry)
		}
	}
	if GRPCStatus(nil) != nil {
		t.Errorf("GRPCStatus(nil) != nil")
	}
}

// retryAfterErr is an unavailable backend that knows when to retry (an
// open breaker).
type retryAfterErr struct{ d time.Duration }

func (e retryAfterErr) Error() string             { return "breaker open" }
func (e retryAfterErr) Unwrap() error             { return backends.ErrUnavailable }
func (e retryAfterErr) RetryAfter() time.Duration { return e.d }

// grpcExchange is the exchange of package grpcserver, reduced: the
// message in, the answer dropped.
type grpcExchange struct {
	req *inferencepb.ModelInferRequest
}

func (x grpcExchange) Decode(r *codec.Request) error { return codec.DecodeGRPC(r, x.req) }
func (x grpcExchange) Encode(r *codec.Request, out []*tensor.Tensor, _ string) error {
	_ = codec.EncodeGRPC(r, out)
	return nil
}

// TestInferShadow: a call through Infer (gRPC) gets its shadow copy, as
// an HTTP request does, and the shadow's answers are compared.
func TestInferShadow(t *testing.T) {
	s, _, set := testServerWith(t, patientConfig())
	must(t, s.Update(withVersion2(t, fakemodel.Models["double"](), func(m *config.ModelConfig) {
		m.Shadow = config.Shadow{Version: "2", Share: 1, Queue: 64}
	})))
	req := &inferencepb.ModelInferRequest{ModelName: "double", ModelVersion: "1",
		Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 4},
			Contents: &inferencepb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4}}}}}
	rows := func() string {
		var sb strings.Builder
		set.WritePrometheus(&sb)
		for _, line := range strings.Split(sb.String(), "\n") {
			if v, ok := strings.CutPrefix(line, `coalesce_shadow_rows_total{model="double",version="2"} `); ok {
				return v
			}
		}
		return ""
	}
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; rows() == "" || rows() == "0"; i++ {
		if i < 20 {
			c := Call{Arrived: time.Now()}
			must(t, s.Infer(&c, "double", "1", grpcExchange{req}))
		}
		if time.Now().After(deadline) {
			t.Fatal("no shadow row compared after 20 calls through Infer; want their copies run on version 2")
		}
		time.Sleep(time.Millisecond)
	}
}
