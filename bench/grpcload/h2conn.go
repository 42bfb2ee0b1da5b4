package grpcload

import (
	"bufio"
	"bytes"
	"errors"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"

	"github.com/coalesce-ml/coalesce/bench/loadgen"
	"github.com/coalesce-ml/coalesce/internal/h2"
)

// h2conn is one HTTP/2 connection of the lean client, carrying unary
// calls on concurrent streams. It starts no goroutine: its callers write
// their frames and take turns reading (see lean.go). It is safe for
// concurrent use.
//
// Lock order: wmu before mu. Nothing blocks on the network while holding
// mu, and nothing waits for another call while holding wmu.
type h2conn struct {
	nc        net.Conn
	authority string
	md        []string    // metadata: name, value pairs
	streamWin uint32      // the window granted to each stream (SETTINGS_INITIAL_WINDOW_SIZE)
	connWin   uint32      // the window granted to the connection
	broken    atomic.Bool // err or goAway is set: new calls go to a new connection

	// The read side belongs to the caller holding the read role
	// (reading, under mu), and passes with it.
	br          *bufio.Reader
	fr          *http2.Framer // its write side is guarded by wmu
	ctl         []ctlFrame    // control frames to send before the reader blocks or leaves
	connUnacked uint32        // DATA bytes received and not yet granted back

	wmu      sync.Mutex // guards the fields below and every write to nc
	bw       *bufio.Writer
	enc      *hpack.Encoder
	hbuf     bytes.Buffer // the header block being encoded
	nextID   uint32
	maxFrame int       // the server's SETTINGS_MAX_FRAME_SIZE, applied when acknowledged
	deadline time.Time // nc's I/O deadline

	mu         sync.Mutex // guards the fields below and the calls' fields marked so
	streams    map[uint32]*call
	waiters    []*call // calls asleep in follow
	reading    bool    // a caller holds the read role
	err        error   // why the connection failed; nc is closed then
	goAway     bool    // the server sent GOAWAY (or stream ids ran out): no new streams
	lastID     uint32  // GOAWAY's last stream id
	sendWin    int64   // the server's connection window
	initWin    int64   // the server's SETTINGS_INITIAL_WINDOW_SIZE
	maxStreams int     // the server's SETTINGS_MAX_CONCURRENT_STREAMS
}

// call is one unary call's state; a leanStream reuses its call for each
// of its calls. Fields marked mu are guarded by h2conn.mu of the
// connection the call is on; the others belong to the calling goroutine.
type call struct {
	wake  chan struct{} // capacity 1: a hint to re-check, sent under mu to a waiting call
	timer *time.Timer   // a follower's deadline
	out   []byte        // the DATA payload: the 5-byte length prefix and the message
	keep  bool          // keep the answer's DATA payload in body (tests)

	id          uint32 // mu
	want        want   // mu: what the call waits for
	waiting     bool   // mu: in h2conn.waiters
	sendWin     int64  // mu: the server's window for this stream
	recvUnacked uint32 // mu: DATA bytes received and not yet granted back
	headers     bool   // mu: the response headers arrived
	grpcType    bool   // mu: their content-type is application/grpc...
	httpStatus  string // mu
	grpcStatus  string // mu: from the trailers (or a trailers-only response)
	done        bool   // mu: ended, with code (and msg), or with err
	reset       bool   // mu: the server reset the stream
	code        codes.Code
	msg         string
	err         error  // no answer: the connection failed, or errRetry
	n           int    // mu: DATA bytes of the answer (length prefix included)
	body        []byte // mu: with keep
}

// want is what a waiting call waits for.
type want uint8

const (
	wantDone   want = iota // its answer
	wantWindow             // send window on its stream and the connection
	wantSlot               // a stream below SETTINGS_MAX_CONCURRENT_STREAMS
)

// ctlFrame is a frame the reader owes the server.
type ctlFrame struct {
	kind     uint8 // ctlWindow, ctlPing, ctlSettings or ctlReset
	id       uint32
	n        uint32  // window increment, RST_STREAM code
	ping     [8]byte // the payload to echo
	maxFrame uint32  // settings to apply when acknowledged; 0: unchanged
	table    uint32
	hasTable bool
}

const (
	ctlWindow = iota
	ctlPing
	ctlSettings
	ctlReset
)

// dial connects to addr and writes the client preface and SETTINGS,
// flushed with the first call's frames (RFC 7540 §3.5: a client may send
// frames right after its preface, without waiting for the server's
// SETTINGS).
func dial(addr string, md []string, streamWin, connWin uint32, deadline time.Time) (*h2conn, error) {
	nc, err := net.DialTimeout("tcp", addr, time.Until(deadline))
	if err != nil {
		return nil, &loadgen.DialError{Err: err}
	}
	cn := &h2conn{
		nc: nc, authority: addr, md: md, streamWin: streamWin, connWin: connWin,
		br: bufio.NewReaderSize(nc, 32<<10), bw: bufio.NewWriterSize(nc, 32<<10),
		nextID: 1, maxFrame: 16384, streams: map[uint32]*call{},
		// RFC 7540 §6.5.2, §6.9.2: the initial values until the server's SETTINGS.
		sendWin: 65535, initWin: 65535, maxStreams: math.MaxInt32,
	}
	cn.fr = http2.NewFramer(cn.bw, cn.br)
	cn.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	cn.fr.SetReuseFrames()
	cn.enc = hpack.NewEncoder(&cn.hbuf)
	cn.bw.WriteString(http2.ClientPreface)
	cn.fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 0}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamWin})
	if connWin > 65535 {
		cn.fr.WriteWindowUpdate(0, connWin-65535)
	}
	return cn, nil
}

// invoke makes one call with the message msg on path and waits for its
// answer until deadline. On nil, c.code and c.msg hold the answer.
func (cn *h2conn) invoke(c *call, path string, msg []byte, deadline time.Time) error {
	if c.wake == nil {
		c.wake = make(chan struct{}, 1)
	}
	c.out = append(c.out[:0], 0, byte(len(msg)>>24), byte(len(msg)>>16), byte(len(msg)>>8), byte(len(msg)))
	c.out = append(c.out, msg...)
	err := cn.open(c, path, deadline)
	if err == nil {
		err = cn.send(c, deadline)
	}
	if err == nil {
		err = cn.await(c, wantDone, deadline)
	}
	if err != nil {
		cn.abandon(c)
		return err
	}
	return c.err // the stream is gone from streams: nobody else writes c now
}

// open registers c on a new stream and writes its HEADERS. It returns
// with wmu held, or an error without.
func (cn *h2conn) open(c *call, path string, deadline time.Time) error {
	for {
		cn.wmu.Lock()
		cn.mu.Lock()
		if cn.err != nil || cn.goAway {
			cn.mu.Unlock()
			cn.wmu.Unlock()
			return errRetry
		}
		if len(cn.streams) < cn.maxStreams {
			break
		}
		cn.mu.Unlock()
		cn.wmu.Unlock()
		if err := cn.await(c, wantSlot, deadline); err != nil {
			if err == errTimeout {
				return err
			}
			return errRetry // nothing was sent
		}
	}
	c.id = cn.nextID
	cn.nextID += 2
	c.sendWin, c.recvUnacked = cn.initWin, 0
	c.headers, c.grpcType, c.httpStatus, c.grpcStatus, c.done, c.reset = false, false, "", "", false, false
	c.code, c.msg, c.err, c.n, c.body = codes.OK, "", nil, 0, c.body[:0]
	cn.streams[c.id] = c
	if cn.nextID > math.MaxInt32 { // RFC 7540 §5.1.1: stream ids are not reused
		cn.retire()
	}
	cn.mu.Unlock()
	// Moving the deadline costs a timer update, so it is moved only when
	// the wanted one is more than slack past it, as the HTTP client does.
	if deadline.Sub(cn.deadline) > slack {
		cn.deadline = deadline.Add(slack)
		cn.nc.SetDeadline(cn.deadline)
	}
	if err := cn.writeHeaders(c.id, path); err != nil {
		cn.wmu.Unlock()
		cn.close(err)
		return err
	}
	return nil
}

// writeHeaders writes the request's header block (gRPC's
// PROTOCOL-HTTP2.md: reserved headers, then the metadata). wmu is held.
func (cn *h2conn) writeHeaders(id uint32, path string) error {
	cn.hbuf.Reset()
	f := func(name, value string) { cn.enc.WriteField(hpack.HeaderField{Name: name, Value: value}) }
	f(":method", "POST")
	f(":scheme", "http")
	f(":path", path)
	f(":authority", cn.authority)
	f("content-type", "application/grpc")
	f("user-agent", "coalesce-bench")
	f("te", "trailers")
	for i := 0; i+1 < len(cn.md); i += 2 {
		f(cn.md[i], cn.md[i+1])
	}
	return h2.WriteBlock(cn.fr, id, false, cn.hbuf.Bytes(), cn.maxFrame)
}

// send writes c's DATA as far as the server's windows allow, END_STREAM
// on the last frame, waiting for WINDOW_UPDATEs in between, and flushes.
// It is called with wmu held and returns with it released.
func (cn *h2conn) send(c *call, deadline time.Time) error {
	rest := c.out
	for {
		cn.mu.Lock()
		if c.done { // answered (or failed) before the whole request was sent
			rst := !c.reset && c.err == nil
			cn.mu.Unlock()
			if rst { // RFC 7540 §8.1: we need not send the rest
				cn.fr.WriteRSTStream(c.id, http2.ErrCodeCancel)
			}
			break
		}
		n := min(int64(len(rest)), cn.sendWin, c.sendWin)
		if n > 0 {
			cn.sendWin -= n
			c.sendWin -= n
		}
		cn.mu.Unlock()
		for n > 0 {
			k := min(int(n), cn.maxFrame)
			if err := cn.fr.WriteData(c.id, k == len(rest), rest[:k]); err != nil {
				cn.wmu.Unlock()
				cn.close(err)
				return err
			}
			rest, n = rest[k:], n-int64(k)
		}
		if len(rest) == 0 {
			break
		}
		if err := cn.bw.Flush(); err != nil {
			cn.wmu.Unlock()
			cn.close(err)
			return err
		}
		cn.wmu.Unlock()
		if err := cn.await(c, wantWindow, deadline); err != nil {
			return err
		}
		cn.wmu.Lock()
	}
	err := cn.bw.Flush()
	cn.wmu.Unlock()
	if err != nil {
		cn.close(err)
	}
	return err
}

// abandon ends c's stream after a timeout or failure: it forgets the
// stream and resets it, so that the server stops working on it.
func (cn *h2conn) abandon(c *call) {
	cn.mu.Lock()
	rst := false
	if cn.streams[c.id] == c {
		rst = !c.reset && cn.err == nil
		cn.remove(c)
	}
	cn.mu.Unlock()
	if rst {
		cn.wmu.Lock()
		err := cn.fr.WriteRSTStream(c.id, http2.ErrCodeCancel)
		if err == nil {
			err = cn.bw.Flush()
		}
		cn.wmu.Unlock()
		if err != nil {
			cn.close(err)
		}
	}
}

// close fails the connection with err.
func (cn *h2conn) close(err error) {
	cn.mu.Lock()
	cn.fail(err)
	cn.mu.Unlock()
}

// fail closes the connection and ends every call on it with err, unless
// it failed before. mu is held.
func (cn *h2conn) fail(err error) {
	if cn.err != nil {
		return
	}
	cn.err = err
	cn.broken.Store(true)
	cn.nc.Close()
	for _, c := range cn.streams {
		c.err = err
		cn.finish(c, codes.Unavailable)
	}
	for _, w := range cn.waiters {
		w.signal()
	}
}

// retire stops new streams on the connection, which closes once its last
// call ends. mu is held.
func (cn *h2conn) retire() {
	cn.goAway = true
	cn.broken.Store(true)
	if len(cn.streams) == 0 {
		cn.fail(errRetry)
	}
	cn.signalWaiters(wantSlot)
}

// finish ends c with code. mu is held.
func (cn *h2conn) finish(c *call, code codes.Code) {
	c.done, c.code = true, code
	cn.remove(c)
	if c.waiting {
		c.signal()
	}
}

// remove forgets c's stream. mu is held.
func (cn *h2conn) remove(c *call) {
	full := len(cn.streams) >= cn.maxStreams
	delete(cn.streams, c.id)
	if full {
		cn.signalWaiters(wantSlot)
	}
	if cn.goAway && len(cn.streams) == 0 {
		cn.fail(errRetry) // nothing more will come on it
	}
}

func (c *call) signal() {
	select {
	case c.wake <- struct{}{}:
	default: // a hint is pending already
	}
}

// signalWaiters wakes the waiting calls that want w. mu is held.
func (cn *h2conn) signalWaiters(w want) {
	for _, c := range cn.waiters {
		if c.want == w {
			c.signal()
		}
	}
}

// ready reports whether what c waits for happened. mu is held.
func (cn *h2conn) ready(c *call) bool {
	switch c.want {
	case wantSlot:
		return cn.goAway || len(cn.streams) < cn.maxStreams
	case wantWindow:
		return c.done || (cn.sendWin > 0 && c.sendWin > 0)
	}
	return c.done
}

// await waits until what c wants (w) happened, the connection failed
// (its error) or the deadline passed (errTimeout). If no caller reads the
// connection, c takes the read role and reads until its own wait is
// over; otherwise it sleeps until the reader wakes it, because its wait
// is over or because the read role is passed to it.
func (cn *h2conn) await(c *call, w want, deadline time.Time) error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	c.want = w
	for {
		if cn.ready(c) {
			cn.handOff()
			return nil
		}
		if cn.err != nil {
			return cn.err
		}
		if !cn.reading {
			cn.reading = true
			err := cn.read(c, deadline)
			cn.reading = false
			cn.handOff()
			if err != nil {
				return err
			}
			continue
		}
		if !time.Now().Before(deadline) {
			return errTimeout
		}
		if err := cn.follow(c, deadline); err != nil {
			return err
		}
	}
}

// follow sleeps until c is signalled or the deadline passes. mu is held,
// and released while asleep.
func (cn *h2conn) follow(c *call, deadline time.Time) error {
	c.waiting = true
	cn.waiters = append(cn.waiters, c)
	cn.mu.Unlock()
	if c.timer == nil {
		c.timer = time.NewTimer(time.Until(deadline))
	} else {
		c.timer.Reset(time.Until(deadline))
	}
	var err error
	select {
	case <-c.wake:
	case <-c.timer.C:
		err = errTimeout
	}
	c.timer.Stop()
	cn.mu.Lock()
	c.waiting = false
	for i, w := range cn.waiters {
		if w == c {
			cn.waiters = append(cn.waiters[:i], cn.waiters[i+1:]...)
			break
		}
	}
	if err != nil && !cn.ready(c) {
		cn.handOff() // the role may have been passed to c
		return err
	}
	return nil
}

// handOff passes the read role, when nobody holds it, to a waiting call,
// preferably one still waiting: every waiter that leaves await without
// the role calls it again, so the role reaches a caller that reads.
// mu is held.
func (cn *h2conn) handOff() {
	if cn.reading || len(cn.waiters) == 0 {
		return
	}
	for _, w := range cn.waiters {
		if !cn.ready(w) {
			w.signal()
			return
		}
	}
	cn.waiters[0].signal()
}

// read holds the read role for c: it reads frames and delivers them until
// c's wait is over, the connection fails, or c's deadline passes
// (errTimeout). mu is held on entry and return, and released while
// reading the socket and writing control frames.
func (cn *h2conn) read(c *call, deadline time.Time) error {
	var err error
	for {
		cn.mu.Unlock()
		if len(cn.ctl) > 0 && !cn.frameBuffered() {
			cn.flushCtl() // before blocking on the socket
		}
		f, rerr := cn.fr.ReadFrame()
		cn.mu.Lock()
		var se http2.StreamError
		switch {
		case rerr == nil:
			cn.dispatch(f)
		case errors.As(rerr, &se):
			if s := cn.streams[se.StreamID]; s != nil {
				s.msg = se.Error()
				cn.finish(s, codes.Internal)
			}
			cn.ctl = append(cn.ctl, ctlFrame{kind: ctlReset, id: se.StreamID, n: uint32(se.Code)})
		default:
			cn.fail(rerr)
		}
		if cn.ready(c) || cn.err != nil {
			break
		}
		if !time.Now().Before(deadline) {
			err = errTimeout
			break
		}
	}
	// Not readiness again after this: while mu is released, another call
	// may take the send window c was waiting for; await checks again.
	if len(cn.ctl) > 0 && cn.err == nil {
		cn.mu.Unlock()
		cn.flushCtl()
		cn.mu.Lock()
	}
	return err
}

// frameBuffered reports whether a whole frame waits in br, so that
// reading it does not block.
func (cn *h2conn) frameBuffered() bool {
	if cn.br.Buffered() < 9 {
		return false // Peek would read the socket
	}
	h, _ := cn.br.Peek(9)
	return cn.br.Buffered() >= h2.FrameLen(h)
}

// flushCtl writes and flushes the control frames owed. The caller holds
// the read role, not mu.
func (cn *h2conn) flushCtl() {
	cn.wmu.Lock()
	var err error
	for _, f := range cn.ctl {
		switch f.kind {
		case ctlWindow:
			err = cn.fr.WriteWindowUpdate(f.id, f.n)
		case ctlPing:
			err = cn.fr.WritePing(true, f.ping)
		case ctlSettings:
			// Applied here, under wmu, so that every frame and header
			// block written after the ack follows them (RFC 7540 §6.5.3).
			if f.maxFrame != 0 {
				cn.maxFrame = int(f.maxFrame)
			}
			if f.hasTable {
				cn.enc.SetMaxDynamicTableSizeLimit(f.table)
			}
			err = cn.fr.WriteSettingsAck()
		case ctlReset:
			err = cn.fr.WriteRSTStream(f.id, http2.ErrCode(f.n))
		}
		if err != nil {
			break
		}
	}
	if err == nil {
		err = cn.bw.Flush()
	}
	cn.wmu.Unlock()
	cn.ctl = cn.ctl[:0]
	if err != nil {
		cn.close(err)
	}
}

// dispatch delivers one frame. mu is held and the read role too.
func (cn *h2conn) dispatch(f http2.Frame) {
	id := f.Header().StreamID
	switch f := f.(type) {
	case *http2.DataFrame:
		// Flow control counts the whole payload, padding included
		// (RFC 7540 §6.9.1), also for streams already ended here.
		n := f.Header().Length
		if cn.connUnacked += n; cn.connUnacked >= cn.connWin/2 {
			cn.ctl = append(cn.ctl, ctlFrame{kind: ctlWindow, n: cn.connUnacked})
			cn.connUnacked = 0
		}
		c := cn.streams[id]
		if c == nil {
			return
		}
		if !c.headers { // gRPC: DATA before HEADERS
			c.msg = "DATA before HEADERS"
			cn.finish(c, codes.Internal)
			cn.ctl = append(cn.ctl, ctlFrame{kind: ctlReset, id: id, n: uint32(http2.ErrCodeProtocol)})
			return
		}
		c.n += len(f.Data())
		if c.keep {
			c.body = append(c.body, f.Data()...)
		}
		if f.StreamEnded() { // no trailers
			c.msg = "server closed the stream without sending trailers"
			cn.finish(c, codes.Internal)
			return
		}
		if c.recvUnacked += n; c.recvUnacked >= cn.streamWin/2 {
			cn.ctl = append(cn.ctl, ctlFrame{kind: ctlWindow, id: id, n: c.recvUnacked})
			c.recvUnacked = 0
		}
	case *http2.MetaHeadersFrame:
		c := cn.streams[id]
		if c == nil {
			return
		}
		if !c.headers {
			c.headers = true
			c.httpStatus = f.PseudoValue("status")
		}
		for _, hf := range f.RegularFields() {
			switch hf.Name {
			case "content-type":
				c.grpcType = strings.HasPrefix(hf.Value, "application/grpc")
			case "grpc-status":
				c.grpcStatus = hf.Value
			case "grpc-message":
				c.msg = hf.Value
			}
		}
		if f.StreamEnded() {
			cn.finish(c, c.status())
		}
	case *http2.WindowUpdateFrame:
		if id == 0 {
			cn.sendWin += int64(f.Increment)
			cn.signalWaiters(wantWindow)
		} else if c := cn.streams[id]; c != nil {
			c.sendWin += int64(f.Increment)
			if c.waiting && c.want == wantWindow {
				c.signal()
			}
		}
	case *http2.PingFrame:
		if !f.IsAck() {
			cn.ctl = append(cn.ctl, ctlFrame{kind: ctlPing, ping: f.Data})
		}
	case *http2.SettingsFrame:
		if f.IsAck() {
			return
		}
		ack := ctlFrame{kind: ctlSettings}
		f.ForeachSetting(func(s http2.Setting) error {
			switch s.ID {
			case http2.SettingInitialWindowSize: // RFC 7540 §6.9.2: adjusts every open stream
				d := int64(s.Val) - cn.initWin
				cn.initWin = int64(s.Val)
				for _, c := range cn.streams {
					c.sendWin += d
				}
				cn.signalWaiters(wantWindow)
			case http2.SettingMaxConcurrentStreams:
				cn.maxStreams = int(min(s.Val, math.MaxInt32))
				cn.signalWaiters(wantSlot)
			case http2.SettingMaxFrameSize:
				ack.maxFrame = s.Val
			case http2.SettingHeaderTableSize:
				ack.table, ack.hasTable = s.Val, true
			}
			return nil
		})
		cn.ctl = append(cn.ctl, ack)
	case *http2.RSTStreamFrame:
		c := cn.streams[id]
		if c == nil {
			return
		}
		c.reset = true
		if f.ErrCode == http2.ErrCodeRefusedStream { // RFC 7540 §8.1.4: not processed
			c.err = errRetry
		}
		c.msg = "stream reset: " + f.ErrCode.String()
		cn.finish(c, rstCode(f.ErrCode))
	case *http2.GoAwayFrame:
		// RFC 7540 §6.8: streams above the last id were not processed;
		// those below it still get their answers.
		if !cn.goAway || f.LastStreamID < cn.lastID {
			cn.lastID = f.LastStreamID
		}
		for sid, c := range cn.streams {
			if sid > cn.lastID {
				c.err = errRetry
				cn.finish(c, codes.Unavailable)
			}
		}
		cn.retire()
	}
}

// status returns the code of an ended call, as grpc-go's client derives
// it: an HTTP status other than 200, or an answer that is not gRPC, maps
// through gRPC's http-grpc-status-mapping.md; otherwise grpc-status.
func (c *call) status() codes.Code {
	if c.httpStatus != "200" || !c.grpcType {
		switch c.httpStatus {
		case "400":
			return codes.Internal
		case "401":
			return codes.Unauthenticated
		case "403":
			return codes.PermissionDenied
		case "404":
			return codes.Unimplemented
		case "429", "502", "503", "504":
			return codes.Unavailable
		}
		return codes.Unknown
	}
	if c.grpcStatus == "" {
		c.msg = "missing grpc-status"
		return codes.Internal
	}
	n, err := strconv.ParseUint(c.grpcStatus, 10, 32)
	if err != nil {
		return codes.Internal
	}
	return codes.Code(n)
}

// rstCode maps an RST_STREAM error code to a gRPC code as grpc-go does.
func rstCode(e http2.ErrCode) codes.Code {
	switch e {
	case http2.ErrCodeRefusedStream:
		return codes.Unavailable
	case http2.ErrCodeCancel:
		return codes.Canceled
	case http2.ErrCodeFlowControl, http2.ErrCodeEnhanceYourCalm:
		return codes.ResourceExhausted
	case http2.ErrCodeInadequateSecurity:
		return codes.PermissionDenied
	}
	return codes.Internal
}
