package proxy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/coalesce-ml/coalesce/auth"
	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/codec"
	"github.com/coalesce-ml/coalesce/tensor"
)

// The entry points of front ends other than the fasthttp one (package
// grpcserver): they take a request as plain values (Call) and run it
// through the same checks, cache, batchers and metrics as Handler, so that
// no front end has a path of its own.

const protoGRPC = codec.ProtoGRPC

// Call is one request of a non-HTTP front end, as plain values. The zero
// value is a request without credentials or deadline from the zero
// address, arrived at the zero time: set Arrived.
type Call struct {
	// Arrived is when the request arrived; its deadline counts from then,
	// and its latency is measured from then.
	Arrived time.Time
	// Timeout is the client's deadline from Arrived (a gRPC deadline); 0
	// means none. It only shortens the model's default deadline.
	Timeout time.Duration
	// Authorization and APIKey are the credentials the request carried
	// (gRPC metadata authorization and x-api-key); nil when absent. They
	// are only read during the call.
	Authorization, APIKey []byte
	// Peer is the client's address, for per-client rate limits.
	Peer netip.Addr
	// CacheControl is the request's Cache-Control (RFC 9111 §5.2.1); nil
	// when absent.
	CacheControl []byte
	// RequestID is the id the call carried outside its message (gRPC
	// metadata x-request-id); nil when absent. A sampled request is kept
	// for drift feedback under the message's own id (KServe V2's id), else
	// this one when valid, else one Infer generates and returns in
	// SampledID. Only read during the call.
	RequestID []byte
	// Bytes is the size of the request's message, charged to the in-flight
	// byte budget (limits.inflight_bytes, shared with the HTTP data plane)
	// while the call is decoded and answered.
	Bytes int64

	// SampledID is set by Infer when drift sampling kept the request under
	// an id the call did not carry: the front end should return it to the
	// client (gRPC: the x-request-id header), as HTTP does in
	// X-Request-Id, so that feedback can name the request.
	SampledID []byte
}

// Exchange decodes one request of a front end and encodes its answer; the
// front end's per-call state (the message received, the one to send)
// lives in it.
type Exchange interface {
	// Decode fills r, a request for r.Model, like codec.Codec.Decode.
	Decode(r *codec.Request) error
	// Encode takes the answer to r, whose model returned out in its output
	// order; cacheStatus is "hit", "miss" or "shared", or "" when the model
	// has no cache. out is shared (with the cache, with identical
	// requests): it must not be changed.
	Encode(r *codec.Request, out []*tensor.Tensor, cacheStatus string) error
}

// ModelInfo describes one served model version for metadata and
// readiness requests.
type ModelInfo struct {
	Name, Version string
	// Versions are the served versions of the model, in the registry's
	// order.
	Versions []string
	Platform string
	// Inputs and Outputs are the model's tensors; shared, not to be
	// changed.
	Inputs, Outputs []backends.TensorSpec
	// Ready reports whether the version can answer now: the server is not
	// draining and its backend is ready.
	Ready bool
}

// Ready reports whether the server takes requests: false once it is
// draining (SetDraining).
func (s *Server) Ready() bool { return !s.draining.Load() }

// Version returns the server version reported by metadata requests.
func (s *Server) Version() string { return s.version }

// Authenticate checks c's API key, as Handler does before routing; nil
// when authentication is off. Health checks need none.
func (s *Server) Authenticate(c *Call) (err error) {
	defer s.observeCall(nil, nil, c, &err)
	_, err = s.callIdentity(c)
	return err
}

// Model authenticates c and describes model at version ("" = the highest)
// when c's key may call it.
func (s *Server) Model(c *Call, model, version string) (mi ModelInfo, err error) {
	sn := s.snap.Load()
	var e *entry
	defer s.observeCall(sn, &e, c, &err)
	id, err := s.callIdentity(c)
	if err != nil {
		return mi, err
	}
	if e, err = lookupString(sn, model, version); err != nil {
		return mi, err
	}
	if _, err := s.allows(id, e.Name); err != nil {
		return mi, err
	}
	mi = ModelInfo{Name: e.Name, Version: e.Version, Platform: e.Meta.Platform, Inputs: e.Meta.Inputs, Outputs: e.Meta.Outputs,
		Ready: s.Ready() && backends.Ready(e.Backend)}
	for _, v := range sn.reg.Versions(e.Name) {
		mi.Versions = append(mi.Versions, v.Version)
	}
	return mi, nil
}

// Infer runs one inference request through the path of Handler and
// serveInfer: http.max_inflight, the in-flight byte budget (c.Bytes; 503
// when it does not fit), the API key (401), the model and version
// ("" = the highest; 404), the key's access and the rate limits (403,
// 429), decoding with x, the cache and the model's batcher under the
// earlier of c's deadline and the request's timeout parameter, drift
// sampling (keyed by the request's id, see Call.RequestID), the shadow
// copy, and encoding with x. It counts the request in the metrics under protocol
// "grpc" with the HTTP status its outcome maps to, and never panics: a
// panic in x or below is returned as an internal error. Errors map to
// codes with StatusOf and CodeOf. With version "", the label x names (a
// Labeled x) picks the version, else the model's canary split may.
func (s *Server) Infer(c *Call, model, version string, x Exchange) (err error) {
	sn := s.snap.Load()
	var e *entry // the version that answered, once resolved
	defer s.observeCall(sn, &e, c, &err)
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in gRPC handler", "panic", fmt.Sprint(r), "model", model, "stack", string(debug.Stack()))
			err = fmt.Errorf("%w: %v", errPanic, r)
		}
	}()
	n := s.inflight.Add(1)
	defer s.inflight.Add(-1)
	if max := int64(s.cfg.HTTP.MaxInflight); max > 0 && n > max {
		return errInflight{max}
	}
	// The message is already read (gRPC has no Content-Length to refuse
	// a body by before reading it); it is held while decoded and answered,
	// as an HTTP body is (edge.go).
	if !s.edge.budget.acquire(c.Bytes) {
		return s.overBudget()
	}
	defer s.edge.budget.release(c.Bytes)
	id, err := s.callIdentity(c)
	if err != nil {
		return err
	}
	e, pinned, err := s.resolveCall(sn, model, version, x) // route.go
	if err != nil {
		return err
	}
	if id, err = s.allows(id, e.Name); err != nil {
		return err
	}
	if err := s.limit(id, c.Peer, e.Name); err != nil {
		return err
	}
	r := codec.AcquireRequest(e.ModelVersion, &s.cfg.Limits)
	defer codec.ReleaseRequest(r)
	if err := x.Decode(r); err != nil {
		return err
	}
	h := hints{timeout: c.Timeout, priority: r.Priority}
	if r.Timeout > 0 && (h.timeout == 0 || r.Timeout < h.timeout) {
		h.timeout = r.Timeout
	}
	if e.cache != nil {
		h.cache = cacheControl(c.CacheControl)
	}
	out, ran, st, err := s.inferCached(c.Arrived, e, pinned, r.Inputs, h)
	e = ran // the version that answered
	if err != nil {
		return err
	}
	r.Model = ran.ModelVersion // the outputs are that version's
	if d := ran.drift; d.Sampling() {
		d.Sample(r.Inputs, out, s.sampleID(c, r))
	}
	// A copy for the model's shadow, if it has one (shadow.go), as
	// serveInfer does.
	s.offerShadow(s.snap.Load(), ran, r.Inputs, out)
	cs := ""
	if e.cache != nil {
		cs = string(cacheStatus[st])
	}
	return x.Encode(r, out, cs)
}

// sampleID returns the id a sampled call is kept under: the message's V2
// id, else c.RequestID, when valid (validRequestID), else a new one, which
// it stores in c.SampledID for the front end to return.
func (s *Server) sampleID(c *Call, r *codec.Request) []byte {
	if id := r.ID(); id != "" && validRequestID([]byte(id)) {
		return []byte(id)
	}
	if validRequestID(c.RequestID) {
		return c.RequestID
	}
	b := make([]byte, 32)
	putHex(b[:16], rand.Uint64())
	putHex(b[16:], rand.Uint64())
	c.SampledID = b
	return b
}

// callIdentity is authenticate for a Call: its key's identity, nil when
// authentication is off.
func (s *Server) callIdentity(c *Call) (*auth.Identity, error) {
	if s.guard.keys == nil {
		return nil, nil
	}
	return s.identifyKey(c.Authorization, c.APIKey)
}

// observeCall counts a finished call that ran on *e (e or *e nil: no
// version resolved) with the HTTP status *err maps to, and feeds the
// canary's rollback as Handler does.
func (s *Server) observeCall(sn *snapshot, e **entry, c *Call, err *error) {
	code := fasthttp.StatusOK
	if *err != nil {
		code = StatusOf(*err)
	}
	var ran *entry
	if e != nil {
		ran = *e
	}
	s.met.observe(ran.requestMetrics(), protoGRPC, code, c.Arrived)
	if sn != nil {
		s.observeCanary(sn, ran, code) // canary rollback (canary.go)
	}
}

// lookupString is lookup of strings.
func lookupString(sn *snapshot, name, version string) (*entry, error) {
	e, err := sn.get(name, version)
	if err != nil {
		return nil, notFound{err: err, name: truncate(name), version: truncate(version)}
	}
	return e, nil
}

// GRPCStatus returns err as a gRPC status error: the code of CodeOf, the
// message the HTTP answer carries, and for ResourceExhausted and
// Unavailable a google.rpc.RetryInfo detail with the delay HTTP sends as
// Retry-After. nil stays nil.
func GRPCStatus(err error) error {
	if err == nil {
		return nil
	}
	code := CodeOf(err)
	st := status.New(code, err.Error())
	if code != codes.ResourceExhausted && code != codes.Unavailable {
		return st.Err()
	}
	var d time.Duration
	var le errLimited
	if errors.As(err, &le) {
		d = time.Duration(retrySeconds(le.d.RetryAfter)) * time.Second
	} else if StatusOf(err) == fasthttp.StatusServiceUnavailable {
		d = retryDelay(err)
	} else {
		return st.Err() // a request over a size limit: retrying won't help
	}
	if ds, derr := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)}); derr == nil {
		st = ds
	}
	return st.Err()
}

// retryDelay is retryAfter as a duration.
func retryDelay(err error) time.Duration {
	var ra backends.RetryAfter
	if errors.As(err, &ra) {
		if d := ra.RetryAfter(); d > time.Second {
			return (d + time.Second - 1) / time.Second * time.Second
		}
	}
	return time.Second
}
