// Package grpcserver is Coalesce's gRPC front end: KServe V2's
// inference.GRPCInferenceService (proto/grpc_predict_v2.proto), the
// standard grpc.health.v1 health service for Kubernetes gRPC probes, and
// server reflection for grpcurl, on a port of their own (grpc.addr).
//
// It has no inference path of its own: every call becomes a proxy.Call and
// runs through proxy.Server.Infer (or Model, Authenticate), the path of
// the HTTP protocols, so that batching, the cache, de-duplication,
// http.max_inflight, API keys, rate limits, deadlines, priorities and
// metrics behave alike, and errors take their code from proxy.CodeOf.
package grpcserver

import (
	"context"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/proto/inferencepb"
	"github.com/coalesce-ml/coalesce/proxy"
)

// ServiceName is the full name of the KServe V2 gRPC service, as health
// checks and reflection know it.
const ServiceName = "inference.GRPCInferenceService"

// streamWorkers is how many goroutines serve calls, kept from call to
// call; a call beyond them while all are busy gets a goroutine of its own.
// A new goroutine per call (grpc-go's default) pays for growing its stack
// by copying (runtime.morestack, golang/go#18138) to the depth of the
// model's kernels, which run on the caller's goroutine for a batch it
// leads (batcher.Submit): 11 % of the CPU in a profile of
// BenchmarkModelInfer/grpc-raw/c1. GOMAXPROCS workers took c1 from 60 to
// 47 µs per call (-21 %, p = 0.009, 6 interleaved runs); 64 rather than 2
// took c64 from 17.0 to 13.0 µs (p = 0.065) in process and, end to end
// with bench/grpc.sh's client, 64 streams on one connection from 35,000
// to 46,000 calls/s (medians of 3 alternating runs), c1 unchanged. Idle
// workers hold only their stacks, which the garbage collector shrinks.
const streamWorkers = 64

// keepaliveTimeout is how long a keepalive ping may go unanswered before
// the connection is closed (grpc-go's default).
const keepaliveTimeout = 20 * time.Second

// Server is the gRPC front end of one proxy.Server. Create it with New,
// run it with Serve and stop it with Shutdown; it is safe for concurrent
// use.
type Server struct {
	gs       *grpc.Server
	health   *health.Server
	maxConns int // http.max_connections: connections per listener
}

// New returns the gRPC front end of p, configured by cfg (the grpc
// section, limits.max_body_bytes as the largest message, and p's TLS
// pair when tls.cert_file is set).
func New(cfg *config.Config, p *proxy.Server) *Server {
	g := cfg.GRPC
	opts := []grpc.ServerOption{
		// A message over the limit is refused by grpc-go itself with
		// ResourceExhausted before it is decoded.
		grpc.MaxRecvMsgSize(int(cfg.Limits.MaxBodyBytes)),
		grpc.MaxConcurrentStreams(uint32(g.MaxConcurrentStreams)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: g.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: g.KeepaliveTime, Timeout: keepaliveTimeout}),
		grpc.NumStreamWorkers(streamWorkers),
	}
	if tc := p.TLSConfig(); tc != nil {
		tc = tc.Clone()
		tc.NextProtos = []string{"h2"} // gRPC is HTTP/2 only
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	s := &Server{gs: grpc.NewServer(opts...), health: health.NewServer(), maxConns: cfg.HTTP.MaxConnections}
	inferencepb.RegisterGRPCInferenceServiceServer(s.gs, &service{p: p})
	healthpb.RegisterHealthServer(s.gs, s.health)
	s.health.SetServingStatus(ServiceName, healthpb.HealthCheckResponse_SERVING)
	if g.Reflection {
		reflection.Register(s.gs)
	}
	return s
}

// Serve accepts connections on ln until Shutdown; it returns nil after
// Shutdown and the listener's error otherwise. At most
// http.max_connections connections are open at once (when it is
// positive); one more is closed as soon as it is accepted (capListener).
func (s *Server) Serve(ln net.Listener) error {
	if s.maxConns > 0 {
		ln = &capListener{Listener: ln, max: int64(s.maxConns)}
	}
	if err := s.gs.Serve(ln); err != grpc.ErrServerStopped {
		return err
	}
	return nil
}

// SetDraining makes the health service answer NOT_SERVING, for the server
// and the inference service, so that gRPC probes and clients' health
// checks stop sending; calls keep being served until Shutdown.
func (s *Server) SetDraining() {
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
}

// Shutdown stops accepting connections and calls, lets the calls in
// flight finish, and returns; when ctx ends first it cancels them and
// returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.health.Shutdown() // NOT_SERVING, and no later change
	done := make(chan struct{})
	go func() { s.gs.GracefulStop(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.gs.Stop()
		<-done
		return ctx.Err()
	}
}

// Stop closes every connection and cancels the calls in flight at once;
// after a Shutdown it does nothing.
func (s *Server) Stop() { s.gs.Stop() }
