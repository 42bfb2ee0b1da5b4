package proxy

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

const liveReq = "GET /v2/health/live HTTP/1.1\r\nHost: test\r\n\r\n"

// TestShutdownDrains checks Server.Shutdown with a request in flight, a
// keep-alive connection that sends a request after the shutdown began,
// and one that stays idle: the first two are answered with
// Connection: close, the idle one is closed after DrainIdle, new
// connections are refused, and Shutdown returns only when all are done.
func TestShutdownDrains(t *testing.T) {
	e := newEdgeEnv(t, 100, edgeOpts{DrainIdle: 300 * time.Millisecond})
	busy, reuse, idle := e.dial(t), e.dial(t), e.dial(t)
	for _, c := range []*rawConn{reuse, idle} {
		c.send(t, liveReq)
		checkStatus(t, "before shutdown", c.response(t), 200, "", false)
	}
	gateBody := `{"features":[7]}`
	busy.send(t, head("POST", "/predict?model=gate", len(gateBody)), gateBody)
	<-e.entered

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- e.s.Shutdown(ctx, e.hs)
	}()
	waitFor(t, "the drain to start", e.s.edge.conns.draining.Load)
	if c, err := net.Dial("tcp", e.addr); err == nil {
		c.Close()
		t.Error("a new connection was accepted after the drain started")
	}

	// A keep-alive connection used after the shutdown began is answered,
	// and told to close.
	reuse.send(t, liveReq)
	checkStatus(t, "request on a kept-alive connection during shutdown", reuse.response(t), 200, "", true)
	if !reuse.closedByServer(t) {
		t.Error("connection open after a response with Connection: close")
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}

	close(e.gate)
	checkStatus(t, "request in flight at shutdown", busy.response(t), 200, `{"prediction":[7]}`, true)
	if !idle.closedByServer(t) {
		t.Error("idle connection not closed")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown = %v; want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Shutdown did not return; %d connections open", e.s.edge.conns.count())
	}
}

// TestShutdownGracePeriod checks that Shutdown gives up when its context
// ends with a request still in flight.
func TestShutdownGracePeriod(t *testing.T) {
	e := newEdgeEnv(t, 100, edgeOpts{})
	c := e.dial(t)
	body := `{"features":[7]}`
	c.send(t, head("POST", "/predict?model=gate", len(body)), body)
	<-e.entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.s.Shutdown(ctx, e.hs); err == nil {
		t.Error("Shutdown with a request in flight and its context done = nil; want an error")
	}
}

// TestMaxConnections checks that at http.max_connections a new
// connection closes the longest-idle one instead of being refused, and
// that when every connection is busy a new one is still answered: GET
// (health probes) served, other requests 503, and closed.
func TestMaxConnections(t *testing.T) {
	e := newEdgeEnv(t, 3, edgeOpts{})
	var conns []*rawConn
	for range 3 {
		c := e.dial(t)
		c.send(t, liveReq)
		checkStatus(t, "under the limit", c.response(t), 200, "", false)
		e.waitIdle(t, c)
		conns = append(conns, c)
	}
	// Make conns[1] the longest idle.
	conns[0].send(t, liveReq)
	checkStatus(t, "under the limit", conns[0].response(t), 200, "", false)
	e.waitIdle(t, conns[0])

	c4 := e.dial(t)
	c4.send(t, head("POST", "/predict", len(predictBody)), predictBody)
	checkStatus(t, "new connection at the limit", c4.response(t), 200, predictAnswer, false)
	if !conns[1].closedByServer(t) {
		t.Error("the longest-idle connection was not closed")
	}
	for _, c := range []*rawConn{conns[0], conns[2], c4} {
		c.send(t, liveReq)
		checkStatus(t, "other connections", c.response(t), 200, "", false)
	}
	waitFor(t, "3 connections", func() bool { return e.s.edge.conns.count() == 3 })

	// All three busy.
	body := `{"features":[1]}`
	for _, c := range []*rawConn{conns[0], conns[2], c4} {
		c.send(t, head("POST", "/predict?model=gate", len(body)), body)
		<-e.entered
	}
	probe := e.dial(t)
	probe.send(t, "GET /v2/health/ready HTTP/1.1\r\nHost: test\r\n\r\n")
	checkStatus(t, "health probe with every connection busy", probe.response(t), 200, "", true)
	post := e.dial(t)
	post.send(t, head("POST", "/predict", len(predictBody)), predictBody)
	checkStatus(t, "POST with every connection busy", post.response(t), 503, "http.max_connections", true)
	close(e.gate)
	for _, c := range []*rawConn{conns[0], conns[2], c4} {
		checkStatus(t, "held request", c.response(t), 200, `{"prediction":[1]}`, false)
	}
}

// TestListenerStopAcceptsQueued checks that stopping a listener hands out
// the connections the kernel already accepted (closing it would reset
// them, with a request perhaps sent on them) and then closes it.
func TestListenerStopAcceptsQueued(t *testing.T) {
	s := &Server{cfg: testConfig()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	l := s.Listener(ln).(*connListener)
	for range 3 { // queued: nobody accepts yet
		c, err := net.Dial("tcp", ln.Addr().String())
		must(t, err)
		defer c.Close()
	}
	stopped := make(chan struct{})
	go func() { l.stop(); close(stopped) }()
	for i := range 3 {
		c, err := l.Accept()
		if err != nil {
			t.Fatalf("Accept %d after stop: %v; want the queued connection", i, err)
		}
		c.Close()
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after the queue = %v; want net.ErrClosed", err)
	}
	<-stopped
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Error("the listener still accepts after stop")
	}
}

// waitIdle waits until the server has seen c go idle: the client reads
// the response before the server's goroutine reports the connection idle.
func (e *edgeEnv) waitIdle(t *testing.T, c *rawConn) {
	t.Helper()
	waitFor(t, "the connection to go idle", func() bool {
		tb := e.s.edge.conns
		tb.mu.Lock()
		defer tb.mu.Unlock()
		for _, sc := range tb.conns {
			if sc.RemoteAddr().String() == c.LocalAddr().String() {
				return sc.idleSince.Load() != 0
			}
		}
		return false
	})
}
