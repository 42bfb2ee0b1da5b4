package grpcload

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/coalesce-ml/coalesce/bench/loadgen"
	"github.com/coalesce-ml/coalesce/proto/inferencepb"
)

// stub is a GRPCInferenceService whose ModelInfer answers by model name:
// "ok" succeeds, "echo" answers the request's raw input as its raw
// output, "shed" is ResourceExhausted, "down" Unavailable, "missing"
// NotFound, "bad" InvalidArgument, "stall" waits until the call is
// cancelled. It records what it received.
type stub struct {
	inferencepb.UnimplementedGRPCInferenceServiceServer
	calls atomic.Int64
	mu    sync.Mutex // guards the fields below
	keys  map[string]bool
	peers map[string]bool // client addresses: one per connection
	raw   []byte          // the last raw_input_contents
}

func (s *stub) ModelInfer(ctx context.Context, req *inferencepb.ModelInferRequest) (*inferencepb.ModelInferResponse, error) {
	s.calls.Add(1)
	md, _ := metadata.FromIncomingContext(ctx)
	p, _ := peer.FromContext(ctx)
	s.mu.Lock()
	for _, k := range md.Get("x-api-key") {
		s.keys[k] = true
	}
	s.peers[p.Addr.String()] = true
	if len(req.RawInputContents) > 0 {
		s.raw = req.RawInputContents[0]
	}
	s.mu.Unlock()
	switch req.ModelName {
	case "ok":
		return &inferencepb.ModelInferResponse{ModelName: "ok", RawOutputContents: [][]byte{{1, 2, 3, 4}}}, nil
	case "echo":
		return &inferencepb.ModelInferResponse{ModelName: "echo", RawOutputContents: req.RawInputContents}, nil
	case "missing":
		return nil, status.Error(codes.NotFound, "no such model")
	case "shed":
		return nil, status.Error(codes.ResourceExhausted, "queue full")
	case "down":
		return nil, status.Error(codes.Unavailable, "draining")
	case "stall":
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return nil, status.Error(codes.InvalidArgument, "bad input")
}

func startStub(t *testing.T, opts ...grpc.ServerOption) (*stub, string) {
	s, addr, _ := startStubServer(t, opts...)
	return s, addr
}

// startStubServer is startStub that also returns the server, for tests
// that stop it.
func startStubServer(t *testing.T, opts ...grpc.ServerOption) (*stub, string, *grpc.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &stub{keys: map[string]bool{}, peers: map[string]bool{}}
	gs := grpc.NewServer(opts...)
	inferencepb.RegisterGRPCInferenceServiceServer(gs, s)
	go gs.Serve(ln) //nolint:errcheck // ends with Stop
	t.Cleanup(gs.Stop)
	return s, ln.Addr().String(), gs
}

// clients runs f as a subtest for grpc-go's client and the lean one.
func clients(t *testing.T, f func(t *testing.T, lean bool)) {
	t.Run("grpc-go", func(t *testing.T) { f(t, false) })
	t.Run("lean", func(t *testing.T) { f(t, true) })
}

func request(t *testing.T, model string) loadgen.Request {
	t.Helper()
	return requestRaw(t, model, []byte{0, 0, 128, 63})
}

// requestRaw is a request of model with raw as its raw input.
func requestRaw(t *testing.T, model string, raw []byte) loadgen.Request {
	t.Helper()
	b, err := proto.Marshal(&inferencepb.ModelInferRequest{ModelName: model, RawInputContents: [][]byte{raw}})
	if err != nil {
		t.Fatal(err)
	}
	return loadgen.Request{Method: "gRPC", Path: ModelInfer, Body: b}
}

func TestRunCountsOutcomes(t *testing.T) {
	clients(t, func(t *testing.T, lean bool) {
		s, addr := startStub(t)
		c, err := New(Config{Addr: addr, Channels: 2, Metadata: []string{"x-api-key", "k1"}, Lean: lean})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		reqs := []loadgen.Request{request(t, "ok"), request(t, "ok"), request(t, "shed"), request(t, "down"), request(t, "bad")}
		res, err := loadgen.Run(context.Background(), loadgen.Config{Addr: addr, Requests: reqs, Connections: 4, NewConn: c.Conn,
			Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond, MaxRequests: 2000})
		if err != nil {
			t.Fatal(err)
		}
		if res.Requests == 0 || res.OK+res.Shed+res.Errors["400"] != res.Requests || len(res.Errors) != 1 {
			t.Fatalf("requests %d = ok %d + shed %d + errors %v?", res.Requests, res.OK, res.Shed, res.Errors)
		}
		// Each worker walks the mix in order: 2/5 succeed, 2/5 are shed.
		if q := float64(res.Shed) / float64(res.Requests); q < 0.3 || q > 0.5 {
			t.Errorf("shed share = %.2f; want about 0.4", q)
		}
		if res.Latency.TotalCount() != res.Requests {
			t.Errorf("histogram holds %d values; want %d", res.Latency.TotalCount(), res.Requests)
		}
		if served := s.calls.Load(); served <= res.Requests {
			t.Errorf("server saw %d calls, figures count %d; the warm-up must not be counted", served, res.Requests)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.keys["k1"] || len(s.keys) != 1 {
			t.Errorf("x-api-key metadata received = %v; want k1", s.keys)
		}
		if len(s.peers) != 2 {
			t.Errorf("calls came over %d connections; want 2 channels", len(s.peers))
		}
		if string(s.raw) != "\x00\x00\x80\x3f" {
			t.Errorf("raw_input_contents = %x; want the request's bytes 0000803f", s.raw)
		}
	})
}

func TestOneChannelForAllStreams(t *testing.T) {
	clients(t, func(t *testing.T, lean bool) {
		s, addr := startStub(t)
		c, err := New(Config{Addr: addr, StaticWindow: 1 << 20, Lean: lean})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		res, err := loadgen.Run(context.Background(), loadgen.Config{Addr: addr, Requests: []loadgen.Request{request(t, "ok")},
			Connections: 8, NewConn: c.Conn, Duration: time.Minute, MaxRequests: 400})
		if err != nil {
			t.Fatal(err)
		}
		if res.OK < 400 || len(res.Errors) != 0 {
			t.Errorf("ok %d, errors %v; want 400 successes", res.OK, res.Errors)
		}
		if len(s.peers) != 1 {
			t.Errorf("8 streams came over %d connections; want 1", len(s.peers))
		}
	})
}

func TestDialErrorsAreCounted(t *testing.T) {
	clients(t, func(t *testing.T, lean bool) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close() // nothing listens there now
		c, err := New(Config{Addr: addr, Lean: lean})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		res, err := loadgen.Run(context.Background(), loadgen.Config{Addr: addr, Requests: []loadgen.Request{request(t, "ok")},
			Connections: 2, NewConn: c.Conn, Duration: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if res.Errors["dial: connection refused"] == 0 || len(res.Errors) != 1 || res.OK != 0 || res.Shed != 0 {
			t.Errorf("result = %+v; want only dial errors, no shed load", res)
		}
	})
}

func TestCallTimesOut(t *testing.T) {
	clients(t, func(t *testing.T, lean bool) {
		_, addr := startStub(t)
		c, err := New(Config{Addr: addr, Lean: lean})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		st := c.Conn(0)
		defer st.Close()
		req := request(t, "stall")
		status, err := st.Do(&req, time.Now().Add(50*time.Millisecond))
		var ne net.Error
		if status != 0 || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Do(stalling call) = %d, %v; want 0 and a timeout", status, err)
		}
		// The stream recovers: the next call gets a fresh context.
		ok := request(t, "ok")
		if status, err := st.Do(&ok, time.Now().Add(10*time.Second)); status != 200 || err != nil {
			t.Errorf("Do after a timeout = %d, %v; want 200", status, err)
		}
	})
}

func TestHTTPStatus(t *testing.T) {
	f := func(c codes.Code, want int) {
		t.Helper()
		if got := HTTPStatus(c); got != want {
			t.Errorf("HTTPStatus(%v) = %d; want %d", c, got, want)
		}
	}
	f(codes.OK, 200)
	f(codes.InvalidArgument, 400)
	f(codes.Unauthenticated, 401)
	f(codes.PermissionDenied, 403)
	f(codes.NotFound, 404)
	f(codes.ResourceExhausted, 429)
	f(codes.Unavailable, 503)
	f(codes.DeadlineExceeded, 504)
	f(codes.Internal, 500)
	f(codes.Unknown, 500)
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{{}, {Addr: "h:1", Channels: -1}, {Addr: "h:1", Metadata: []string{"x-api-key"}}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error; want one", cfg)
		}
	}
}
