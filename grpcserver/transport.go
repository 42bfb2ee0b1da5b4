package grpcserver

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coalesce-ml/coalesce/internal/h2"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The gRPC port's HTTP/2 server (RFC 9113, and gRPC's PROTOCOL-HTTP2).
//
// Why not grpc-go's transport: it hands every call from the connection's
// reader goroutine to a handler goroutine and its answer to a writer
// goroutine (grpc/grpc-go#1498), three thread wake-ups per call that made
// one call at a time 2.7× slower than the same call over HTTP/1.1, where
// fasthttp reads, handles and writes on one goroutine. This transport
// reads frames on one goroutine per connection and runs the unary
// methods of GRPCInferenceService itself (fastpath.go): on the reading
// goroutine when the call is alone on its connection and its calls are
// short (conn.inline), else on a kept worker, and the goroutine that ran a
// call writes its answer. Every other call (health, reflection, a
// compressed message, a malformed request) goes to grpc-go's server
// through its http.Handler (slowpath.go), so that grpc-go keeps answering
// whatever the fast path does not know.

const (
	// streamWindow is the flow-control window granted to each stream
	// (SETTINGS_INITIAL_WINDOW_SIZE), connWindow the connection's. A
	// unary message is read whole, so the stream window only paces
	// messages larger than it.
	streamWindow = 1 << 20
	connWindow   = 1 << 24
	// maxHeaderBytes bounds a request's header list (HPACK-decoded).
	maxHeaderBytes = 64 << 10
	// keepaliveTimeout is how long a keepalive ping may go unanswered
	// before the connection is closed (grpc-go's default).
	keepaliveTimeout = 20 * time.Second
	// maxPingStrikes is how many pings a client may send too early
	// (grpc.keepalive_min_time) before it is sent away, as grpc-go counts.
	maxPingStrikes = 2
	// inlineLimit: a connection whose calls have taken longer than this
	// on average has them run on workers, so that a call arriving during
	// one does not wait for it to end before it is even read.
	inlineLimit = 200 * time.Microsecond
	// pingAckDelay is how long a PING's answer may wait for a flush
	// (ping).
	pingAckDelay = time.Millisecond
	// drainTimeout is how long a graceful stop waits for the client to
	// answer the ping sent with its first GOAWAY.
	drainTimeout = time.Second
)

// drainPing is the payload of the PING that follows a graceful stop's
// first GOAWAY; its answer means every stream the client opened before
// has been seen.
var drainPing = [8]byte{'c', 'o', 'a', 'l', 'e', 's', 'c', 'e'}

// errConnClosed ends the calls of a connection that closed.
var errConnClosed = errors.New("grpcserver: connection closed")

// conn is one HTTP/2 connection of the gRPC port. Its reading goroutine
// (serve) owns the stream table's inserts and the receive windows; the
// goroutines running calls take mu for the send windows and the stream
// table, and wmu to write.
type conn struct {
	s      *Server
	nc     net.Conn
	br     *bufio.Reader
	fr     *http2.Framer
	peer   netip.Addr
	remote string               // nc.RemoteAddr().String(), for grpc-go's peer
	tls    *tls.ConnectionState // nil without TLS

	// Reading goroutine only.
	maxID       uint32 // highest stream id opened by the client (written under mu)
	recvUnacked uint32 // connection bytes received and not yet granted back
	pingStrikes int
	lastPing    time.Time
	inlineCost  atomic.Int64 // moving average of the calls' durations (ns)

	mu         sync.Mutex
	cond       *sync.Cond // window updates, streams ending, closing
	streams    map[uint32]*stream
	sendWindow int64 // the connection's send window
	initWindow int64 // the client's SETTINGS_INITIAL_WINDOW_SIZE
	draining   bool  // a GOAWAY with lastID was sent: no stream above it
	lastID     uint32
	closed     bool

	wmu      sync.Mutex
	bw       *bufio.Writer
	henc     *hpack.Encoder
	hbuf     bytes.Buffer
	maxFrame uint32 // the client's SETTINGS_MAX_FRAME_SIZE
	wrote    atomic.Bool

	started  atomic.Bool   // the server's settings were sent
	frames   atomic.Uint64 // frames read, for the keepalive timer
	kaFrames uint64        // frames at the keepalive timer's last look
	kaPinged bool
	kaTimer  *time.Timer
	watch    *time.Timer   // takes the reading over from a long inline call
	ackTimer *time.Timer   // flushes a PING answer no answer carried
	role     atomic.Uint64 // runInline's epoch
	done     chan struct{} // closed when serve returns
}

// stream is one call.
type stream struct {
	c      *conn
	id     uint32
	m      method       // the fast path's; nil for grpc-go's
	call   callHeaders  // what the call's headers said
	msg    []byte       // fast path: the request as received (length-prefixed)
	want   int          // fast path: bytes of the whole message, once its prefix is read
	ended  bool         // the client half-closed (reading goroutine only)
	begun  bool         // handed to run (reading goroutine only)
	unack  uint32       // bytes received and not granted back (reading goroutine only)
	send   int64        // send window (c.mu)
	reset  atomic.Bool  // the client reset the stream: its answer is not written
	slow   *slowStream  // grpc-go's path
	failed *statusError // fast path: refused while being received
	held   int64        // fast path: bytes of the in-flight budget held for its message
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{s: s, nc: nc, streams: make(map[uint32]*stream), sendWindow: 65535, initWindow: 65535,
		maxFrame: 16384, done: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	c.br = bufio.NewReaderSize(nc, 32<<10)
	c.bw = bufio.NewWriterSize(nc, 32<<10)
	c.fr = http2.NewFramer(c.bw, c.br)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = maxHeaderBytes
	c.fr.SetReuseFrames() // a DATA frame's payload is copied before the next read
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.remote = nc.RemoteAddr().String()
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		c.peer = a.AddrPort().Addr()
	} else if ap, err := netip.ParseAddrPort(c.remote); err == nil {
		c.peer = ap.Addr()
	}
	return c
}

// serve runs the connection until it closes: the TLS handshake when
// there is one, the preface, then frames.
func (c *conn) serve() {
	if !c.start() {
		c.teardown()
		return
	}
	c.readLoop()
}

// start runs the TLS handshake when there is one, reads the client's
// preface and sends the server's settings; false ends the connection.
func (c *conn) start() bool {
	if tc, ok := c.nc.(*tls.Conn); ok {
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			return false
		}
		_ = tc.SetDeadline(time.Time{})
		st := tc.ConnectionState()
		c.tls = &st
	}
	var preface [len(http2.ClientPreface)]byte
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c.br, preface[:]); err != nil || string(preface[:]) != http2.ClientPreface {
		return false
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	err := c.send(func() error {
		err := c.fr.WriteSettings(
			http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: uint32(c.s.maxStreams)},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamWindow},
			http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: maxHeaderBytes},
		)
		if err != nil {
			return err
		}
		return c.fr.WriteWindowUpdate(0, connWindow-65535)
	})
	if err != nil {
		return false
	}
	c.mu.Lock()
	c.kaTimer = time.AfterFunc(c.s.keepaliveTime, c.keepalive)
	c.mu.Unlock()
	c.started.Store(true)
	c.watch = time.AfterFunc(time.Hour, c.takeOver)
	c.watch.Stop()
	c.ackTimer = time.AfterFunc(time.Hour, c.flushAck)
	c.ackTimer.Stop()
	return true
}

// readLoop reads frames until the connection ends, or until another
// goroutine took the reading over while this one ran a call (takeOver).
func (c *conn) readLoop() {
	for {
		f, err := c.fr.ReadFrame()
		if err == nil {
			c.frames.Add(1)
			err = c.frame(f)
		}
		if err == errLostRole {
			return
		}
		var se http2.StreamError
		if errors.As(err, &se) { // a malformed header block: only its stream ends
			c.mu.Lock()
			c.maxID = max(c.maxID, se.StreamID)
			c.mu.Unlock()
			err = c.resetStream(se.StreamID, se.Code)
		}
		if err != nil {
			c.readError(err)
			c.teardown()
			return
		}
	}
}

// errLostRole tells a goroutine that ran a call inline that another one
// reads the connection now.
var errLostRole = errors.New("grpcserver: reading taken over")

// runInline runs a call on the reading goroutine. A call that outlasts
// inlineLimit has the reading taken over by the watch timer's goroutine
// (takeOver), so that frames arriving meanwhile, other calls among them,
// are read; this goroutine then ends with the call (errLostRole). The
// role is an epoch: even while reading, odd while a call runs inline; a
// take-over moves it to the next epoch, so that the goroutine of the
// call can tell it lost the role even after the new reader ran calls
// inline of its own.
func (c *conn) runInline(st *stream) error {
	e := c.role.Load() &^ 1
	c.role.Store(e | 1)
	c.watch.Reset(inlineLimit)
	c.run(st, true)
	c.watch.Stop()
	if !c.role.CompareAndSwap(e|1, e) {
		return errLostRole
	}
	return nil
}

// takeOver continues reading the connection in place of a goroutine busy
// with a call it runs inline.
func (c *conn) takeOver() {
	r := c.role.Load()
	if r&1 == 1 && c.role.CompareAndSwap(r, r+1) {
		c.readLoop()
	}
}

// teardown ends the connection once its reading has ended.
func (c *conn) teardown() {
	c.mu.Lock()
	t := c.kaTimer
	c.mu.Unlock()
	if t != nil {
		t.Stop()
		c.watch.Stop()
		c.ackTimer.Stop()
	}
	c.close()
	close(c.done)
}

// readError ends the connection after err: a protocol error is said
// with a GOAWAY first; a stream error resets only its stream (frame
// returns those as nil after handling them).
func (c *conn) readError(err error) {
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		c.goAway(c.maxID, http2.ErrCode(ce), nil)
	}
}

// frame handles one frame; an error ends the connection.
func (c *conn) frame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.headers(f)
	case *http2.DataFrame:
		return c.data(f)
	case *http2.SettingsFrame:
		return c.settings(f)
	case *http2.WindowUpdateFrame:
		return c.windowUpdate(f)
	case *http2.PingFrame:
		return c.ping(f)
	case *http2.RSTStreamFrame:
		c.mu.Lock()
		st := c.streams[f.StreamID]
		c.mu.Unlock()
		if st != nil {
			c.forgetStream(st)
		}
	case *http2.GoAwayFrame:
		// The client will open no stream; those open go on.
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil // PRIORITY, unknown frames
}

// forgetStream ends a stream the client reset or that is reset for an
// error: a call of grpc-go's path is cancelled, a fast call not yet
// running forgotten, and one running has its answer dropped.
func (c *conn) forgetStream(st *stream) {
	st.reset.Store(true)
	c.mu.Lock()
	c.cond.Broadcast() // a writer waiting for window gives up
	c.mu.Unlock()
	st.ended = true
	if st.slow != nil {
		st.slow.abort(errReset)
	} else if !st.begun {
		c.remove(st)
	}
}

func (c *conn) headers(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	c.mu.Lock()
	st := c.streams[id]
	c.mu.Unlock()
	if st != nil { // trailers from the client end its stream
		if !f.StreamEnded() || st.ended {
			return c.resetStream(st.id, http2.ErrCodeProtocol)
		}
		return c.endOfStream(st)
	}
	if id%2 == 0 || id <= c.maxID {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	st = &stream{c: c, id: id}
	h := parseHeaders(f)
	st.call = h.call
	if m := c.s.fast[h.path]; m != nil && h.fast {
		st.m = m
	}
	c.mu.Lock()
	c.maxID = id
	refuse := (c.draining && id > c.lastID) || len(c.streams) >= c.s.maxStreams
	if !refuse {
		st.send = c.initWindow
		c.streams[id] = st
	}
	c.mu.Unlock()
	if refuse {
		return c.resetStream(id, http2.ErrCodeRefusedStream)
	}
	if f.Truncated {
		st.failed = errHeaderList
		c.fail(st)
		return nil
	}
	if st.m == nil {
		c.startSlow(st, f, &h)
	}
	if f.StreamEnded() {
		return c.endOfStream(st)
	}
	return nil
}

func (c *conn) data(f *http2.DataFrame) error {
	n := f.Length // padding included, as flow control counts it
	c.recvUnacked += n
	if c.recvUnacked >= connWindow/4 {
		if err := c.writeWindowUpdate(0, c.recvUnacked); err != nil {
			return err
		}
		c.recvUnacked = 0
	}
	c.mu.Lock()
	st := c.streams[f.StreamID]
	c.mu.Unlock()
	if st == nil {
		if f.StreamID > c.maxID {
			return http2.ConnectionError(http2.ErrCodeProtocol) // an idle stream
		}
		return nil // one already answered or reset
	}
	if st.ended {
		return c.resetStream(st.id, http2.ErrCodeStreamClosed)
	}
	if st.slow != nil {
		if !st.slow.body.write(f.Data()) {
			return c.resetStream(st.id, http2.ErrCodeFlowControl)
		}
	} else {
		if st.failed = st.receive(f.Data(), c.s.maxMsg); st.failed != nil {
			c.fail(st)
			return nil
		}
		st.unack += n
		if st.unack >= streamWindow/4 && !f.StreamEnded() {
			if err := c.writeWindowUpdate(st.id, st.unack); err != nil {
				return err
			}
			st.unack = 0
		}
	}
	if f.StreamEnded() {
		return c.endOfStream(st)
	}
	return nil
}

// endOfStream handles a client's half-close: a fast call is run, or
// refused with the status its reception failed with; grpc-go's sees the
// end of its body.
func (c *conn) endOfStream(st *stream) error {
	st.ended = true
	if st.slow != nil {
		st.slow.body.close(io.EOF)
		return nil
	}
	if st.failed = st.complete(); st.failed != nil {
		c.fail(st)
		return nil
	}
	st.begun = true
	if c.inline() {
		return c.runInline(st)
	}
	c.s.dispatch(st)
	return nil
}

// inline says whether a call whose message just ended should run on the
// reading goroutine: when no other call of the connection is in flight,
// no frame is waiting to be read, and its calls are short. Running it
// there is what saves the hand-offs; the cost is that frames arriving
// meanwhile wait for it, hence the conditions.
func (c *conn) inline() bool {
	if c.callWaiting() || time.Duration(c.inlineCost.Load()) > inlineLimit {
		return false
	}
	c.mu.Lock()
	n := len(c.streams)
	c.mu.Unlock()
	return n == 1
}

// callWaiting says whether the frames already read from the socket and
// not yet handled may hold another call: a HEADERS frame, or a frame not
// yet whole. A PING or WINDOW_UPDATE, which grpc-go's client sends along
// with its calls, can wait for an inline call.
func (c *conn) callWaiting() bool {
	b, _ := c.br.Peek(c.br.Buffered())
	for len(b) > 0 {
		if len(b) < 9 || http2.FrameType(b[3]) == http2.FrameHeaders {
			return true
		}
		n := h2.FrameLen(b)
		if n > len(b) {
			return http2.FrameType(b[3]) != http2.FrameData // a DATA frame is some call's message
		}
		b = b[n:]
	}
	return false
}

// run runs a fast call, writes its answer and ends the stream. On the
// reading goroutine (inline) it must not wait for the client's windows:
// an answer they cannot take at once is written by a goroutine of its own.
func (c *conn) run(st *stream, inline bool) {
	call := &st.call.c
	call.Arrived = time.Now()
	if st.call.deadline {
		call.Timeout = max(st.call.timeout, 1) // passed: the batcher refuses it as expired
	}
	call.Peer = c.peer
	// The message's bytes were held when its length came (receive), so
	// the call charges none: they are given back once it has run.
	call.Bytes = 0
	resp, cache, err := st.m(c.s.svc, call, st.msg[5:], st.call.fields)
	releaseMsg(st.msg)
	st.msg = nil
	c.s.svc.p.ReleaseBytes(st.held)
	st.held = 0
	// The average feeds on every call, inline or not, so that a
	// connection whose calls got short again goes back to inline.
	d := int64(time.Since(call.Arrived))
	avg := c.inlineCost.Load()
	c.inlineCost.Store(avg + (d-avg)/8)
	var b []byte
	if err == nil {
		b, err = marshal(resp)
	}
	if err != nil {
		c.writeError(st, err)
		c.remove(st)
		return
	}
	switch {
	case c.reserve(st, len(b)):
		c.writeAnswer(st, b, cache, true)
	case inline:
		go c.writeAnswer(st, b, cache, false)
	default:
		c.writeAnswer(st, b, cache, false)
	}
}

// fail answers a call refused before it ran (its message too large,
// malformed, or its headers too long), then resets the stream if the
// client is still sending.
func (c *conn) fail(st *stream) {
	c.writeStatus(st, st.failed.code, st.failed.msg, "")
	if !st.ended {
		_ = c.resetStream(st.id, http2.ErrCodeNo)
	}
	c.remove(st)
}

// remove forgets a finished stream and wakes a graceful stop waiting for
// the last one.
func (c *conn) remove(st *stream) {
	c.mu.Lock()
	if c.streams[st.id] != st {
		c.mu.Unlock()
		return
	}
	if !st.begun { // else run released them
		releaseMsg(st.msg)
		st.msg = nil
		c.s.svc.p.ReleaseBytes(st.held)
		st.held = 0
	}
	delete(c.streams, st.id)
	last := c.draining && len(c.streams) == 0
	c.cond.Broadcast()
	c.mu.Unlock()
	if last {
		c.shut()
	}
}

func (c *conn) settings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			c.mu.Lock()
			d := int64(s.Val) - c.initWindow
			c.initWindow = int64(s.Val)
			for _, st := range c.streams {
				st.send += d
			}
			c.cond.Broadcast()
			c.mu.Unlock()
		case http2.SettingMaxFrameSize:
			c.wmu.Lock()
			c.maxFrame = s.Val
			c.wmu.Unlock()
		case http2.SettingHeaderTableSize:
			c.wmu.Lock()
			c.henc.SetMaxDynamicTableSizeLimit(s.Val)
			c.wmu.Unlock()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return c.send(c.fr.WriteSettingsAck)
}

func (c *conn) windowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		c.sendWindow += int64(f.Increment)
		if c.sendWindow > math.MaxInt32 {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
	} else if st := c.streams[f.StreamID]; st != nil {
		st.send += int64(f.Increment)
	}
	c.cond.Broadcast()
	return nil
}

// ping answers a client's PING, counting those that come sooner than
// grpc.keepalive_min_time after the last one while the server has sent
// nothing since (grpc-go's policy): past maxPingStrikes the client is
// sent away with ENHANCE_YOUR_CALM "too_many_pings", which grpc-go's
// client understands as a cue to slow its keepalive down. An answered
// graceful-stop ping sends the second GOAWAY.
func (c *conn) ping(f *http2.PingFrame) error {
	if f.IsAck() {
		if f.Data == drainPing {
			c.drainSecond()
		}
		return nil
	}
	now := time.Now()
	if c.wrote.Swap(false) {
		c.pingStrikes = 0
	} else if now.Sub(c.lastPing) < c.s.keepaliveMinTime {
		c.pingStrikes++
	}
	c.lastPing = now
	if c.pingStrikes > maxPingStrikes {
		c.goAway(c.maxID, http2.ErrCodeEnhanceYourCalm, []byte("too_many_pings"))
		return errConnClosed
	}
	// The answer waits in the write buffer for the next flush, an
	// answer's most often, or pingAckDelay: grpc-go's client pings after
	// every DATA it receives (its BDP estimator), and an answer of its own
	// cost a write here and a wake-up there per call (in process, the ack
	// took more CPU than the call's answer).
	c.wmu.Lock()
	err := c.fr.WritePing(true, f.Data)
	c.wmu.Unlock()
	c.ackTimer.Reset(pingAckDelay)
	return err
}

// flushAck sends a PING answer still in the write buffer.
func (c *conn) flushAck() {
	c.wmu.Lock()
	_ = c.bw.Flush()
	c.wmu.Unlock()
}

// keepalive runs on a timer every grpc.keepalive_time: a connection
// from which no frame came since its last look is pinged, and closed when
// the ping is not answered within keepaliveTimeout.
func (c *conn) keepalive() {
	c.mu.Lock()
	t := c.kaTimer
	c.mu.Unlock()
	if n := c.frames.Load(); n != c.kaFrames {
		c.kaFrames, c.kaPinged = n, false
		t.Reset(c.s.keepaliveTime)
		return
	}
	if c.kaPinged {
		c.nc.Close() // the reading goroutine ends the connection
		return
	}
	c.kaPinged = true
	if c.send(func() error { return c.fr.WritePing(false, [8]byte{'k', 'e', 'e', 'p'}) }) != nil {
		c.nc.Close()
		return
	}
	t.Reset(c.s.kaTimeout)
}

// resetStream sends RST_STREAM for id and forgets the stream.
func (c *conn) resetStream(id uint32, code http2.ErrCode) error {
	c.mu.Lock()
	st := c.streams[id]
	c.mu.Unlock()
	if st != nil {
		c.forgetStream(st)
	}
	return c.send(func() error { return c.fr.WriteRSTStream(id, code) })
}

func (c *conn) writeWindowUpdate(id, n uint32) error {
	return c.send(func() error { return c.fr.WriteWindowUpdate(id, n) })
}

// goAway sends GOAWAY.
func (c *conn) goAway(last uint32, code http2.ErrCode, debug []byte) {
	_ = c.send(func() error { return c.fr.WriteGoAway(last, code, debug) })
}

// send runs write, which writes frames, and flushes them, holding wmu.
func (c *conn) send(write func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := write(); err != nil {
		return err
	}
	return c.bw.Flush()
}

// drain begins a graceful stop: a GOAWAY that lets every stream in
// flight on the wire through, and a PING whose answer (drainSecond)
// sends the GOAWAY naming the last stream that will be served. A
// connection that has not sent its settings yet is closed.
func (c *conn) drain() {
	if !c.started.Load() {
		c.nc.Close()
		return
	}
	err := c.send(func() error {
		if err := c.fr.WriteGoAway(math.MaxInt32, http2.ErrCodeNo, nil); err != nil {
			return err
		}
		return c.fr.WritePing(false, drainPing)
	})
	if err != nil {
		c.nc.Close()
		return
	}
	time.AfterFunc(drainTimeout, c.drainSecond)
}

// drainSecond sends the graceful stop's second GOAWAY; the connection
// closes once its last stream ends.
func (c *conn) drainSecond() {
	c.mu.Lock()
	if c.draining || c.closed {
		c.mu.Unlock()
		return
	}
	c.draining = true
	c.lastID = c.maxID // streams above it are refused (headers)
	idle := len(c.streams) == 0
	last := c.lastID
	c.mu.Unlock()
	c.goAway(last, http2.ErrCodeNo, nil)
	if idle {
		c.shut()
	}
}

// shut closes the connection after a graceful stop, letting the client
// read what was written.
func (c *conn) shut() {
	c.wmu.Lock()
	_ = c.bw.Flush()
	c.wmu.Unlock()
	// Closing with the client's frames unread would send it a TCP reset,
	// which may discard the last answers before it reads them: the
	// writing side is closed, and the reading goroutine closes the rest
	// when the client ends its side, or after a second.
	if cw, ok := c.nc.(interface{ CloseWrite() error }); !ok || cw.CloseWrite() != nil {
		c.nc.Close()
		return
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(drainTimeout))
}

// close ends the connection: its socket, the calls of grpc-go's path
// still reading or writing, the messages still being received (their
// buffers and budget), and the server's record of it. It runs on the
// reading goroutine, the owner of the messages not yet whole.
func (c *conn) close() {
	c.mu.Lock()
	c.closed = true
	var slow []*slowStream
	var partial []*stream
	for _, st := range c.streams {
		if st.slow != nil {
			slow = append(slow, st.slow)
		} else if !st.begun {
			partial = append(partial, st)
		}
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	c.nc.Close()
	for _, ss := range slow {
		ss.abort(errConnClosed)
	}
	for _, st := range partial {
		c.remove(st)
	}
	c.s.forget(c)
}
