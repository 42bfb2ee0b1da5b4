package grpcload

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/coalesce-ml/coalesce/bench/loadgen"
)

// The lean client (Config.Lean) is this package's own gRPC unary client
// over HTTP/2 (golang.org/x/net/http2's Framer, RFC 7540 and gRPC's
// PROTOCOL-HTTP2.md), written so that a call costs as few goroutine
// hand-offs as the tool's HTTP/1.1 client: grpc-go's client hands every
// call from the caller to its writer goroutine, then from its reader
// goroutine back to the caller, and those wake-ups dominate a round trip
// to a fast server (bench/RESULTS.md, "Where the remaining gap at one
// call goes").
//
// The caller writes its own frames (under h2conn.wmu, one flush per call)
// and then waits for its answer as a leader or a follower: whoever holds
// the connection's read role reads frames from the socket and delivers
// them to their calls; the others sleep until their call is complete or
// the role is passed to them. A call alone on its connection therefore
// writes, reads and returns on its own goroutine; with several in flight,
// a reader whose call completes hands the role to a waiting caller.

// errRetry is a call the server did not process: refused by GOAWAY
// (RFC 7540 §6.8: streams above the last stream id) or REFUSED_STREAM, or
// the connection was no longer usable when the call tried to open its
// stream. Such a call is sent again on a new connection.
var errRetry = errors.New("grpcload: stream not processed by the server")

// errTimeout is a call without an answer by its deadline; it is a
// net.Error whose Timeout is true, as the HTTP client's.
var errTimeout = fmt.Errorf("%w: no answer within the request's timeout", os.ErrDeadlineExceeded)

// errClosed is a call on a Client that was closed.
var errClosed = errors.New("grpcload: client closed")

// retries is how often a call the server did not process is sent again.
const retries = 2

// Windows the lean client grants the server when Config.StaticWindow is
// 0: its messages here are small, so the windows only need to be large
// enough never to stall an answer.
const (
	defaultStreamWindow = 1 << 20
	defaultConnWindow   = 16 << 20
)

// newLean returns a lean Client of n channels for cfg.
func newLean(cfg Config, n int) *Client {
	streamWin, connWin := uint32(defaultStreamWindow), uint32(defaultConnWindow)
	if w := cfg.StaticWindow; w > 0 {
		// RFC 7540 §6.9.2: the connection window starts at 65,535 and
		// only grows.
		streamWin, connWin = uint32(w), uint32(max(w, 65535))
	}
	md := make([]string, len(cfg.Metadata))
	for i, v := range cfg.Metadata {
		if i%2 == 0 {
			v = strings.ToLower(v) // RFC 7540 §8.1.2: field names in lower case
		}
		md[i] = v
	}
	c := &Client{}
	for range n {
		c.chans = append(c.chans, &channel{addr: cfg.Addr, md: md, streamWin: streamWin, connWin: connWin})
	}
	return c
}

// channel is one of a lean Client's HTTP/2 connections, redialled when it
// fails or the server sends GOAWAY. It is safe for concurrent use.
type channel struct {
	addr               string
	md                 []string // metadata: name, value pairs, names in lower case
	streamWin, connWin uint32
	cn                 atomic.Pointer[h2conn] // the current connection; nil before the first call
	mu                 sync.Mutex             // serialises dialling and Close
	closed             bool                   // guarded by mu
	dials              atomic.Int64           // connections made, for tests
}

// conn returns the channel's usable connection, dialling a new one when
// there is none.
func (ch *channel) conn(deadline time.Time) (*h2conn, error) {
	if cn := ch.cn.Load(); cn != nil && !cn.broken.Load() {
		return cn, nil
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.closed {
		return nil, errClosed
	}
	if cn := ch.cn.Load(); cn != nil && !cn.broken.Load() {
		return cn, nil // another caller dialled meanwhile
	}
	cn, err := dial(ch.addr, ch.md, ch.streamWin, ch.connWin, deadline)
	if err != nil {
		return nil, err
	}
	ch.dials.Add(1)
	ch.cn.Store(cn) // the old one closes itself when its last call ends
	return cn, nil
}

func (ch *channel) close() {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.closed = true
	if cn := ch.cn.Load(); cn != nil {
		cn.close(errClosed)
	}
}

// leanStream is one worker's sequence of calls on a channel. It is not
// safe for concurrent use.
type leanStream struct {
	ch *channel
	c  call
}

func (s *leanStream) Do(req *loadgen.Request, deadline time.Time) (int, error) {
	for attempt := 0; ; attempt++ {
		cn, err := s.ch.conn(deadline)
		if err != nil {
			return 0, err
		}
		err = cn.invoke(&s.c, req.Path, req.Body, deadline)
		switch {
		case errors.Is(err, errRetry) && attempt < retries:
			continue
		case errors.Is(err, errRetry):
			return HTTPStatus(codes.Unavailable), nil // as grpc-go answers a refused stream
		case err != nil:
			return 0, err
		}
		return HTTPStatus(s.c.code), nil
	}
}

func (s *leanStream) Close() {
	if s.c.timer != nil {
		s.c.timer.Stop()
	}
}
