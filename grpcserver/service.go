package grpcserver

import (
	"context"
	"net"
	"net/netip"
	"time"

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
func (s *service) ServerLive(context.Context, *inferencepb.ServerLiveRequest) (*inferencepb.ServerLiveResponse, error) {
	return &inferencepb.ServerLiveResponse{Live: true}, nil
}

// ServerReady answers false once the server drains, as GET
// /v2/health/ready; it needs no key.
func (s *service) ServerReady(context.Context, *inferencepb.ServerReadyRequest) (*inferencepb.ServerReadyResponse, error) {
	return &inferencepb.ServerReadyResponse{Ready: s.p.Ready()}, nil
}

func (s *service) ModelReady(ctx context.Context, req *inferencepb.ModelReadyRequest) (*inferencepb.ModelReadyResponse, error) {
	c := newCall(ctx)
	mi, err := s.p.Model(&c, req.GetName(), req.GetVersion())
	if err != nil {
		return nil, proxy.GRPCStatus(err)
	}
	return &inferencepb.ModelReadyResponse{Ready: mi.Ready}, nil
}

func (s *service) ServerMetadata(ctx context.Context, _ *inferencepb.ServerMetadataRequest) (*inferencepb.ServerMetadataResponse, error) {
	c := newCall(ctx)
	if err := s.p.Authenticate(&c); err != nil {
		return nil, proxy.GRPCStatus(err)
	}
	// The extensions of GET /v2: one server, one set of extensions.
	return &inferencepb.ServerMetadataResponse{Name: "coalesce", Version: s.p.Version(), Extensions: []string{"binary_tensor_data"}}, nil
}

func (s *service) ModelMetadata(ctx context.Context, req *inferencepb.ModelMetadataRequest) (*inferencepb.ModelMetadataResponse, error) {
	c := newCall(ctx)
	mi, err := s.p.Model(&c, req.GetName(), req.GetVersion())
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

// ModelInfer runs the request through proxy.Server.Infer, charging its
// message size to the in-flight byte budget. With a model cache, the
// coalesce-cache response header says hit, miss or shared, as the
// Coalesce-Cache HTTP header does; a request sampled for drift that
// carried no id (neither the message's id nor x-request-id metadata)
// gets the one it is kept under in the x-request-id header.
func (s *service) ModelInfer(ctx context.Context, req *inferencepb.ModelInferRequest) (*inferencepb.ModelInferResponse, error) {
	c := newCall(ctx)
	c.Bytes = int64(proto.Size(req))
	x := exchange{ctx: ctx, req: req}
	if err := s.p.Infer(&c, req.GetModelName(), req.GetModelVersion(), &x); err != nil {
		return nil, proxy.GRPCStatus(err)
	}
	if c.SampledID != nil {
		_ = grpc.SetHeader(ctx, metadata.Pairs("x-request-id", string(c.SampledID))) // as in Encode
	}
	return x.resp, nil
}

// exchange is one ModelInfer call: the message received and the one to
// send.
type exchange struct {
	ctx  context.Context
	req  *inferencepb.ModelInferRequest
	resp *inferencepb.ModelInferResponse
}

func (x *exchange) Decode(r *codec.Request) error { return codec.DecodeGRPC(r, x.req) }

// ModelLabel makes the exchange a proxy.Labeled: parameters
// ["coalesce-model-label"] picks the version as a V2 REST body's does.
func (x *exchange) ModelLabel() (string, error) { return codec.GRPCLabel(x.req) }

func (x *exchange) Encode(r *codec.Request, out []*tensor.Tensor, cacheStatus string) error {
	x.resp = codec.EncodeGRPC(r, out)
	if cacheStatus != "" {
		// Best effort: it fails only when the headers were sent, which
		// a unary handler has not done yet.
		_ = grpc.SetHeader(x.ctx, metadata.Pairs("coalesce-cache", cacheStatus))
	}
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
