// Package grpcload is the bench tool's gRPC client: KServe V2 ModelInfer
// calls (inference.GRPCInferenceService) for loadgen.Run, so that gRPC and
// the HTTP protocols are measured by the same loops, histograms and report.
//
// Like the tool's HTTP/1.1 client it sends prepared bytes: each
// loadgen.Request's Body is a marshalled ModelInferRequest (workload
// builds them), written as it is through a pass-through codec, and the
// answer is only counted, not decoded. What is measured is then the gRPC
// transport (HTTP/2 framing, flow control, grpc-go's goroutines) and the
// server, not protobuf work in the client.
//
// Concurrent streams share HTTP/2 connections ("channels"): worker i of a
// run calls on channel i mod Channels. One channel for every stream is
// what gRPC clients do by default (tritonclient's InferenceServerClient
// holds one channel, grpc-go multiplexes every call of a ClientConn on
// one connection); one channel per stream is the closest match to an
// HTTP/1.1 client with one connection per request in flight.
//
// Two clients make the calls: grpc-go's (the default) and, with
// Config.Lean, the package's own unary HTTP/2 client (lean.go), which
// writes and reads on the calling goroutines instead of handing every
// call to a writer and a reader goroutine, so that the figures are the
// server's more than grpc-go's client's.
package grpcload

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/coalesce-ml/coalesce/bench/loadgen"
)

// ModelInfer is the full method name of KServe V2's ModelInfer.
const ModelInfer = "/inference.GRPCInferenceService/ModelInfer"

// Config configures a Client. The zero value of each field says what it
// does.
type Config struct {
	Addr string // host:port of the gRPC server
	// Channels is how many HTTP/2 connections the workers share; 0 means
	// 1 (every stream on one connection, as gRPC clients do).
	Channels int
	// Metadata is sent with every call (name, value pairs), e.g.
	// "authorization", "Bearer <key>".
	Metadata []string
	// StaticWindow, when positive, fixes the HTTP/2 stream and connection
	// flow-control windows of the client's connections at this many
	// bytes, which turns off grpc-go's BDP estimation (its PING frames
	// and window updates on every read); 0 keeps grpc-go's dynamic
	// windows.
	StaticWindow int32
	// Options are added to the client's dial options (grpc-go only).
	Options []grpc.DialOption
	// Lean, when true, makes the calls with the package's own HTTP/2
	// client (lean.go) instead of grpc-go's. StaticWindow then sets the
	// windows it grants the server (0: 1 MiB per stream, 16 MiB per
	// connection); Options are not used.
	Lean bool
}

// Client holds the channels of one measurement. Create it with New, hand
// Conn to loadgen.Config.NewConn, and Close it after the run. It is safe
// for concurrent use.
type Client struct {
	ccs   []*grpc.ClientConn
	base  context.Context // with the outgoing metadata
	chans []*channel      // Config.Lean
}

// New returns a Client for cfg. Channels connect on their first call (the
// run's warm-up), so New fails only on a bad configuration.
func New(cfg Config) (*Client, error) {
	n := cfg.Channels
	if n == 0 {
		n = 1
	}
	if n < 0 || cfg.Addr == "" || len(cfg.Metadata)%2 != 0 {
		return nil, fmt.Errorf("grpcload: address %q, %d channels, %d metadata strings; want an address, channels ≥ 0 and name, value pairs", cfg.Addr, cfg.Channels, len(cfg.Metadata))
	}
	if cfg.Lean {
		return newLean(cfg, n), nil
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})),
	}
	if w := cfg.StaticWindow; w > 0 {
		opts = append(opts, grpc.WithStaticStreamWindowSize(w), grpc.WithStaticConnWindowSize(w))
	}
	opts = append(opts, cfg.Options...)
	c := &Client{base: context.Background()}
	if len(cfg.Metadata) > 0 {
		c.base = metadata.AppendToOutgoingContext(c.base, cfg.Metadata...)
	}
	for range n {
		cc, err := grpc.NewClient(cfg.Addr, opts...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("grpcload: %w", err)
		}
		c.ccs = append(c.ccs, cc)
	}
	return c, nil
}

// Conn returns worker i's connection: one stream at a time on channel
// i mod Channels. Its Close does not close the channel; Client.Close does.
func (c *Client) Conn(i int) loadgen.Conn {
	if c.chans != nil {
		return &leanStream{ch: c.chans[i%len(c.chans)]}
	}
	return &stream{cc: c.ccs[i%len(c.ccs)], base: c.base}
}

// Close closes every channel.
func (c *Client) Close() {
	for _, cc := range c.ccs {
		cc.Close()
	}
	for _, ch := range c.chans {
		ch.close()
	}
}

// stream is one worker's sequence of calls. It is not safe for concurrent
// use.
//
// A call carries no gRPC deadline, as the HTTP client's requests carry
// no timeout header: a deadline would cost the server a timer per call
// and the client a context per call. A watchdog timer cancels the
// stream's context instead when a call outlives its deadline; like the
// HTTP client's socket deadline it is moved only when the wanted
// deadline is more than slack past it.
type stream struct {
	cc     *grpc.ClientConn
	base   context.Context
	ctx    context.Context
	cancel context.CancelFunc
	timer  *time.Timer
	at     time.Time // when timer fires
	n      int       // bytes of the last answer
}

// slack is how far past the wanted deadline the watchdog may fire.
const slack = time.Second

func (s *stream) Do(req *loadgen.Request, deadline time.Time) (int, error) {
	if s.ctx == nil || s.ctx.Err() != nil {
		s.ctx, s.cancel = context.WithCancel(s.base)
		if s.timer != nil {
			s.timer.Stop()
		}
		s.timer = time.AfterFunc(time.Until(deadline)+slack, s.cancel)
		s.at = deadline.Add(slack)
	} else if deadline.Sub(s.at) > 0 {
		s.at = deadline.Add(slack)
		s.timer.Reset(time.Until(s.at))
	}
	err := s.cc.Invoke(s.ctx, req.Path, &req.Body, &s.n)
	if err == nil {
		return 200, nil
	}
	if s.ctx.Err() != nil {
		return 0, fmt.Errorf("%w: no answer within the request's timeout", os.ErrDeadlineExceeded)
	}
	st, _ := status.FromError(err)
	if st.Code() == codes.Unavailable && strings.HasPrefix(st.Message(), "connection error") {
		// grpc-go's own failure to connect, not a server's answer; a
		// refused connection is named as the HTTP client names it.
		if strings.Contains(st.Message(), "connection refused") {
			return 0, &loadgen.DialError{Err: syscall.ECONNREFUSED}
		}
		return 0, &loadgen.DialError{Err: errors.New(st.Message())}
	}
	return HTTPStatus(st.Code()), nil
}

func (s *stream) Close() {
	if s.timer != nil {
		s.timer.Stop()
		s.cancel()
	}
}

// HTTPStatus returns the HTTP status a gRPC code corresponds to, as
// Triton and TF Serving map them (and Coalesce's proxy.CodeOf inverts):
// ResourceExhausted 429 and Unavailable 503 are shed load to the report,
// as they are over HTTP.
func HTTPStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return 200
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return 400
	case codes.Unauthenticated:
		return 401
	case codes.PermissionDenied:
		return 403
	case codes.NotFound:
		return 404
	case codes.AlreadyExists, codes.Aborted:
		return 409
	case codes.ResourceExhausted:
		return 429
	case codes.Canceled:
		return 499
	case codes.Unimplemented:
		return 501
	case codes.Unavailable:
		return 503
	case codes.DeadlineExceeded:
		return 504
	}
	return 500 // Unknown, Internal, DataLoss
}

// rawCodec sends a *[]byte as the message it already is and counts the
// bytes of an answer into an *int. Named "proto", so the content type
// stays application/grpc+proto and the server decodes with protobuf.
type rawCodec struct{}

var _ encoding.CodecV2 = rawCodec{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("grpcload: cannot send a %T; want *[]byte", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	n, ok := v.(*int)
	if !ok {
		return fmt.Errorf("grpcload: cannot receive into a %T; want *int", v)
	}
	*n = data.Len()
	return nil
}

func (rawCodec) Name() string { return "proto" }
