package grpcload

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/coalesce-ml/coalesce/bench/loadgen"
)

// captureCodec is rawCodec that keeps the answer's bytes in a *[]byte.
type captureCodec struct{ rawCodec }

var _ encoding.CodecV2 = captureCodec{}

func (captureCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// grpcGoCall makes one call with grpc-go and returns its code and answer.
func grpcGoCall(t *testing.T, cc *grpc.ClientConn, body []byte) (codes.Code, []byte) {
	t.Helper()
	var out []byte
	err := cc.Invoke(context.Background(), ModelInfer, &body, &out, grpc.ForceCodecV2(captureCodec{}))
	return status.Code(err), out
}

// leanCall makes one call with the lean client on ch and returns its code
// and answer (the message without its length prefix).
func leanCall(t *testing.T, ch *channel, body []byte) (codes.Code, []byte) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	cn, err := ch.conn(deadline)
	if err != nil {
		t.Fatal(err)
	}
	c := call{keep: true}
	if err := cn.invoke(&c, ModelInfer, body, deadline); err != nil {
		t.Fatalf("invoke: %v", err)
	}
	if c.code != codes.OK {
		return c.code, nil
	}
	if len(c.body) < 5 || int(binary.BigEndian.Uint32(c.body[1:5])) != len(c.body)-5 {
		t.Fatalf("answer of %d bytes does not hold one length-prefixed message", len(c.body))
	}
	return c.code, c.body[5:]
}

func newLeanChannel(t *testing.T, cfg Config) *channel {
	t.Helper()
	cfg.Lean = true
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.chans[0]
}

func TestLeanAnswersAsGRPCGo(t *testing.T) {
	_, addr := startStub(t)
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	// A window of 64 KiB and messages of 1 MiB both ways make both sides
	// wait for WINDOW_UPDATEs.
	ch := newLeanChannel(t, Config{Addr: addr, StaticWindow: 65535})
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	f := func(model string, raw []byte, want codes.Code) {
		t.Helper()
		req := requestRaw(t, model, raw)
		gc, gb := grpcGoCall(t, cc, req.Body)
		lc, lb := leanCall(t, ch, req.Body)
		if gc != want || lc != want {
			t.Errorf("%s: grpc-go %v, lean %v; want %v", model, gc, lc, want)
		}
		if !bytes.Equal(gb, lb) {
			t.Errorf("%s: lean's answer (%d bytes) differs from grpc-go's (%d bytes)", model, len(lb), len(gb))
		}
	}
	f("ok", []byte{1}, codes.OK)
	f("echo", []byte{1, 2, 3}, codes.OK)
	f("echo", big, codes.OK)
	f("missing", nil, codes.NotFound)
	f("bad", nil, codes.InvalidArgument)
	f("shed", nil, codes.ResourceExhausted)
	f("down", nil, codes.Unavailable)
	f("ok", []byte{1}, codes.OK)
	if d := ch.dials.Load(); d != 1 {
		t.Errorf("%d connections for the calls; want 1", d)
	}
}

func TestLeanConcurrentStreams(t *testing.T) {
	f := func(window int32, raw []byte, goroutines, calls int) {
		t.Helper()
		s, addr := startStub(t)
		c, err := New(Config{Addr: addr, Lean: true, StaticWindow: window, Metadata: []string{"X-Api-Key", "k2"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		req := requestRaw(t, "echo", raw)
		var wg sync.WaitGroup
		var ok atomic.Int64
		for i := range goroutines {
			wg.Go(func() {
				st := c.Conn(i)
				defer st.Close()
				for range calls {
					if code, err := st.Do(&req, time.Now().Add(20*time.Second)); code == 200 && err == nil {
						ok.Add(1)
					} else {
						t.Errorf("Do = %d, %v; want 200", code, err)
						return
					}
				}
			})
		}
		wg.Wait()
		if n := ok.Load(); n != int64(goroutines*calls) {
			t.Errorf("%d of %d calls succeeded", n, goroutines*calls)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.peers) != 1 || !s.keys["k2"] || !bytes.Equal(s.raw, raw) {
			t.Errorf("server saw %d connections, keys %v, a raw input of %d bytes; want 1, k2, %d", len(s.peers), s.keys, len(s.raw), len(raw))
		}
	}
	f(0, []byte{1, 2, 3, 4}, 64, 200)
	// Large messages on small windows: streams wait for the stream's and
	// the connection's window while others read.
	f(65535, bytes.Repeat([]byte{7}, 200<<10), 8, 10)
}

// TestLeanGoAway runs calls on a server that ends every connection after
// 50ms with GOAWAY: calls move to new connections without failing.
func TestLeanGoAway(t *testing.T) {
	s, addr := startStub(t, grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: 50 * time.Millisecond, MaxConnectionAgeGrace: 10 * time.Second}))
	c, err := New(Config{Addr: addr, Lean: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := request(t, "ok")
	var wg sync.WaitGroup
	end := time.Now().Add(500 * time.Millisecond)
	for i := range 8 {
		wg.Go(func() {
			st := c.Conn(i)
			defer st.Close()
			for time.Now().Before(end) {
				if code, err := st.Do(&req, time.Now().Add(10*time.Second)); code != 200 || err != nil {
					t.Errorf("Do = %d, %v; want 200", code, err)
					return
				}
			}
		})
	}
	wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := c.chans[0].dials.Load(); d < 3 || len(s.peers) < 3 {
		t.Errorf("%d connections dialled, %d seen by the server; want several", d, len(s.peers))
	}
}

// TestLeanServerStops stops the server while calls wait for answers: they
// fail at once, and the next call is a dial error.
func TestLeanServerStops(t *testing.T) {
	s, addr, gs := startStubServer(t)
	c, err := New(Config{Addr: addr, Lean: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := request(t, "stall")
	type result struct {
		code int
		err  error
	}
	results := make(chan result, 4) // one per call
	for i := range 4 {
		go func() {
			st := c.Conn(i)
			defer st.Close()
			code, err := st.Do(&req, time.Now().Add(30*time.Second))
			results <- result{code, err}
		}()
	}
	for s.calls.Load() < 4 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	gs.Stop()
	for range 4 {
		r := <-results
		if r.err == nil || r.code != 0 {
			t.Errorf("Do during Stop = %d, %v; want 0 and an error", r.code, r.err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("calls ended %v after Stop; want at once", d)
	}
	st := c.Conn(0)
	ok := request(t, "ok")
	if _, err := st.Do(&ok, time.Now().Add(5*time.Second)); !errors.Is(err, syscall.ECONNREFUSED) || !errors.As(err, new(*loadgen.DialError)) {
		t.Errorf("Do after Stop: %v; want a dial error, connection refused", err)
	}
}

// fakeConn is the server side of one connection in a scripted test.
type fakeConn struct {
	t   *testing.T
	nc  net.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
}

// request reads frames up to the end of a request and returns its stream
// id, header fields and DATA, acknowledging the client's SETTINGS and
// granting windowUpdate bytes of stream window after each DATA frame
// when it is positive.
func (fc *fakeConn) request(windowUpdate uint32) (uint32, map[string]string, []byte) {
	fields := map[string]string{}
	var data []byte
	for {
		f, err := fc.fr.ReadFrame()
		if err != nil {
			fc.t.Errorf("server: %v", err)
			return 0, nil, nil
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fc.fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			for _, hf := range f.Fields {
				fields[hf.Name] = hf.Value
			}
		case *http2.DataFrame:
			data = append(data, f.Data()...)
			if windowUpdate > 0 && !f.StreamEnded() {
				fc.fr.WriteWindowUpdate(f.StreamID, windowUpdate)
			}
			if f.StreamEnded() {
				return f.StreamID, fields, data
			}
		}
	}
}

// headers writes a header block on stream id.
func (fc *fakeConn) headers(id uint32, end bool, kv ...string) {
	fc.buf.Reset()
	for i := 0; i < len(kv); i += 2 {
		fc.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	fc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: fc.buf.Bytes(), EndHeaders: true, EndStream: end})
}

// answer writes a whole gRPC answer of msg on stream id.
func (fc *fakeConn) answer(id uint32, msg []byte) {
	fc.headers(id, false, ":status", "200", "content-type", "application/grpc")
	fc.fr.WriteData(id, false, append([]byte{0, 0, 0, 0, byte(len(msg))}, msg...))
	fc.headers(id, true, "grpc-status", "0")
}

// fakeServer serves each connection with script (given the connection's
// number from 0) until the test ends.
func fakeServer(t *testing.T, script func(fc *fakeConn, n int)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for n := 0; ; n++ {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer nc.Close()
				preface := make([]byte, len(http2.ClientPreface))
				if _, err := io.ReadFull(nc, preface); err != nil || string(preface) != http2.ClientPreface {
					t.Errorf("server: client preface %q, %v", preface, err)
					return
				}
				fc := &fakeConn{t: t, nc: nc, fr: http2.NewFramer(nc, nc)}
				fc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
				fc.enc = hpack.NewEncoder(&fc.buf)
				fc.fr.WriteSettings()
				script(fc, n)
			})
		}
	})
	return ln.Addr().String()
}

// TestLeanFrames plays scripted servers against the lean client, for the
// frames a grpc-go server rarely sends.
func TestLeanFrames(t *testing.T) {
	body := bytes.Repeat([]byte{9}, 100)
	f := func(name string, calls, wantStatus int, wantErr bool, wantDials int64, script func(fc *fakeConn, n int)) {
		t.Run(name, func(t *testing.T) {
			addr := fakeServer(t, script)
			c, err := New(Config{Addr: addr, Lean: true, Metadata: []string{"authorization", "Bearer k"}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			st := c.Conn(0)
			req := loadgen.Request{Path: ModelInfer, Body: body}
			for range calls {
				code, err := st.Do(&req, time.Now().Add(5*time.Second))
				if code != wantStatus || (err != nil) != wantErr {
					t.Errorf("Do = %d, %v; want %d (error: %v)", code, err, wantStatus, wantErr)
				}
			}
			if d := c.chans[0].dials.Load(); d != wantDials {
				t.Errorf("%d connections; want %d", d, wantDials)
			}
		})
	}
	// After the first call, a stream window of 10 bytes: the client
	// sends 10, waits for the WINDOW_UPDATE, and so on; a PING before
	// the answer must come back acked.
	f("flow control and ping", 2, 200, false, 1, func(fc *fakeConn, n int) {
		id, _, _ := fc.request(0)
		fc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
		fc.answer(id, []byte("ok"))
		id, fields, data := fc.request(10)
		fc.fr.WritePing(false, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})
		want := map[string]string{":method": "POST", ":scheme": "http", ":path": ModelInfer, ":authority": fc.nc.LocalAddr().String(),
			"content-type": "application/grpc", "te": "trailers", "authorization": "Bearer k"}
		for k, v := range want {
			if fields[k] != v {
				t.Errorf("request header %s = %q; want %q", k, fields[k], v)
			}
		}
		if len(data) != 105 || !bytes.Equal(data[5:], body) || binary.BigEndian.Uint32(data[1:5]) != 100 {
			t.Errorf("request DATA = %x; want a 5-byte prefix and the message", data)
		}
		for {
			f, err := fc.fr.ReadFrame()
			if err != nil {
				t.Errorf("server: %v before the PING ack", err)
				return
			}
			if p, ok := f.(*http2.PingFrame); ok {
				if !p.IsAck() || p.Data != [8]byte{1, 2, 3, 4, 5, 6, 7, 8} {
					t.Errorf("PING from the client %+v; want the ack of ours", p)
				}
				break
			}
		}
		fc.answer(id, []byte("ok"))
		io.Copy(io.Discard, fc.nc)
	})
	f("trailers-only", 1, 404, false, 1, func(fc *fakeConn, n int) {
		id, _, _ := fc.request(0)
		fc.headers(id, true, ":status", "200", "content-type", "application/grpc", "grpc-status", "5", "grpc-message", "no such model")
		io.Copy(io.Discard, fc.nc)
	})
	f("HTTP 503, not gRPC", 1, 503, false, 1, func(fc *fakeConn, n int) {
		id, _, _ := fc.request(0)
		fc.headers(id, true, ":status", "503", "content-type", "text/plain")
		io.Copy(io.Discard, fc.nc)
	})
	f("no trailers", 1, 500, false, 1, func(fc *fakeConn, n int) {
		id, _, _ := fc.request(0)
		fc.headers(id, false, ":status", "200", "content-type", "application/grpc")
		fc.fr.WriteData(id, true, []byte{0, 0, 0, 0, 0})
		io.Copy(io.Discard, fc.nc)
	})
	f("reset", 1, 499, false, 1, func(fc *fakeConn, n int) {
		id, _, _ := fc.request(0)
		fc.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		io.Copy(io.Discard, fc.nc)
	})
	// Streams the server did not process go to a new connection.
	// A refused stream is sent again (on the same connection: RFC 7540
	// §8.1.4).
	f("refused, then answered", 1, 200, false, 1, func(fc *fakeConn, n int) {
		id, _, _ := fc.request(0)
		fc.fr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
		id, _, _ = fc.request(0)
		fc.answer(id, []byte("ok"))
		io.Copy(io.Discard, fc.nc)
	})
	f("GOAWAY below the stream, then answered", 1, 200, false, 2, func(fc *fakeConn, n int) {
		id, _, _ := fc.request(0)
		if n == 0 {
			fc.fr.WriteGoAway(0, http2.ErrCodeNo, nil)
		} else {
			fc.answer(id, []byte("ok"))
		}
		io.Copy(io.Discard, fc.nc)
	})
	f("GOAWAY on every connection", 1, 503, false, retries+1, func(fc *fakeConn, n int) {
		fc.request(0)
		fc.fr.WriteGoAway(0, http2.ErrCodeNo, nil)
		io.Copy(io.Discard, fc.nc)
	})
	f("closed mid-answer", 1, 0, true, 1, func(fc *fakeConn, n int) {
		id, _, _ := fc.request(0)
		fc.headers(id, false, ":status", "200", "content-type", "application/grpc")
	})
}
