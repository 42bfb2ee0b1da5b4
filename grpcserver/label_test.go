package grpcserver_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/internal/fakemodel"
	"github.com/coalesce-ml/coalesce/proto/inferencepb"
	"github.com/coalesce-ml/coalesce/tensor"
)

// TestModelInferLabel: parameters["coalesce-model-label"] picks the
// version by its label (double: stable 1, canary 2), a version number wins
// over it, an unknown label is NotFound and another kind of parameter
// InvalidArgument; the answers count under the version that answered.
func TestModelInferLabel(t *testing.T) {
	h := start(t, testConfig())
	label := func(p *inferencepb.InferParameter, version string) *inferencepb.ModelInferRequest {
		r := doubleReq(1, 2, 3, 4)
		r.ModelVersion = version
		r.Parameters = map[string]*inferencepb.InferParameter{"coalesce-model-label": p}
		return r
	}
	str := func(s string) *inferencepb.InferParameter {
		return &inferencepb.InferParameter{ParameterChoice: &inferencepb.InferParameter_StringParam{StringParam: s}}
	}
	tests := []struct {
		name    string
		req     *inferencepb.ModelInferRequest
		code    codes.Code
		version string // of the answer
		msg     string // in the error
	}{
		{"stable", label(str("stable"), ""), codes.OK, "1", ""},
		{"canary", label(str("canary"), ""), codes.OK, "2", ""},
		{"none", doubleReq(1, 2, 3, 4), codes.OK, "2", ""},
		{"version wins", label(str("stable"), "2"), codes.OK, "2", ""},
		{"unknown", label(str("nope"), ""), codes.NotFound, "", "no version labelled nope"},
		{"not a string", label(&inferencepb.InferParameter{ParameterChoice: &inferencepb.InferParameter_Int64Param{Int64Param: 1}}, ""), codes.InvalidArgument, "", "coalesce-model-label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := h.infer.ModelInfer(context.Background(), tt.req)
			if st, _ := status.FromError(err); st.Code() != tt.code || !strings.Contains(st.Message(), tt.msg) {
				t.Fatalf("ModelInfer = %v; want %v containing %q", err, tt.code, tt.msg)
			}
			if err == nil && resp.GetModelVersion() != tt.version {
				t.Errorf("answered by version %s; want %s", resp.GetModelVersion(), tt.version)
			}
		})
	}
	for name, want := range map[string]uint64{
		`coalesce_requests_total{model="double",version="1",protocol="grpc",code="200"}`: 1,
		`coalesce_requests_total{model="double",version="2",protocol="grpc",code="200"}`: 3,
		`coalesce_requests_total{model="",version="",protocol="grpc",code="404"}`:        1,
	} {
		if got := h.set.GetOrCreateCounter(name).Get(); got != want {
			t.Errorf("%s = %d; want %d", name, got, want)
		}
	}
}

// TestModelInferCanary: gRPC calls that name no version take the canary
// split like HTTP requests, and their failures count toward its rollback:
// a canary (version 2, weight 1) that fails every call loses its weight
// after min_requests, and the calls after it go to the primary, version 1.
func TestModelInferCanary(t *testing.T) {
	h := start(t, testConfig())
	reg := h.p.Registry()
	v2, err := reg.Get("double", "2")
	must(t, err)
	cfg := v2.Config
	cfg.Canary = config.Canary{Version: "2", Weight: 1, Rollback: config.Rollback{Window: time.Hour, MinRequests: 3, MaxErrorRatio: 0.5}}
	bad := fakemodel.Models["double"]()
	bad.Run = func(context.Context, []*tensor.Tensor) ([]*tensor.Tensor, error) {
		return nil, errors.New("injected failure")
	}
	must(t, h.p.Update(reg.With(&backends.ModelVersion{Name: "double", Version: "2", Path: v2.Path, Config: cfg, Backend: bad, Meta: bad.Metadata()})))
	for i := range 3 {
		if _, err := h.infer.ModelInfer(context.Background(), doubleReq(1, 2, 3, 4)); status.Code(err) != codes.Internal {
			t.Fatalf("call %d to the failing canary = %v; want Internal", i, err)
		}
	}
	resp, err := h.infer.ModelInfer(context.Background(), doubleReq(1, 2, 3, 4))
	if err != nil || resp.GetModelVersion() != "1" {
		t.Fatalf("call after the rollback = %v, version %q; want version 1", err, resp.GetModelVersion())
	}
	if got := h.set.GetOrCreateCounter(`coalesce_requests_total{model="double",version="2",protocol="grpc",code="500"}`).Get(); got != 3 {
		t.Errorf("canary failures counted = %d; want 3", got)
	}
}

// TestModelInferStickyCanary: with canary.sticky_header, a gRPC call's
// metadata of that name decides its side as the HTTP header does: every
// call of one user lands on one version, on both of the transport's paths
// (plain calls run on its fast path, gzip-compressed ones on grpc-go's),
// and on the version an HTTP request with the same header value lands on.
func TestModelInferStickyCanary(t *testing.T) {
	h := start(t, testConfig())
	reg := h.p.Registry()
	v2, err := reg.Get("double", "2")
	must(t, err)
	cfg := v2.Config
	cfg.Canary = config.Canary{Version: "2", Weight: 0.5, StickyHeader: "X-User"}
	must(t, h.p.Update(reg.With(&backends.ModelVersion{Name: "double", Version: "2", Path: v2.Path, Config: cfg, Backend: v2.Backend, Meta: v2.Meta})))
	sides := map[string]int{}
	for u := range 16 {
		user := fmt.Sprintf("user-%d", u)
		ctx := metadata.AppendToOutgoingContext(context.Background(), "x-user", user)
		want := ""
		for i := range 6 {
			var opts []grpc.CallOption
			if i%2 == 1 {
				opts = append(opts, grpc.UseCompressor(gzip.Name))
			}
			resp, err := h.infer.ModelInfer(ctx, doubleReq(1, 2, 3, 4), opts...)
			must(t, err)
			if want == "" {
				want = resp.GetModelVersion()
			} else if got := resp.GetModelVersion(); got != want {
				t.Fatalf("%s: call %d answered by version %s, an earlier one by %s; want one side per user", user, i, got, want)
			}
		}
		sides[want]++
		code, _, body := h.httpDo(t, "POST", "/v2/models/double/infer", []byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}`), "X-User", user)
		if code != 200 || !strings.Contains(string(body), `"model_version":"`+want+`"`) {
			t.Errorf("%s over HTTP: %d %s; want version %s, as over gRPC", user, code, body, want)
		}
	}
	if sides["1"] == 0 || sides["2"] == 0 {
		t.Errorf("16 users split %v; want both versions used at weight 0.5", sides)
	}
}
