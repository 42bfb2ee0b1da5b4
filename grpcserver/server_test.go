package grpcserver_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/grpcserver"
	"github.com/coalesce-ml/coalesce/proto/inferencepb"
)

// batchConfig makes every batch wait (up to 10s) for a second row, so
// that two requests in one batch show that they were batched together.
func batchConfig() *config.Config {
	cfg := testConfig()
	cfg.Batching.PreferredBatchSize = 2
	cfg.Batching.MaxQueueDelay = 10 * time.Second
	cfg.HTTP.RequestTimeout = 30 * time.Second
	return cfg
}

// TestBatchingAcrossProtocols: a gRPC and an HTTP request run in one
// batch of the same batcher, each getting its own answer.
func TestBatchingAcrossProtocols(t *testing.T) {
	h := start(t, batchConfig())
	var wg sync.WaitGroup
	wg.Go(func() {
		resp, err := h.infer.ModelInfer(context.Background(), doubleReq(1, 2, 3, 4))
		if err != nil {
			t.Errorf("gRPC ModelInfer: %v", err)
			return
		}
		if got := resp.GetOutputs()[0].GetContents().GetFp32Contents(); !slices.Equal(got, []float32{2, 4, 6, 8}) {
			t.Errorf("gRPC y = %v; want [2 4 6 8]", got)
		}
	})
	status, _, body := h.httpDo(t, "POST", "/v2/models/double/infer", []byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[5,6,7,8]}]}`))
	wg.Wait()
	if want := `{"model_name":"double","model_version":"2","outputs":[{"name":"y","datatype":"FP32","shape":[1,4],"data":[10,12,14,16]},{"name":"cls","datatype":"INT64","shape":[1],"data":[3]}]}`; status != 200 || string(body) != want {
		t.Errorf("HTTP = %d %s; want 200 %s", status, body, want)
	}
	calls := h.set.GetOrCreateCounter(`coalesce_inference_calls_total{model="double",version="2"}`).Get()
	rows := h.set.GetOrCreateCounter(`coalesce_inference_rows_total{model="double",version="2"}`).Get()
	if calls != 1 || rows != 2 {
		t.Errorf("backend calls, rows = %d, %d; want 1, 2 (one batch of both protocols)", calls, rows)
	}
	for _, m := range []string{
		`coalesce_requests_total{model="double",version="2",protocol="grpc",code="200"}`,
		`coalesce_requests_total{model="double",version="2",protocol="v2",code="200"}`,
	} {
		if n := h.set.GetOrCreateCounter(m).Get(); n != 1 {
			t.Errorf("%s = %d; want 1", m, n)
		}
	}
}

// TestGracefulShutdown: Shutdown lets a call in flight finish (it waits
// in its batch until an HTTP request joins it) and refuses new ones.
func TestGracefulShutdown(t *testing.T) {
	h := start(t, batchConfig())
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := h.infer.ModelInfer(context.Background(), doubleReq(1, 2, 3, 4)); err != nil {
			t.Errorf("ModelInfer in flight at Shutdown: %v", err)
		}
	})
	waitQueued(t, h, "double", "2")
	stopped := make(chan error, 1)
	go func() { stopped <- h.g.Shutdown(context.Background()) }()
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned %v with a call in flight; want it to wait", err)
	case <-time.After(50 * time.Millisecond):
	}
	if status, _, body := h.httpDo(t, "POST", "/v2/models/double/infer", []byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[5,6,7,8]}]}`)); status != 200 {
		t.Fatalf("HTTP = %d %s; want 200", status, body)
	}
	wg.Wait()
	if err := <-stopped; err != nil {
		t.Errorf("Shutdown = %v; want nil", err)
	}
	if _, err := h.infer.ServerLive(context.Background(), &inferencepb.ServerLiveRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("ServerLive after Shutdown = %v; want Unavailable", err)
	}
}

// TestHealth: grpc.health.v1 answers SERVING for the server and the
// inference service, NOT_SERVING once draining; ServerReady follows the
// proxy's draining.
func TestHealth(t *testing.T) {
	h := start(t, testConfig())
	hc := healthpb.NewHealthClient(h.conn)
	check := func(service string, want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
		if err != nil || resp.GetStatus() != want {
			t.Errorf("Check(%q) = %v, %v; want %v", service, resp.GetStatus(), err, want)
		}
	}
	check("", healthpb.HealthCheckResponse_SERVING)
	check(grpcserver.ServiceName, healthpb.HealthCheckResponse_SERVING)
	if _, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("Check(nope) = %v; want NotFound", err)
	}
	h.p.SetDraining()
	h.g.SetDraining()
	check("", healthpb.HealthCheckResponse_NOT_SERVING)
	check(grpcserver.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	r, err := h.infer.ServerReady(context.Background(), &inferencepb.ServerReadyRequest{})
	if err != nil || r.GetReady() {
		t.Errorf("ServerReady while draining = %v, %v; want false", r.GetReady(), err)
	}
	mr, err := h.infer.ModelReady(context.Background(), &inferencepb.ModelReadyRequest{Name: "double"})
	if err != nil || mr.GetReady() {
		t.Errorf("ModelReady while draining = %v, %v; want false", mr.GetReady(), err)
	}
}

// TestHealthWatch: the streaming Watch of grpc.health.v1, which the
// transport hands to grpc-go (slowpath.go), sends the current status at
// once and each change as it happens, on a stream that stays open.
func TestHealthWatch(t *testing.T) {
	h := start(t, testConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := healthpb.NewHealthClient(h.conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: grpcserver.ServiceName})
	must(t, err)
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch's first status = %v, %v; want SERVING", r.GetStatus(), err)
	}
	// A call on the same connection while the stream is open.
	if _, err := h.infer.ModelInfer(context.Background(), doubleReq(1, 2, 3, 4)); err != nil {
		t.Fatalf("a call beside the open Watch: %v", err)
	}
	h.g.SetDraining()
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch's status after SetDraining = %v, %v; want NOT_SERVING", r.GetStatus(), err)
	}
	cancel()
	if _, err := w.Recv(); status.Code(err) != codes.Canceled {
		t.Errorf("Watch after the client cancelled = %v; want Canceled", err)
	}
}

// TestReflection: server reflection lists the services, so that grpcurl
// works without the proto file, and describes the inference service.
func TestReflection(t *testing.T) {
	h := start(t, testConfig())
	stream, err := reflectionpb.NewServerReflectionClient(h.conn).ServerReflectionInfo(context.Background())
	must(t, err)
	defer stream.CloseSend()
	must(t, stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}))
	resp, err := stream.Recv()
	must(t, err)
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{grpcserver.ServiceName, "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v; want %s among them", names, want)
		}
	}
	must(t, stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: grpcserver.ServiceName}}))
	resp, err = stream.Recv()
	must(t, err)
	if len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Errorf("reflection has no file descriptor for %s", grpcserver.ServiceName)
	}
}

// TestCache: a model with the cache on answers a repeated input from it,
// and says so in the coalesce-cache header; Cache-Control: no-store
// bypasses it.
func TestCache(t *testing.T) {
	cfg := testConfig()
	cfg.Cache.Enabled = true
	h := start(t, cfg)
	call := func(md ...string) string {
		t.Helper()
		var hdr metadata.MD
		ctx := metadata.AppendToOutgoingContext(context.Background(), md...)
		_, err := h.infer.ModelInfer(ctx, doubleReq(1, 2, 3, 4), grpc.Header(&hdr))
		must(t, err)
		return first(hdr.Get("coalesce-cache"))
	}
	if got := call(); got != "miss" {
		t.Errorf("first call: coalesce-cache %q; want miss", got)
	}
	if got := call(); got != "hit" {
		t.Errorf("second call: coalesce-cache %q; want hit", got)
	}
	if got := call("cache-control", "no-store"); got != "miss" {
		t.Errorf("no-store: coalesce-cache %q; want miss", got)
	}
	// The HTTP request for the same tensors finds the gRPC answer.
	_, hdr, _ := h.httpDo(t, "POST", "/v2/models/double/infer", []byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}`))
	if hdr["Coalesce-Cache"] != "hit" {
		t.Errorf("HTTP after gRPC: Coalesce-Cache %q; want hit", hdr["Coalesce-Cache"])
	}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}
