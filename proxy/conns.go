package proxy

import (
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// The data plane's connections.
//
// fasthttp serves each connection on one goroutine and reports its state
// through Server.ConnState: StateNew on accept, StateActive once the first
// byte of a request has arrived (for HTTP/1 fasthttp fires it for every
// request, before it reads the headers: serveConn in fasthttp's server.go),
// StateIdle after each response, StateClosed at the end. Two of its own
// mechanisms do not fit a sidecar:
//
//   - Server.Concurrency refuses every new connection with 503 once that
//     many are open, so idle keep-alive connections lock out new clients
//     and health probes;
//   - Server.ShutdownWithContext closes idle keep-alive connections at once
//     (closeIdleConns), so a client that sends its next request just then
//     gets EOF: a lost request.
//
// connTable replaces both. Every connection comes through Server.listener,
// which wraps it in a *trackedConn, and the ConnState hook keeps its state.
// The table closes a connection only while it is idle between requests,
// and then by letting fasthttp's own wait for the next request time out
// (a read deadline; fasthttp then closes the connection without an error
// response), never while a request is being read or answered.

// connTable tracks the open data-plane connections. The zero value is not
// usable; use newConnTable.
type connTable struct {
	max    int     // soft limit on open connections (http.max_connections); 0 = none
	budget *budget // gets back what a closing connection still holds

	draining  atomic.Bool  // set by drain: idle connections get closed
	drainIdle atomic.Int64 // while draining, how long (ns) a connection may idle

	// After many connections closed, freeOSMemory runs once after
	// releaseDelay; fields set by newConnTable, replaced by tests.
	freeOSMemory func()
	releaseDelay time.Duration

	mu       sync.Mutex      // guards the fields below
	conns    []*trackedConn  // open connections; conns[c.idx] == c
	peak     int             // most connections open since the last release
	release  *time.Timer     // pending freeOSMemory; nil if none
	evicting int             // connections in conns told to close, not yet closed
	lns      []*connListener // listeners to close on drain
	empty    chan struct{}   // made by drain; closed when draining and conns is empty
	closed   bool            // empty is closed
}

// overflowReserve returns how many connections beyond max are admitted
// when none is idle (fasthttp's Concurrency stops the rest with 503): enough that health probes and a burst of new clients
// get an answer (a 503 or, for GET, the real one) instead of a refused
// connection, small enough that the limit still bounds memory.
func overflowReserve(max int) int { return max/16 + 16 }

func newConnTable(max int, b *budget) *connTable {
	return &connTable{max: max, budget: b, freeOSMemory: debug.FreeOSMemory, releaseDelay: releaseDelay}
}

// trackedConn is a data-plane connection as the table sees it.
type trackedConn struct {
	net.Conn
	t   *connTable
	idx int // position in t.conns; guarded by t.mu

	// arrived is when the current request's first byte arrived. Only the
	// connection's goroutine writes it (in the StateActive hook) and reads
	// it (in the handler), so it needs no lock.
	arrived time.Time

	// idleSince is when the connection last went idle (UnixNano), 0 while
	// a request is being served or once it was told to close; the table
	// reads it to find the longest-idle connection without locking each.
	idleSince atomic.Int64
	// closeAfter makes the handler answer with Connection: close: the
	// connection was admitted beyond max, or chosen for eviction just as
	// a request arrived on it.
	closeAfter atomic.Bool
	overflow   bool // admitted beyond max: only GET requests are served; set before the first request
	// held is the in-flight budget an Expect: 100-continue request
	// admitted on this connection holds until it is answered.
	held    atomic.Int64
	evicted bool // told to close; counted in t.evicting; guarded by t.mu

	mu    sync.Mutex         // guards the fields below and orders read-deadline changes
	state fasthttp.ConnState // as last reported by fasthttp
	want  time.Time          // the read deadline fasthttp last asked for
	clamp time.Time          // if set and not active, the read deadline is at most this

	closeOnce sync.Once
}

// add starts tracking c. At max it closes the longest-idle connection to
// make room; when none is idle, c is admitted into the reserve to answer
// one request and close.
func (t *connTable) add(nc net.Conn) *trackedConn {
	c := &trackedConn{Conn: nc, t: t}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.max > 0 && len(t.conns)-t.evicting >= t.max && !t.evictLocked() {
		c.overflow = true
		c.closeAfter.Store(true)
	}
	if t.draining.Load() {
		c.clamp = time.Now().Add(time.Duration(t.drainIdle.Load()))
	}
	c.idx = len(t.conns)
	t.conns = append(t.conns, c)
	t.peak = max(t.peak, len(t.conns))
	return c
}

// evictLocked tells the longest-idle connection to close and reports
// whether there was one. The scan is linear, and runs only when a new
// connection arrives at the limit; t.mu is held.
func (t *connTable) evictLocked() bool {
	for range 3 { // a candidate may turn active under us; try the next
		var victim *trackedConn
		oldest := int64(0)
		for _, c := range t.conns {
			if s := c.idleSince.Load(); s != 0 && (victim == nil || s < oldest) {
				victim, oldest = c, s
			}
		}
		if victim == nil {
			return false
		}
		if victim.closeIdle(time.Unix(0, 1)) {
			victim.evicted = true
			victim.closeAfter.Store(true) // if a request slipped in after all, it is answered, then the connection closes
			t.evicting++
			return true
		}
	}
	return false
}

// closeListeners stops the table's listeners (connListener.stop) and
// returns when they are closed: fasthttp's Serve returns, and new
// connections are refused.
func (t *connTable) closeListeners() {
	t.mu.Lock()
	lns := t.lns
	t.mu.Unlock()
	var wg sync.WaitGroup
	for _, ln := range lns {
		wg.Go(ln.stop)
	}
	wg.Wait()
}

// drain starts closing every connection once it has been idle for idle,
// and returns a channel closed when no connection is left. Connections
// answering a request close after their response, which carries
// Connection: close (Server.Handler).
func (t *connTable) drain(idle time.Duration) <-chan struct{} {
	t.drainIdle.Store(int64(idle))
	t.draining.Store(true) // before the scan: see setState
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.release != nil {
		t.release.Stop() // the process is about to exit
		t.release = nil
	}
	if t.empty == nil {
		t.empty = make(chan struct{})
		t.closeIfEmptyLocked()
	}
	deadline := time.Now().Add(idle)
	for _, c := range t.conns {
		c.closeIdle(deadline)
	}
	return t.empty
}

func (t *connTable) closeIfEmptyLocked() {
	if t.empty != nil && !t.closed && len(t.conns) == 0 {
		close(t.empty)
		t.closed = true
	}
}

// count returns the number of open connections.
func (t *connTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// Giving memory back after a mass close. What idle connections cost
// (their goroutines' stacks, above all) becomes free heap when they close,
// but the Go runtime returns free heap to the OS only gradually, after GC
// cycles that an idle server does not run (the forced one comes every 2
// minutes), so the process would keep the memory for minutes. And
// fasthttp keeps each closed connection's goroutine for
// MaxIdleWorkerDuration, stopping idle ones as often (workerPool.clean):
// their stacks are free only after up to twice that.
const (
	releaseMinConns = 1000            // a drop worth a forced GC: ~6 MB at ~6 KB per connection
	releaseDelay    = 3 * time.Second // > 2 × MaxIdleWorkerDuration (edgeServer)
)

// maybeReleaseLocked schedules freeOSMemory when the connections open
// have dropped to half of their peak, by at least releaseMinConns; t.mu
// is held.
func (t *connTable) maybeReleaseLocked() {
	n := len(t.conns)
	t.peak = max(t.peak, n)
	if t.release != nil || t.draining.Load() || t.peak-n < releaseMinConns || n > t.peak/2 {
		return
	}
	t.release = time.AfterFunc(t.releaseDelay, func() {
		t.freeOSMemory()
		t.mu.Lock()
		t.peak = len(t.conns)
		t.release = nil
		t.mu.Unlock()
	})
}

func (t *connTable) remove(c *trackedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	defer t.maybeReleaseLocked()
	last := len(t.conns) - 1
	t.conns[c.idx] = t.conns[last]
	t.conns[c.idx].idx = c.idx
	t.conns[last] = nil
	t.conns = t.conns[:last]
	if c.evicted {
		t.evicting--
	}
	t.closeIfEmptyLocked()
}

// setState is the fasthttp.Server.ConnState hook. fasthttp calls it on
// the connection's goroutine: StateActive before the request is read and
// the handler runs, StateIdle before it waits for the next request.
func (t *connTable) setState(nc net.Conn, st fasthttp.ConnState) {
	c, ok := nc.(*trackedConn)
	if !ok {
		return
	}
	switch st {
	case fasthttp.StateActive:
		now := time.Now()
		c.arrived = now
		c.idleSince.Store(0)
		c.mu.Lock()
		c.state = st
		if !c.clamp.IsZero() {
			// A request got in before an idle deadline of ours: give
			// back the deadline fasthttp set for reading it. (On later
			// requests fasthttp sets ReadTimeout itself right after this
			// hook; on a connection's first request it does not.)
			c.clamp = time.Time{}
			_ = c.Conn.SetReadDeadline(c.want)
		}
		c.mu.Unlock()
	case fasthttp.StateIdle:
		now := time.Now()
		c.mu.Lock()
		c.state = st
		if t.draining.Load() {
			// drain set the flag before scanning, and both look at state
			// under c.mu: either drain's scan or this sees the other.
			c.clamp = now.Add(time.Duration(t.drainIdle.Load()))
			_ = c.Conn.SetReadDeadline(c.effective(c.want))
		} else {
			c.idleSince.Store(now.UnixNano())
		}
		c.mu.Unlock()
	}
}

// closeIdle makes the connection close by deadline if it is waiting for
// a request (new or idle), and reports whether it was.
func (c *trackedConn) closeIdle(deadline time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == fasthttp.StateActive {
		return false
	}
	c.idleSince.Store(0)
	if c.clamp.IsZero() || deadline.Before(c.clamp) {
		c.clamp = deadline
	}
	_ = c.Conn.SetReadDeadline(c.effective(c.want))
	return true
}

// effective returns the read deadline to set for the wanted one.
// c.mu is held.
func (c *trackedConn) effective(want time.Time) time.Time {
	if c.state != fasthttp.StateActive && !c.clamp.IsZero() && (want.IsZero() || want.After(c.clamp)) {
		return c.clamp
	}
	return want
}

// SetReadDeadline records the deadline fasthttp asks for and sets it, or
// the table's earlier one while the connection waits for a request.
func (c *trackedConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.want = t
	return c.Conn.SetReadDeadline(c.effective(t))
}

// Close closes the connection and stops tracking it.
func (c *trackedConn) Close() error {
	c.closeOnce.Do(func() {
		// fasthttp ends a connection without calling a handler when it
		// cannot write 100 Continue: give back what expect took.
		c.t.budget.release(c.held.Swap(0))
		c.t.remove(c)
	})
	return c.Conn.Close()
}

// connListener hands out tracked connections.
type connListener struct {
	net.Listener
	t        *connTable
	stopping atomic.Bool   // set by stop: the next Accept error closes the listener
	closed   chan struct{} // closed by close
	once     sync.Once
}

// Listener returns ln with its connections tracked by the server: the
// data-plane server (HTTPServer) must serve the returned listener for
// connection eviction at http.max_connections, request arrival times and
// Shutdown to work. It may be called for several listeners.
func (s *Server) Listener(ln net.Listener) net.Listener {
	t := s.edgeInit().conns
	l := &connListener{Listener: ln, t: t, closed: make(chan struct{})}
	t.mu.Lock()
	t.lns = append(t.lns, l)
	t.mu.Unlock()
	return l
}

func (l *connListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		if l.stopping.Load() {
			// The deadline stop set has passed: nothing more is queued.
			// fasthttp's Serve treats "use of closed network
			// connection" (net.ErrClosed) as the end, not as an error.
			_ = l.close()
			return nil, net.ErrClosed
		}
		return nil, err
	}
	return l.t.add(c), nil
}

// acceptDrain is how long stop keeps accepting. Closing a listening
// socket resets the connections the kernel has completed but nobody has
// accepted yet (Linux inet_csk_listen_stop), and a client may have sent a
// request on one: stop hands them to the server first. One that
// completes in the microseconds between the last Accept and the close is
// still reset; no portable API closes a listener without that window.
const acceptDrain = 20 * time.Millisecond

// deadliner is a listener whose Accept takes a deadline (*net.TCPListener,
// *net.UnixListener).
type deadliner interface{ SetDeadline(time.Time) error }

// stop makes the listener accept for acceptDrain more, then close, and
// returns when it has closed; a listener that cannot take a deadline, or
// whose Accept is not being called (fasthttp's Serve is not running),
// is closed at once or after a second.
func (l *connListener) stop() {
	d, ok := l.Listener.(deadliner)
	if !ok {
		_ = l.close()
		return
	}
	l.stopping.Store(true)
	// An Accept past its deadline fails at once, even with connections
	// queued (internal/poll checks the deadline first), hence a deadline
	// ahead rather than now.
	if err := d.SetDeadline(time.Now().Add(acceptDrain)); err != nil {
		_ = l.close()
		return
	}
	t := time.NewTimer(acceptDrain + time.Second)
	defer t.Stop()
	select {
	case <-l.closed:
	case <-t.C:
		_ = l.close()
	}
}

// Close closes the listener once; later calls return nil, so that
// fasthttp's ShutdownWithContext, which closes its listeners again after
// Server.Shutdown did, does not report an error.
func (l *connListener) Close() error { return l.close() }

func (l *connListener) close() (err error) {
	l.once.Do(func() {
		err = l.Listener.Close()
		close(l.closed)
	})
	return err
}
