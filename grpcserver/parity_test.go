package grpcserver_test

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/coalesce-ml/coalesce/internal/fakemodel"
	"github.com/coalesce-ml/coalesce/proto/inferencepb"
)

// The behaviours of the HTTP data plane that gRPC calls share beyond the
// inference path itself: drift sampling keyed by request id, the
// in-flight byte budget and the connection cap.

// zipProfile is a profile of the fake zip model (as proxy's drift tests).
const zipProfile = `{"version": 1, "model": "zip", "rows": 100,
 "features": [
  {"name": "x0", "tensor": "x", "column": 0, "kind": "numeric", "edges": [0, 4], "ref": [0.25, 0.5, 0.25, 0]},
  {"name": "x1", "tensor": "x", "column": 1, "kind": "numeric", "edges": [0, 4], "ref": [0.25, 0.5, 0.25, 0]},
  {"name": "x2", "tensor": "x", "column": 2, "kind": "numeric", "edges": [0, 4], "ref": [0.25, 0.5, 0.25, 0]}],
 "outputs": [{"name": "label", "tensor": "label", "column": 0, "kind": "categorical", "categories": ["0", "1", "2"], "ref": [0.4, 0.3, 0.3, 0, 0]}]}`

func zipRequest(id string) *inferencepb.ModelInferRequest {
	raw := make([]byte, 0, 12)
	for _, v := range []float32{1, 5, 2} {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
	}
	return &inferencepb.ModelInferRequest{ModelName: "zip", Id: id,
		Inputs:           []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 3}}},
		RawInputContents: [][]byte{raw}}
}

// TestDriftSamplesGRPCCalls: a gRPC call is sampled for drift as an HTTP
// request is, under the message's id, else its x-request-id metadata,
// else an id returned in the x-request-id header, so that feedback
// joins with it.
func TestDriftSamplesGRPCCalls(t *testing.T) {
	reg := fakemodel.Registry(t)
	m, err := reg.Get("zip", "")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(filepath.Dir(filepath.Dir(m.Path)), "profile.json"), []byte(zipProfile), 0o644))
	cfg := testConfig()
	cfg.Drift.SampleRate = 1
	h := startWith(t, cfg, reg)
	call := func(id string, md ...string) metadata.MD {
		t.Helper()
		var hdr metadata.MD
		ctx := metadata.AppendToOutgoingContext(context.Background(), md...)
		if _, err := h.infer.ModelInfer(ctx, zipRequest(id), grpc.Header(&hdr)); err != nil {
			t.Fatal(err)
		}
		return hdr
	}
	feedback := func(id string) string {
		t.Helper()
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI("/admin/feedback/zip")
		ctx.Request.SetBodyString(`{"id":"` + id + `","truth":1}`)
		h.p.AdminHandler(h.set, false)(&ctx)
		return string(ctx.Response.Body())
	}
	if hdr := call("v2-id-1"); len(hdr.Get("x-request-id")) != 0 {
		t.Errorf("a call with an id got x-request-id %q; want none", hdr.Get("x-request-id"))
	}
	call("", "x-request-id", "md-id-2")
	hdr := call("")
	gen := hdr.Get("x-request-id")
	if len(gen) != 1 || len(gen[0]) != 32 {
		t.Fatalf("a sampled call without an id got x-request-id %q; want a generated 32-hex id", gen)
	}
	for _, id := range []string{"v2-id-1", "md-id-2", gen[0]} {
		// The aggregator may not have taken the sample yet.
		deadline := time.Now().Add(10 * time.Second)
		for body := feedback(id); !strings.Contains(body, `"joined":true`); body = feedback(id) {
			if time.Now().After(deadline) {
				t.Fatalf("feedback for request id %q = %s; want joined", id, body)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestGRPCInflightBytes: a message that does not fit the in-flight byte
// budget (limits.inflight_bytes, shared with HTTP bodies) is refused with
// Unavailable and the HTTP message, before it is decoded.
func TestGRPCInflightBytes(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.InflightBytes = 40 // below the message: never fits
	h := start(t, cfg)
	_, err := h.infer.ModelInfer(context.Background(), zipRequest("some-request-id-that-is-long"))
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "limits.inflight_bytes") {
		t.Errorf("ModelInfer over the budget = %v %q; want Unavailable naming limits.inflight_bytes", st.Code(), st.Message())
	}
	cfg.Limits.InflightBytes = 1 << 16
	h = start(t, cfg)
	for range 3 { // each call gives its bytes back
		if _, err := h.infer.ModelInfer(context.Background(), zipRequest("some-request-id-that-is-long")); err != nil {
			t.Fatalf("ModelInfer within the budget = %v; want an answer", err)
		}
	}
}

// TestGRPCMaxConnections: the gRPC port holds at most
// http.max_connections connections; one more fails at once with
// Unavailable, and gets in once a place is free.
func TestGRPCMaxConnections(t *testing.T) {
	cfg := testConfig()
	cfg.HTTP.MaxConnections = 2
	h := start(t, cfg) // its own client holds the first connection
	ready := func(cc *grpc.ClientConn) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := inferencepb.NewGRPCInferenceServiceClient(cc).ServerReady(ctx, &inferencepb.ServerReadyRequest{})
		return err
	}
	must(t, ready(h.conn))
	dial := func() *grpc.ClientConn {
		cc, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		must(t, err)
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	second := dial()
	must(t, ready(second))
	third := dial()
	if err := ready(third); status.Code(err) != codes.Unavailable {
		t.Fatalf("a third connection's call = %v; want Unavailable (http.max_connections 2)", err)
	}
	second.Close()
	deadline := time.Now().Add(20 * time.Second)
	for ready(third) != nil { // grpc-go reconnects with backoff (1s, then more)
		if time.Now().After(deadline) {
			t.Fatal("the third connection was not admitted after the second closed")
		}
		third.Connect()
		time.Sleep(50 * time.Millisecond)
	}
}

// TestGRPCBudgetHeldWhileReceived: a message's bytes are held in the
// in-flight byte budget from its length prefix on, as an HTTP body's are
// from its Content-Length, so that clients sending messages slowly cannot
// hold more memory than the budget; they come back when its stream is
// reset or its connection closes.
func TestGRPCBudgetHeldWhileReceived(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.InflightBytes = 1000
	h := start(t, cfg)
	call := func() error {
		_, err := h.infer.ModelInfer(context.Background(), zipRequest("some-request-id-that-is-long"))
		return err
	}
	must(t, call())
	// waitFits polls until a call fits again: the bytes come back when the
	// server has read the reset or the close, which sends nothing back.
	waitFits := func(after string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			err := call()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("a call still refused 10s after %s: %v", after, err)
			}
		}
	}
	for _, end := range []string{"RST_STREAM", "closed connection"} {
		rc := dialRaw(t, h.addr)
		rc.headers(1, false)
		// Announced: just too many for the call's message to fit beside
		// them; sent: 3.
		hold := 1000 - proto.Size(zipRequest("some-request-id-that-is-long")) + 1
		must(t, rc.fr.WriteData(1, false, append(binary.BigEndian.AppendUint32([]byte{0}, uint32(hold)), 1, 2, 3)))
		// A PING's answer says the server has read the DATA before it.
		must(t, rc.fr.WritePing(false, [8]byte{7}))
		rc.until("the PING's answer", func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && p.IsAck() })
		if st := status.Convert(call()); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "limits.inflight_bytes") {
			t.Fatalf("a call while %d of 1000 bytes are held = %v %q; want Unavailable naming limits.inflight_bytes", hold, st.Code(), st.Message())
		}
		if end == "RST_STREAM" {
			must(t, rc.fr.WriteRSTStream(1, http2.ErrCodeCancel))
		} else {
			rc.nc.Close()
		}
		waitFits(end)
	}
}
