package grpcserver_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/grpcserver"
	"github.com/coalesce-ml/coalesce/internal/app"
	"github.com/coalesce-ml/coalesce/internal/fakemodel"
	"github.com/coalesce-ml/coalesce/proto/inferencepb"
	"github.com/coalesce-ml/coalesce/proxy"
)

// TestMain checks that the gRPC server leaves no goroutine behind;
// fasthttp's own background goroutines (its coarse clock, the cleaners of
// closed clients, idle workers) end on their own schedule.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// testConfig serves the fake models (internal/fakemodel) with a patient
// deadline, so that a loaded machine does not turn tests of the protocol
// into tests of admission control.
func testConfig() *config.Config {
	cfg := config.Default()
	cfg.Models.Default = "double"
	cfg.HTTP.RequestTimeout = 10 * time.Second
	cfg.Batching = config.Batching{Enabled: true, MaxQueueDelay: time.Millisecond, PriorityLevels: 2}
	cfg.Limits = config.Limits{MaxBodyBytes: 1 << 16, MaxTensorElements: 1000, MaxJSONDepth: 8}
	cfg.GRPC.Addr = "127.0.0.1:0"
	cfg.Shutdown.GracePeriod = 5 * time.Second
	return &cfg
}

// harness is a proxy.Server served over HTTP and gRPC on 127.0.0.1.
type harness struct {
	p     *proxy.Server
	g     *grpcserver.Server
	set   *metrics.Set
	http  *fasthttp.HostClient
	addr  string // the gRPC server's
	conn  *grpc.ClientConn
	infer inferencepb.GRPCInferenceServiceClient
}

// start serves the fake models with cfg.
func start(t testing.TB, cfg *config.Config) *harness {
	t.Helper()
	return startWith(t, cfg, fakemodel.Registry(t))
}

// startWith serves reg with cfg; the servers stop when the test ends.
func startWith(t testing.TB, cfg *config.Config, reg *backends.Registry) *harness {
	t.Helper()
	h := &harness{set: metrics.NewSet()}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := proxy.New(cfg, "test", reg, h.set, log)
	must(t, err)
	h.p, h.g = p, grpcserver.New(cfg, p)
	hs := p.HTTPServer()
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	go hs.Serve(p.Listener(hln)) //nolint:errcheck // returns when the listener closes
	go h.g.Serve(gln)            //nolint:errcheck // returns at Shutdown
	h.http = &fasthttp.HostClient{Addr: hln.Addr().String(), MaxConns: 512}
	h.addr = gln.Addr().String()
	h.conn, err = grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	h.infer = inferencepb.NewGRPCInferenceServiceClient(h.conn)
	t.Cleanup(func() {
		h.conn.Close()
		h.g.Stop()
		_ = hs.Shutdown()
		h.http.CloseIdleConnections()
		_ = p.Close(context.Background())
	})
	return h
}

// shippedConfig serves the repository's models/ (every shipped model).
func shippedConfig() *config.Config {
	cfg := testConfig()
	cfg.Models.Repository = "../models"
	cfg.Models.Default = ""
	cfg.Limits = config.Default().Limits
	return cfg
}

// startShipped serves models/ with cfg.
func startShipped(t testing.TB, cfg *config.Config) *harness {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg, err := backends.LoadRepository(cfg.Models.Repository, app.Loaders(cfg, metrics.NewSet(), log))
	must(t, err)
	return startWith(t, cfg, reg)
}

// httpDo sends one HTTP request and returns the status, headers of
// interest and body.
func (h *harness) httpDo(t testing.TB, method, path string, body []byte, headers ...string) (int, map[string]string, []byte) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://" + h.http.Addr + path)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if body != nil {
		req.SetBody(body)
	}
	if err := h.http.DoTimeout(req, resp, 30*time.Second); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	hdr := map[string]string{}
	for _, k := range []string{"Inference-Header-Content-Length", "Coalesce-Cache", "Content-Type"} {
		if v := resp.Header.Peek(k); v != nil {
			hdr[k] = string(v)
		}
	}
	return resp.StatusCode(), hdr, append([]byte(nil), resp.Body()...)
}
