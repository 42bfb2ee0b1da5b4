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
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // gzip-compressed calls, served by grpc-go (slowpath.go)
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/proto/inferencepb"
	"github.com/coalesce-ml/coalesce/proxy"
)

// ServiceName is the full name of the KServe V2 gRPC service, as health
// checks and reflection know it.
const ServiceName = "inference.GRPCInferenceService"

// streamWorkers is how many goroutines run the fast path's calls that
// do not run on their connection's reading goroutine, kept from call to
// call; a call beyond them while all are busy gets a goroutine of its
// own. A new goroutine per call pays for growing its stack by copying
// (runtime.morestack, golang/go#18138) to the depth of the model's
// kernels, which run on the caller's goroutine for a batch it leads
// (batcher.Submit): 11 % of the CPU in a profile of
// BenchmarkModelInfer/grpc-raw/c1 under grpc-go's transport, whose
// grpc.NumStreamWorkers took 64 streams on one connection from 35,000 to
// 46,000 calls/s (bench/RESULTS.md). Idle workers hold only their stacks,
// which the garbage collector shrinks.
const streamWorkers = 64

// Server is the gRPC front end of one proxy.Server. Create it with New,
// run it with Serve and stop it with Shutdown; it is safe for concurrent
// use.
type Server struct {
	gs     *grpc.Server // every call the fast path does not take (slowpath.go)
	health *health.Server
	svc    *service
	fast   map[string]method

	maxConns         int // http.max_connections: connections per listener
	maxStreams       int
	maxMsg           int // limits.max_body_bytes
	keepaliveTime    time.Duration
	keepaliveMinTime time.Duration
	kaTimeout        time.Duration // keepaliveTimeout; shorter in tests
	tls              *tls.Config
	ctx              context.Context // grpc-go's calls' parent
	cancel           context.CancelFunc

	work     chan *stream
	workers  sync.WaitGroup
	mu       sync.Mutex
	conns    map[*conn]struct{}
	lns      []net.Listener
	stopping bool
}

// New returns the gRPC front end of p, configured by cfg (the grpc
// section, limits.max_body_bytes as the largest message, and p's TLS
// pair when tls.cert_file is set).
func New(cfg *config.Config, p *proxy.Server) *Server {
	g := cfg.GRPC
	// grpc-go serves the calls of slowpath.go through ServeHTTP, where
	// the transport's options (streams, keepalive) are this package's;
	// the message size limit is grpc-go's own there.
	s := &Server{gs: grpc.NewServer(grpc.MaxRecvMsgSize(int(cfg.Limits.MaxBodyBytes))), health: health.NewServer(),
		svc: &service{p: p}, fast: fastMethods(), maxConns: cfg.HTTP.MaxConnections,
		maxStreams: g.MaxConcurrentStreams, maxMsg: int(cfg.Limits.MaxBodyBytes),
		keepaliveTime: g.KeepaliveTime, keepaliveMinTime: g.KeepaliveMinTime, kaTimeout: keepaliveTimeout,
		work: make(chan *stream), conns: make(map[*conn]struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if tc := p.TLSConfig(); tc != nil {
		s.tls = tc.Clone()
		s.tls.NextProtos = []string{"h2"} // gRPC is HTTP/2 only
	}
	inferencepb.RegisterGRPCInferenceServiceServer(s.gs, s.svc)
	healthpb.RegisterHealthServer(s.gs, s.health)
	s.health.SetServingStatus(ServiceName, healthpb.HealthCheckResponse_SERVING)
	if g.Reflection {
		reflection.Register(s.gs)
	}
	s.workers.Add(streamWorkers)
	for range streamWorkers {
		go func() {
			defer s.workers.Done()
			for st := range s.work {
				st.c.run(st, false)
			}
		}()
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
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			stopping := s.stopping
			s.mu.Unlock()
			if stopping {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() { // EMFILE and the like
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := newConn(s, nc)
		s.mu.Lock()
		if s.stopping {
			s.mu.Unlock()
			nc.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		go c.serve()
	}
}

// dispatch runs st on a kept worker, or on a goroutine of its own when
// all are busy.
func (s *Server) dispatch(st *stream) {
	select {
	case s.work <- st:
	default:
		go st.c.run(st, false)
	}
}

// forget drops a closed connection.
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
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
// returns ctx's error. Each connection gets GOAWAY twice, as grpc-go's
// GracefulStop does: first one that lets through the streams the client
// has already sent, with a PING; on its answer, one naming the last
// stream served. A connection closes once its last call has answered.
func (s *Server) Shutdown(ctx context.Context) error {
	s.health.Shutdown() // NOT_SERVING, and no later change
	conns := s.stop()
	if conns == nil {
		return nil // stopped before
	}
	for _, c := range conns {
		c.drain()
	}
	var err error
	for _, c := range conns {
		select {
		case <-c.done:
		case <-ctx.Done():
			err = ctx.Err()
			for _, c := range conns {
				c.nc.Close()
			}
		}
		if err != nil {
			break
		}
	}
	s.end(conns)
	return err
}

// stop closes the listeners and returns the open connections; from then
// on no connection is accepted.
func (s *Server) stop() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	first := !s.stopping
	s.stopping = true
	for _, ln := range s.lns {
		ln.Close()
	}
	s.lns = nil
	if !first {
		return nil
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	return conns
}

// end waits for the connections' reading goroutines, cancels what grpc-go
// still runs, and stops the workers.
func (s *Server) end(conns []*conn) {
	for _, c := range conns {
		<-c.done
	}
	s.cancel()
	s.gs.Stop()
	close(s.work)
	s.workers.Wait()
}

// Stop closes every connection and cancels the calls in flight at once;
// after a Shutdown it does nothing.
func (s *Server) Stop() {
	conns := s.stop()
	if conns == nil {
		return
	}
	for _, c := range conns {
		c.nc.Close()
	}
	s.end(conns)
}
