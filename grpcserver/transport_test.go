package grpcserver_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/coalesce-ml/coalesce/batcher"
	"github.com/coalesce-ml/coalesce/proto/inferencepb"
)

// The tests of the gRPC port's own HTTP/2 transport (transport.go): what
// grpc-go's transport did for the port and this one must do as well.

// TestLongCallDoesNotHoldItsConnection: a call that runs long on the
// connection's reading goroutine has the reading taken over, so that a
// second call on the same connection is answered while the first runs.
func TestLongCallDoesNotHoldItsConnection(t *testing.T) {
	h := start(t, testConfig())
	slowDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := h.infer.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "slow",
			Inputs: inputs{{Name: "x", Datatype: "FP32", Shape: []int64{1, 1}, Contents: &inferencepb.InferTensorContents{Fp32Contents: []float32{1}}}}})
		slowDone <- err
	}()
	waitQueuedOrRunning(t, h)
	if _, err := h.infer.ModelInfer(context.Background(), doubleReq(1, 2, 3, 4)); err != nil {
		t.Fatalf("a call beside a long one: %v", err)
	}
	select {
	case err := <-slowDone:
		t.Fatalf("the long call ended (%v) before the short one was answered; want the short one answered while it runs", err)
	default:
	}
	if err := <-slowDone; status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("the long call = %v; want DeadlineExceeded", err)
	}
}

// waitQueuedOrRunning returns once the slow model runs a batch.
func waitQueuedOrRunning(t *testing.T, h *harness) {
	t.Helper()
	released := func() (n uint64) {
		for _, r := range []string{batcher.ReleaseFull, batcher.ReleaseIdle, batcher.ReleaseDelay, batcher.ReleaseDeadline} {
			n += h.set.GetOrCreateCounter(`coalesce_batches_total{model="slow",version="1",reason="` + r + `"}`).Get()
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); released() < 1; {
		if time.Now().After(deadline) {
			t.Fatal("the slow call did not start within 10s")
		}
		time.Sleep(time.Millisecond) // polling a gauge: there is no event to wait on
	}
}

// TestLargeMessagesFlowControl: a request and an answer larger than the
// stream windows of both sides (the client's fixed at 64 KiB, without
// BDP estimation) cross whole, so both directions' flow control works.
func TestLargeMessagesFlowControl(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.MaxBodyBytes = 8 << 20
	cfg.Limits.MaxTensorElements = 1 << 20
	cfg.Batching.MaxBatchSize = 1 << 17
	h := start(t, cfg)
	cc, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(65535), grpc.WithInitialConnWindowSize(65535),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	must(t, err)
	defer cc.Close()
	const rows = 100_000 // 1.6 MB in, 1.6 MB out
	a := make([]float32, 2*rows)
	b := make([]int32, 2*rows)
	for i := range a {
		a[i], b[i] = float32(i)/4, int32(i%1000)
	}
	req := &inferencepb.ModelInferRequest{ModelName: "multi", Inputs: inputs{
		{Name: "a", Datatype: "FP32", Shape: []int64{rows, 2}, Contents: &inferencepb.InferTensorContents{Fp32Contents: a}},
		{Name: "b", Datatype: "INT32", Shape: []int64{rows, 2}, Contents: &inferencepb.InferTensorContents{IntContents: b}},
	}}
	if n := proto.Size(req); n < 1<<20 {
		t.Fatalf("the request is %d bytes; the test wants it over the 1 MiB stream window", n)
	}
	resp, err := inferencepb.NewGRPCInferenceServiceClient(cc).ModelInfer(context.Background(), req)
	must(t, err)
	got := resp.GetOutputs()[0].GetContents().GetFp64Contents()
	if len(got) != 2*rows {
		t.Fatalf("%d sums; want %d", len(got), 2*rows)
	}
	for i, v := range got {
		if want := float64(a[i]) + float64(b[i]); v != want {
			t.Fatalf("sum %d = %v; want %v", i, v, want)
		}
	}
}

// TestCompressedCall: a gzip-compressed call, which the fast path leaves
// to grpc-go, gets the same answer as a plain one.
func TestCompressedCall(t *testing.T) {
	h := start(t, testConfig())
	plain, err := h.infer.ModelInfer(context.Background(), doubleReq(1, 2, 3, 4))
	must(t, err)
	zipped, err := h.infer.ModelInfer(context.Background(), doubleReq(1, 2, 3, 4), grpc.UseCompressor(gzip.Name))
	must(t, err)
	if !proto.Equal(plain, zipped) {
		t.Errorf("gzip answer %v; want %v as without compression", zipped, plain)
	}
}

// TestLargeMetadata: metadata larger than one HTTP/2 frame arrives in
// CONTINUATION frames and is read whole (a key of 30 KB authenticates).
func TestLargeMetadata(t *testing.T) {
	key := strings.Repeat("k", 30_000)
	keys := filepath.Join(t.TempDir(), "keys")
	must(t, os.WriteFile(keys, []byte(key+"\n"), 0o600))
	cfg := testConfig()
	cfg.Auth.KeysFile = keys
	h := start(t, cfg)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-api-key", key)
	if _, err := h.infer.ModelInfer(ctx, doubleReq(1, 2, 3, 4)); err != nil {
		t.Errorf("a call with a 30 KB key: %v", err)
	}
	if _, err := h.infer.ModelInfer(context.Background(), doubleReq(1, 2, 3, 4)); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a call without the key = %v; want Unauthenticated", err)
	}
}

// rawConn is an HTTP/2 client connection of frames, for what a gRPC
// client does not do.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	fr *http2.Framer
}

// dialRaw connects to addr, sends the preface and settings, and reads
// the server's settings.
func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	must(t, err)
	t.Cleanup(func() { nc.Close() })
	must(t, nc.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(nc, http2.ClientPreface)
	must(t, err)
	rc := &rawConn{t: t, nc: nc, fr: http2.NewFramer(nc, nc)}
	rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	must(t, rc.fr.WriteSettings())
	for {
		f := rc.read()
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			must(t, rc.fr.WriteSettingsAck())
			return rc
		}
	}
}

func (rc *rawConn) read() http2.Frame {
	rc.t.Helper()
	f, err := rc.fr.ReadFrame()
	if err != nil {
		rc.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

// until reads frames until one that match accepts, and returns it; the
// connection's end fails the test.
func (rc *rawConn) until(what string, match func(http2.Frame) bool) http2.Frame {
	rc.t.Helper()
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			rc.t.Fatalf("connection ended (%v) before %s", err, what)
		}
		if match(f) {
			return f
		}
	}
}

// headers opens stream id on ModelInfer.
func (rc *rawConn) headers(id uint32, end bool) {
	rc.t.Helper()
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/inference.GRPCInferenceService/ModelInfer"},
		{":authority", "test"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		must(rc.t, enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}))
	}
	must(rc.t, rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: buf.Bytes(), EndHeaders: true, EndStream: end}))
}

// message frames m as a gRPC message.
func message(t testing.TB, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	must(t, err)
	return append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b))), b...)
}

// TestRawCall: a call written frame by frame, its message split over
// three DATA frames, is answered with HEADERS, DATA and trailers whose
// grpc-status is 0.
func TestRawCall(t *testing.T) {
	h := start(t, testConfig())
	rc := dialRaw(t, h.addr)
	msg := message(t, doubleReq(1, 2, 3, 4))
	rc.headers(1, false)
	must(t, rc.fr.WriteData(1, false, msg[:3]))
	must(t, rc.fr.WriteData(1, false, msg[3:10]))
	must(t, rc.fr.WriteData(1, true, msg[10:]))
	var status string
	var data []byte
	for status == "" {
		switch f := rc.read().(type) {
		case *http2.DataFrame:
			data = append(data, f.Data()...)
		case *http2.MetaHeadersFrame:
			if v := f.PseudoValue("status"); v != "" && v != "200" {
				t.Fatalf(":status %s; want 200", v)
			}
			for _, hf := range f.RegularFields() {
				if hf.Name == "grpc-status" {
					status = hf.Value
				}
			}
		}
	}
	if status != "0" || len(data) < 5 {
		t.Fatalf("grpc-status %s with %d bytes of data; want 0 and an answer", status, len(data))
	}
	var resp inferencepb.ModelInferResponse
	must(t, proto.Unmarshal(data[5:], &resp))
	if got := resp.GetOutputs()[0].GetContents().GetFp32Contents(); len(got) != 4 || got[3] != 8 {
		t.Errorf("answer %v; want 2, 4, 6, 8", got)
	}
}

// TestMaxConcurrentStreams: past grpc.max_concurrent_streams calls open
// on a connection, a new stream is refused with REFUSED_STREAM, which a
// client may retry.
func TestMaxConcurrentStreams(t *testing.T) {
	cfg := testConfig()
	cfg.GRPC.MaxConcurrentStreams = 1
	h := start(t, cfg)
	rc := dialRaw(t, h.addr)
	rc.headers(1, false) // open, its message still to come
	rc.headers(3, true)
	f := rc.until("RST_STREAM", func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok }).(*http2.RSTStreamFrame)
	if f.StreamID != 3 || f.ErrCode != http2.ErrCodeRefusedStream {
		t.Errorf("RST_STREAM on %d, %v; want stream 3 refused", f.StreamID, f.ErrCode)
	}
}

// TestProtocolErrors: a connection that breaks HTTP/2's rules is sent
// away with GOAWAY and the code RFC 9113 names, then closed.
func TestProtocolErrors(t *testing.T) {
	h := start(t, testConfig())
	for _, c := range []struct {
		name  string
		write func(*rawConn)
	}{
		{"DATA on an idle stream", func(rc *rawConn) { must(t, rc.fr.WriteData(5, true, []byte{0, 0, 0, 0, 0})) }},
		{"a stream id of the server's", func(rc *rawConn) { rc.headers(2, true) }},
		{"a stream id going back", func(rc *rawConn) { rc.headers(5, true); rc.headers(3, true) }},
		{"PUSH_PROMISE", func(rc *rawConn) {
			must(t, rc.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, EndHeaders: true}))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc := dialRaw(t, h.addr)
			c.write(rc)
			f := rc.until("GOAWAY", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame)
			if f.ErrCode != http2.ErrCodeProtocol {
				t.Errorf("GOAWAY %v; want PROTOCOL_ERROR", f.ErrCode)
			}
			if _, err := rc.fr.ReadFrame(); err == nil {
				for err == nil {
					_, err = rc.fr.ReadFrame()
				}
			}
		})
	}
	t.Run("no preface", func(t *testing.T) {
		nc, err := net.Dial("tcp", h.addr)
		must(t, err)
		defer nc.Close()
		must(t, nc.SetDeadline(time.Now().Add(10*time.Second)))
		_, err = io.WriteString(nc, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		must(t, err)
		if _, err := io.ReadAll(nc); err != nil {
			t.Errorf("an HTTP/1.1 request: %v; want the connection closed", err)
		}
	})
}

// TestKeepaliveEnforcement: a client pinging more often than
// grpc.keepalive_min_time, while the server sends nothing, is sent away
// with ENHANCE_YOUR_CALM and "too_many_pings", as grpc-go does.
func TestKeepaliveEnforcement(t *testing.T) {
	cfg := testConfig()
	cfg.GRPC.KeepaliveMinTime = time.Hour
	h := start(t, cfg)
	rc := dialRaw(t, h.addr)
	for i := range 4 {
		must(t, rc.fr.WritePing(false, [8]byte{byte(i)}))
	}
	f := rc.until("GOAWAY", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame)
	if f.ErrCode != http2.ErrCodeEnhanceYourCalm || string(f.DebugData()) != "too_many_pings" {
		t.Errorf("GOAWAY %v %q; want ENHANCE_YOUR_CALM too_many_pings", f.ErrCode, f.DebugData())
	}
}

// TestKeepalivePing: a connection silent for grpc.keepalive_time is
// pinged, and closed when the ping goes unanswered.
func TestKeepalivePing(t *testing.T) {
	cfg := testConfig()
	cfg.GRPC.KeepaliveTime = 50 * time.Millisecond
	h := start(t, cfg)
	h.g.SetKeepaliveTimeout(100 * time.Millisecond)
	rc := dialRaw(t, h.addr)
	rc.until("a PING", func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && !p.IsAck() })
	for {
		if _, err := rc.fr.ReadFrame(); err != nil {
			if !errors.Is(err, io.EOF) {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("the connection stayed open after its keepalive ping went unanswered")
				}
			}
			return
		}
	}
}

// FuzzTransport feeds the gRPC port arbitrary bytes after a valid
// preface: frames of calls, broken or not. The server must not panic, and
// must go on answering calls on other connections.
//
//	go test -fuzz FuzzTransport -fuzztime 60s ./grpcserver/
func FuzzTransport(f *testing.F) {
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	hdr := func(id uint32, path string, end bool, extra ...string) {
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		fields := append([]string{":method", "POST", ":scheme", "http", ":path", path, ":authority", "f", "content-type", "application/grpc", "te", "trailers"}, extra...)
		for i := 0; i+1 < len(fields); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		b := hb.Bytes()
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b[:len(b)/2], EndStream: end})
		_ = fr.WriteContinuation(id, true, b[len(b)/2:])
	}
	msg := message(f, doubleReq(1, 2, 3, 4))
	seed := func(build func()) {
		buf.Reset()
		build()
		f.Add(append([]byte(nil), buf.Bytes()...))
	}
	seed(func() { hdr(1, "/inference.GRPCInferenceService/ModelInfer", false); _ = fr.WriteData(1, true, msg) })
	seed(func() {
		hdr(1, "/inference.GRPCInferenceService/ModelInfer", false, "grpc-timeout", "1S", "x-api-key", "k")
		_ = fr.WriteData(1, false, msg[:7])
		_ = fr.WriteWindowUpdate(0, 1000)
		_ = fr.WritePing(false, [8]byte{1})
		_ = fr.WriteData(1, true, msg[7:])
		_ = fr.WriteRSTStream(1, http2.ErrCodeCancel)
	})
	seed(func() {
		hdr(1, "/grpc.health.v1.Health/Check", false)
		_ = fr.WriteData(1, true, []byte{0, 0, 0, 0, 0})
	})
	seed(func() {
		hdr(3, "/inference.GRPCInferenceService/ServerLive", true)
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 16384})
		hdr(5, "/inference.GRPCInferenceService/ModelInfer", false, "grpc-encoding", "gzip")
		_ = fr.WriteData(5, true, msg)
		_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	})
	h := start(f, testConfig())
	f.Fuzz(func(t *testing.T, frames []byte) {
		nc, err := net.Dial("tcp", h.addr)
		must(t, err)
		defer nc.Close()
		must(t, nc.SetDeadline(time.Now().Add(10*time.Second)))
		var pre bytes.Buffer
		pre.WriteString(http2.ClientPreface)
		_ = http2.NewFramer(&pre, nil).WriteSettings()
		if _, err := nc.Write(append(pre.Bytes(), frames...)); err != nil {
			return // closed by the server while written
		}
		_ = nc.(*net.TCPConn).CloseWrite()
		if _, err := io.Copy(io.Discard, nc); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the connection was not closed 10s after the client's end")
			}
		}
		if _, err := h.infer.ModelInfer(context.Background(), doubleReq(1, 2, 3, 4)); err != nil {
			t.Fatalf("a call after the input: %v", err)
		}
	})
}

// TestMalformedHeaders: a header block HTTP/2 forbids (an uppercase
// field name) resets its stream only; the connection serves the next
// call.
func TestMalformedHeaders(t *testing.T) {
	h := start(t, testConfig())
	rc := dialRaw(t, h.addr)
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/inference.GRPCInferenceService/ServerLive"}, {"Bad-Name", "x"}} {
		must(t, enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}))
	}
	must(t, rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: buf.Bytes(), EndHeaders: true, EndStream: true}))
	f := rc.until("RST_STREAM", func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok }).(*http2.RSTStreamFrame)
	if f.StreamID != 1 || f.ErrCode != http2.ErrCodeProtocol {
		t.Errorf("RST_STREAM on %d, %v; want stream 1, PROTOCOL_ERROR", f.StreamID, f.ErrCode)
	}
	rc.headers(3, false)
	must(t, rc.fr.WriteData(3, true, message(t, doubleReq(1, 2, 3, 4))))
	rc.until("the next call's trailers", func(f http2.Frame) bool {
		mh, ok := f.(*http2.MetaHeadersFrame)
		return ok && mh.StreamID == 3 && mh.StreamEnded()
	})
}
