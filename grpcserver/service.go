package grpcserver

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/codec"
	"github.com/coalesce-ml/coalesce/proto/inferencepb"
	"github.com/coalesce-ml/coalesce/proxy"
	"github.com/coalesce-ml/coalesce/tensor"
)

// service implements inference.GRPCInferenceService on a proxy.Server.
type service struct {
	inferencepb.UnimplementedGRPCInferenceServiceServer
	p *proxy.Server
}

// ServerLive answers true while the process serves: liveness needs no key,
// as GET /v2/health/live.
func (s *service) ServerLive(_ context.Context, req *inferencepb.ServerLiveRequest) (*inferencepb.ServerLiveResponse, error) {
	return s.serverLive(nil, req)
}

// ServerReady answers false once the server drains, as GET
// /v2/health/ready; it needs no key.
func (s *service) ServerReady(_ context.Context, req *inferencepb.ServerReadyRequest) (*inferencepb.ServerReadyResponse, error) {
	return s.serverReady(nil, req)
}

func (s *service) ModelReady(ctx context.Context, req *inferencepb.ModelReadyRequest) (*inferencepb.ModelReadyResponse, error) {
	c := newCall(ctx)
	return s.modelReady(&c, req)
}

func (s *service) ServerMetadata(ctx context.Context, req *inferencepb.ServerMetadataRequest) (*inferencepb.ServerMetadataResponse, error) {
	c := newCall(ctx)
	return s.serverMetadata(&c, req)
}

func (s *service) ModelMetadata(ctx context.Context, req *inferencepb.ModelMetadataRequest) (*inferencepb.ModelMetadataResponse, error) {
	c := newCall(ctx)
	return s.modelMetadata(&c, req)
}

// ModelInfer runs the request through proxy.Server.Infer (modelInfer).
// With a model cache, the coalesce-cache response header says hit, miss
// or shared, as the Coalesce-Cache HTTP header does; a request sampled
// for drift that carried no id (neither the message's id nor x-request-id
// metadata) gets the one it is kept under in the x-request-id header.
func (s *service) ModelInfer(ctx context.Context, req *inferencepb.ModelInferRequest) (*inferencepb.ModelInferResponse, error) {
	c := newCall(ctx)
	c.Bytes = int64(proto.Size(req))
	md, _ := metadata.FromIncomingContext(ctx)
	resp, cache, err := s.modelInfer(&c, req, exchange{md: md})
	if err != nil {
		return nil, err
	}
	// Best effort: SetHeader fails only when the headers were sent, which
	// a unary handler has not done yet.
	if cache != "" {
		_ = grpc.SetHeader(ctx, metadata.Pairs("coalesce-cache", cache))
	}
	if c.SampledID != nil {
		_ = grpc.SetHeader(ctx, metadata.Pairs("x-request-id", string(c.SampledID)))
	}
	return resp, nil
}

// The methods below are the service on a proxy.Call, shared by grpc-go's
// handlers above and the transport's unary fast path (fastpath.go): the
// response, or the error as a gRPC status.

func (s *service) serverLive(*proxy.Call, *inferencepb.ServerLiveRequest) (*inferencepb.ServerLiveResponse, error) {
	return &inferencepb.ServerLiveResponse{Live: true}, nil
}

func (s *service) serverReady(*proxy.Call, *inferencepb.ServerReadyRequest) (*inferencepb.ServerReadyResponse, error) {
	return &inferencepb.ServerReadyResponse{Ready: s.p.Ready()}, nil
}

func (s *service) modelReady(c *proxy.Call, req *inferencepb.ModelReadyRequest) (*inferencepb.ModelReadyResponse, error) {
	mi, err := s.p.Model(c, req.GetName(), req.GetVersion())
	if err != nil {
		return nil, proxy.GRPCStatus(err)
	}
	return &inferencepb.ModelReadyResponse{Ready: mi.Ready}, nil
}

func (s *service) serverMetadata(c *proxy.Call, _ *inferencepb.ServerMetadataRequest) (*inferencepb.ServerMetadataResponse, error) {
	if err := s.p.Authenticate(c); err != nil {
		return nil, proxy.GRPCStatus(err)
	}
	// The extensions of GET /v2: one server, one set of extensions.
	return &inferencepb.ServerMetadataResponse{Name: "coalesce", Version: s.p.Version(), Extensions: []string{"binary_tensor_data"}}, nil
}

func (s *service) modelMetadata(c *proxy.Call, req *inferencepb.ModelMetadataRequest) (*inferencepb.ModelMetadataResponse, error) {
	mi, err := s.p.Model(c, req.GetName(), req.GetVersion())
	if err != nil {
		return nil, proxy.GRPCStatus(err)
	}
	return &inferencepb.ModelMetadataResponse{Name: mi.Name, Versions: mi.Versions, Platform: mi.Platform,
		Inputs: tensorMetadata(mi.Inputs), Outputs: tensorMetadata(mi.Outputs)}, nil
}

func tensorMetadata(specs []backends.TensorSpec) []*inferencepb.ModelMetadataResponse_TensorMetadata {
	md := make([]*inferencepb.ModelMetadataResponse_TensorMetadata, len(specs))
	for i, sp := range specs {
		md[i] = &inferencepb.ModelMetadataResponse_TensorMetadata{Name: sp.Name, Datatype: sp.DType.String(), Shape: sp.Shape}
	}
	return md
}

// modelInfer runs req through proxy.Server.Infer, its size (c.Bytes)
// charged to the in-flight byte budget; x carries the call's metadata.
// It returns the response and the cache's word on it (hit, miss, shared,
// or "" without a cache).
func (s *service) modelInfer(c *proxy.Call, req *inferencepb.ModelInferRequest, x exchange) (*inferencepb.ModelInferResponse, string, error) {
	x.req = req
	if err := s.p.Infer(c, req.GetModelName(), req.GetModelVersion(), &x); err != nil {
		return nil, "", proxy.GRPCStatus(err)
	}
	return x.resp, x.cache, nil
}

// exchange is one ModelInfer call: the message received and the one to
// send.
type exchange struct {
	req   *inferencepb.ModelInferRequest
	resp  *inferencepb.ModelInferResponse
	cache string // Encode's cacheStatus
	// The call's metadata: grpc-go's, or the header fields the
	// transport's fast path read.
	md     metadata.MD
	fields []hpack.HeaderField
}

// Peek makes the exchange a proxy.Peeker: a metadata value for the canary
// split's sticky_header, as an HTTP request's header is.
func (x *exchange) Peek(key string) []byte {
	for _, f := range x.fields {
		if strings.EqualFold(f.Name, key) {
			return view(f.Value)
		}
	}
	for k, vs := range x.md {
		if strings.EqualFold(k, key) && len(vs) > 0 {
			return view(vs[0])
		}
	}
	return nil
}

// view is the bytes of str, without a copy, only read.
func view(str string) []byte { return unsafe.Slice(unsafe.StringData(str), len(str)) }

func (x *exchange) Decode(r *codec.Request) error { return codec.DecodeGRPC(r, x.req) }

// ModelLabel makes the exchange a proxy.Labeled: parameters
// ["coalesce-model-label"] picks the version as a V2 REST body's does.
func (x *exchange) ModelLabel() (string, error) { return codec.GRPCLabel(x.req) }

func (x *exchange) Encode(r *codec.Request, out []*tensor.Tensor, cacheStatus string) error {
	x.resp, x.cache = codec.EncodeGRPC(r, out), cacheStatus
	return nil
}

// newCall copies what the proxy needs of an incoming call into plain
// values: its arrival (now), the time left to its deadline, the
// credentials, Cache-Control and x-request-id of its metadata, and its
// peer.
func newCall(ctx context.Context) proxy.Call {
	c := proxy.Call{Arrived: time.Now()}
	if dl, ok := ctx.Deadline(); ok {
		c.Timeout = max(dl.Sub(c.Arrived), 1) // passed: the batcher refuses it as expired
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		c.Authorization = first(md, "authorization")
		c.APIKey = first(md, "x-api-key")
		c.CacheControl = first(md, "cache-control")
		c.RequestID = first(md, "x-request-id")
	}
	if p, ok := peer.FromContext(ctx); ok {
		if a, ok := p.Addr.(*net.TCPAddr); ok {
			c.Peer = a.AddrPort().Addr()
		} else if ap, err := netip.ParseAddrPort(p.Addr.String()); err == nil {
			c.Peer = ap.Addr()
		}
	}
	return c
}

// first returns the first value of metadata key, or nil.
func first(md metadata.MD, key string) []byte {
	if v := md.Get(key); len(v) > 0 {
		return []byte(v[0])
	}
	return nil
}
