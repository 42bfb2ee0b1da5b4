package grpcserver

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/coalesce-ml/coalesce/internal/h2"
	"github.com/coalesce-ml/coalesce/proto/inferencepb"
	"github.com/coalesce-ml/coalesce/proxy"
)

// method is a unary method of GRPCInferenceService as the fast path runs
// it: the request message's bytes in, the response and the coalesce-cache
// header's value out, or an error carrying its gRPC status.
type method func(s *service, c *proxy.Call, msg []byte, fields []hpack.HeaderField) (proto.Message, string, error)

// unary makes a method of one of service's methods on a proxy.Call.
func unary[Req any, PReq interface {
	*Req
	proto.Message
}, Resp proto.Message](f func(*service, *proxy.Call, PReq) (Resp, error)) method {
	return func(s *service, c *proxy.Call, msg []byte, _ []hpack.HeaderField) (proto.Message, string, error) {
		req := PReq(new(Req))
		if err := proto.Unmarshal(msg, req); err != nil {
			return nil, "", status.Errorf(codes.Internal, "grpc: error unmarshalling request: %v", err)
		}
		resp, err := f(s, c, req)
		return resp, "", err
	}
}

// fastMethods are the methods the transport runs itself, by path.
func fastMethods() map[string]method {
	const p = "/" + ServiceName + "/"
	return map[string]method{
		p + "ServerLive":     unary((*service).serverLive),
		p + "ServerReady":    unary((*service).serverReady),
		p + "ModelReady":     unary((*service).modelReady),
		p + "ServerMetadata": unary((*service).serverMetadata),
		p + "ModelMetadata":  unary((*service).modelMetadata),
		p + "ModelInfer":     modelInfer,
	}
}

// inferRequests keeps ModelInfer's request messages: unmarshalling into
// one kept from an earlier call reuses its slices.
var inferRequests = sync.Pool{New: func() any { return new(inferencepb.ModelInferRequest) }}

func modelInfer(s *service, c *proxy.Call, msg []byte, fields []hpack.HeaderField) (proto.Message, string, error) {
	req := inferRequests.Get().(*inferencepb.ModelInferRequest)
	defer inferRequests.Put(req)
	// Unmarshal resets req first; proxy.Server.Infer keeps nothing of it
	// past the call (the cache, drift and the shadow copy).
	if err := proto.Unmarshal(msg, req); err != nil {
		return nil, "", status.Errorf(codes.Internal, "grpc: error unmarshalling request: %v", err)
	}
	resp, cache, err := s.modelInfer(c, req, exchange{fields: fields})
	if err != nil {
		return nil, "", err
	}
	return resp, cache, nil
}

// callHeaders is what a call's headers say.
type callHeaders struct {
	c           proxy.Call          // credentials, Cache-Control, x-request-id
	fields      []hpack.HeaderField // all of them, for the canary's sticky header
	timeout     time.Duration
	deadline    bool // grpc-timeout was sent
	contentType string
}

// headerInfo is a request's headers, parsed.
type headerInfo struct {
	call      callHeaders
	method    string // :method
	path      string // :path
	authority string
	fast      bool // the fast path may take it, if its path is one of its methods
}

// parseHeaders reads a request's header list. A request the fast path
// cannot take (not a POST, not application/grpc, a compressed message, a
// malformed grpc-timeout) goes to grpc-go, which answers as it does.
func parseHeaders(f *http2.MetaHeadersFrame) headerInfo {
	h := headerInfo{fast: true}
	h.call.fields = f.Fields // a new slice for every frame
	encoding := ""
	for _, hf := range f.Fields {
		switch hf.Name {
		case ":method":
			h.method = hf.Value
		case ":path":
			h.path = hf.Value
		case ":authority":
			h.authority = hf.Value
		case "content-type":
			h.call.contentType = hf.Value
		case "grpc-encoding":
			encoding = hf.Value
		case "grpc-timeout":
			d, ok := parseTimeout(hf.Value)
			h.call.timeout, h.call.deadline, h.fast = d, true, h.fast && ok
		case "authorization":
			h.call.c.Authorization = firstOf(h.call.c.Authorization, hf.Value)
		case "x-api-key":
			h.call.c.APIKey = firstOf(h.call.c.APIKey, hf.Value)
		case "cache-control":
			h.call.c.CacheControl = firstOf(h.call.c.CacheControl, hf.Value)
		case "x-request-id":
			h.call.c.RequestID = firstOf(h.call.c.RequestID, hf.Value)
		}
	}
	h.fast = h.fast && h.method == "POST" && isGRPC(h.call.contentType) && (encoding == "" || encoding == "identity")
	return h
}

// firstOf keeps the first value of a repeated metadata key, as
// metadata.MD.Get(key)[0] does. The value is not copied: the decoded
// header list lives as long as the stream (callHeaders.fields), and a
// proxy.Call's credentials, Cache-Control and id are only read during
// the call.
func firstOf(have []byte, v string) []byte {
	if have != nil {
		return have
	}
	if v == "" {
		return []byte{} // present, and empty
	}
	return view(v)
}

// isGRPC says whether a content type is gRPC's with the protobuf codec:
// application/grpc, application/grpc+proto or application/grpc;...
func isGRPC(ct string) bool {
	rest, ok := strings.CutPrefix(ct, "application/grpc")
	return ok && (rest == "" || rest == "+proto" || rest[0] == ';')
}

// parseTimeout reads grpc-timeout: at most 8 digits and a unit.
func parseTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	if n > int64(time.Duration(1<<63-1)/unit) {
		return time.Duration(1<<63 - 1), true
	}
	return time.Duration(n) * unit, true
}

// statusError is a status the transport answers with before a call runs.
type statusError struct {
	code codes.Code
	msg  string
}

var errHeaderList = &statusError{codes.Internal, fmt.Sprintf("grpc: the request's header list is over %d bytes", maxHeaderBytes)}

// receive appends a DATA frame's payload to the message; it refuses a
// message over limit (limits.max_body_bytes) as soon as its length prefix
// says so, as grpc-go does, then one that does not fit the in-flight byte
// budget (limits.inflight_bytes, held from then until the call ends, as
// an HTTP body's is from its headers), and a second message.
func (st *stream) receive(p []byte, limit int) *statusError {
	if st.msg == nil {
		st.msg = getMsg()
	}
	st.msg = append(st.msg, p...)
	if st.want == 0 && len(st.msg) >= 5 {
		if st.msg[0] != 0 {
			return &statusError{codes.Internal, "grpc: compressed flag set with identity or empty encoding"}
		}
		n := binary.BigEndian.Uint32(st.msg[1:5])
		if int64(n) > int64(limit) {
			return &statusError{codes.ResourceExhausted, fmt.Sprintf("grpc: received message larger than max (%d vs. %d)", n, limit)}
		}
		st.want = 5 + int(n)
		if err := st.c.s.svc.p.ReserveBytes(int64(n)); err != nil {
			s := status.Convert(proxy.GRPCStatus(err))
			return &statusError{s.Code(), s.Message()}
		}
		st.held = int64(n)
	}
	if st.want > 0 && len(st.msg) > st.want {
		return &statusError{codes.Unimplemented, "grpc: more than one request message on a unary method"}
	}
	return nil
}

// complete checks, at the end of a stream, that one whole message came.
func (st *stream) complete() *statusError {
	if st.want == 0 || len(st.msg) != st.want {
		return &statusError{codes.Internal, fmt.Sprintf("grpc: the request ended after %d bytes, within its message", len(st.msg))}
	}
	return nil
}

// msgs keeps message buffers: a request's as it is received, an answer's
// as it is marshalled.
var msgs sync.Pool

// maxKeptMsg bounds the buffers msgs keeps, so that one large message
// does not pin its size for good.
const maxKeptMsg = 1 << 20

func getMsg() []byte {
	if b, ok := msgs.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, 4096)
}

func releaseMsg(b []byte) {
	if b != nil && cap(b) <= maxKeptMsg {
		msgs.Put(&b)
	}
}

// marshal returns resp framed as a gRPC message: uncompressed, its
// length, its bytes; a response that does not marshal (a string field
// that is not UTF-8) is an Internal error, as grpc-go reports it.
func marshal(resp proto.Message) ([]byte, error) {
	b := append(getMsg(), 0, 0, 0, 0, 0)
	b, err := proto.MarshalOptions{}.MarshalAppend(b, resp)
	if err != nil {
		releaseMsg(b)
		return nil, status.Errorf(codes.Internal, "grpc: error while marshaling: %v", err)
	}
	binary.BigEndian.PutUint32(b[1:5], uint32(len(b)-5))
	return b, nil
}

// reserve takes n bytes of the connection's and the stream's send
// windows when both have them now, for an answer sent in one piece.
func (c *conn) reserve(st *stream, n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sendWindow >= int64(n) && st.send >= int64(n) {
		c.sendWindow -= int64(n)
		st.send -= int64(n)
		return true
	}
	return false
}

// take waits for send window on st and takes up to n bytes of it; 0
// means the stream or the connection ended.
func (c *conn) take(st *stream, n int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if c.closed || st.reset.Load() {
			return 0
		}
		if w := min(c.sendWindow, st.send, int64(n)); w > 0 {
			c.sendWindow -= w
			st.send -= w
			return int(w)
		}
		c.cond.Wait()
	}
}

// writeAnswer writes a successful call's answer (headers, the message,
// the trailers), then ends the stream. With reserved the windows were
// taken for the whole message, which goes out in one piece; else it is
// sent as the windows allow.
func (c *conn) writeAnswer(st *stream, b []byte, cache string, reserved bool) {
	defer c.remove(st)
	defer releaseMsg(b)
	if st.reset.Load() {
		return
	}
	var hf [4]hpack.HeaderField
	hf[0] = hpack.HeaderField{Name: ":status", Value: "200"}
	hf[1] = hpack.HeaderField{Name: "content-type", Value: st.call.contentType}
	n := 2
	if cache != "" {
		hf[n] = hpack.HeaderField{Name: "coalesce-cache", Value: cache}
		n++
	}
	if id := st.call.c.SampledID; id != nil {
		hf[n] = hpack.HeaderField{Name: "x-request-id", Value: string(id)}
		n++
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wrote.Store(true)
	if c.writeHeaders(st.id, false, hf[:n]) != nil {
		return
	}
	for len(b) > 0 {
		k := min(len(b), int(c.maxFrame))
		if !reserved {
			c.wmu.Unlock()
			k = c.take(st, k)
			c.wmu.Lock()
			if k == 0 {
				return
			}
		}
		if c.fr.WriteData(st.id, false, b[:k]) != nil {
			return
		}
		b = b[k:]
		if !reserved && len(b) > 0 && c.bw.Flush() != nil {
			return
		}
	}
	hf[0] = hpack.HeaderField{Name: "grpc-status", Value: "0"}
	if c.writeHeaders(st.id, true, hf[:1]) == nil {
		_ = c.bw.Flush()
	}
}

// writeError answers a call with the status err carries.
func (c *conn) writeError(st *stream, err error) {
	s := status.Convert(err)
	details := ""
	if p := s.Proto(); len(p.GetDetails()) > 0 {
		if b, err := proto.Marshal(p); err == nil {
			details = base64.RawStdEncoding.EncodeToString(b)
		}
	}
	c.writeStatus(st, s.Code(), s.Message(), details)
}

// writeStatus writes a trailers-only answer: the call's status, its
// message and, when there are, its details (grpc-status-details-bin).
func (c *conn) writeStatus(st *stream, code codes.Code, msg, details string) {
	if st.reset.Load() {
		return
	}
	ct := st.call.contentType
	if !isGRPC(ct) {
		ct = "application/grpc"
	}
	hf := [5]hpack.HeaderField{
		{Name: ":status", Value: "200"},
		{Name: "content-type", Value: ct},
		{Name: "grpc-status", Value: strconv.Itoa(int(code))},
		{Name: "grpc-message", Value: encodeGRPCMessage(msg)},
		{Name: "grpc-status-details-bin", Value: details},
	}
	n := 4
	if details != "" {
		n = 5
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wrote.Store(true)
	if c.writeHeaders(st.id, true, hf[:n]) == nil {
		_ = c.bw.Flush()
	}
}

// writeHeaders writes a header block, in CONTINUATION frames when it is
// larger than a frame. The caller holds wmu.
func (c *conn) writeHeaders(id uint32, end bool, fields []hpack.HeaderField) error {
	c.hbuf.Reset()
	for _, f := range fields {
		if err := c.henc.WriteField(f); err != nil {
			return err
		}
	}
	return h2.WriteBlock(c.fr, id, end, c.hbuf.Bytes(), int(c.maxFrame))
}

// encodeGRPCMessage percent-encodes grpc-message as gRPC's HTTP/2
// protocol asks: bytes outside printable ASCII, and '%'.
func encodeGRPCMessage(msg string) string {
	clean := true
	for i := 0; i < len(msg); i++ {
		if b := msg[i]; b < ' ' || b > '~' || b == '%' {
			clean = false
			break
		}
	}
	if clean {
		return msg
	}
	var sb strings.Builder
	for i := 0; i < len(msg); i++ {
		if b := msg[i]; b < ' ' || b > '~' || b == '%' {
			fmt.Fprintf(&sb, "%%%02X", b)
		} else {
			sb.WriteByte(b)
		}
	}
	return sb.String()
}
