package proxy

import (
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// maxIdleConnBytes is the memory an idle keep-alive connection may cost,
// server and client side together: 10,000 of them within 100 MB.
const maxIdleConnBytes = 10_000

// TestIdleConnMemory opens keep-alive connections to an in-process
// server, each after one request, and checks what they cost in heap and
// goroutine stacks per connection, then that closing them gives it back
// to the heap. COALESCE_IDLE_CONNS sets how many (default 1000; 10000
// needs ulimit -n above 20000).
func TestIdleConnMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector multiplies memory use; make test runs this without it (NORACE_TESTS)")
	}
	n := 1000
	if v := os.Getenv("COALESCE_IDLE_CONNS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatal(err)
		}
	}
	raiseNoFile(t, uint64(2*n+200))
	e := newEdgeEnv(t, 2*n, edgeOpts{})
	released := make(chan struct{}, 1)
	e.s.edge.conns.freeOSMemory = func() { released <- struct{}{} }
	// One connection first, so that pools and the worker pool exist.
	warm := e.dial(t)
	warm.send(t, liveReq)
	warm.response(t)

	before := inuse()
	goroutines := runtime.NumGoroutine()
	rssBefore := rss()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	buf := make([]byte, 512)
	for range n {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatalf("after %d connections: %v", len(conns), err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, liveReq); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every connection idle", func() bool {
		t := e.s.edge.conns
		t.mu.Lock()
		defer t.mu.Unlock()
		idle := 0
		for _, c := range t.conns {
			if c.idleSince.Load() != 0 {
				idle++
			}
		}
		return idle == n+1
	})
	open := inuse()
	per := (int64(open) - int64(before)) / int64(n)
	t.Logf("%d idle keep-alive connections: %d bytes each (heap+stacks, both ends) = %.1f MB per 10,000; RSS %+.1f MB",
		n, per, float64(per)*10000/1e6, float64(rss()-rssBefore)/1e6)
	if per > maxIdleConnBytes {
		t.Errorf("an idle connection costs %d bytes; want at most %d", per, maxIdleConnBytes)
	}

	for _, c := range conns {
		c.Close()
	}
	conns = conns[:0]
	waitFor(t, "the server to close them", func() bool { return e.s.edge.conns.count() == 1 })
	// fasthttp lets a connection's goroutine go after
	// MaxIdleWorkerDuration (1s) idle, checked as often.
	waitFor(t, "their goroutines to exit", func() bool { return runtime.NumGoroutine() <= goroutines })
	after := inuse()
	if n >= releaseMinConns {
		select {
		case <-released:
		case <-time.After(10 * time.Second):
			t.Error("no memory release scheduled after the connections closed")
		}
	}

	t.Logf("after closing them: heap+stacks %+.1f MB from before, RSS %+.1f MB", (float64(after)-float64(before))/1e6, float64(rss()-rssBefore)/1e6)
	if left := int64(after) - int64(before); left > int64(n)*maxIdleConnBytes/4 {
		t.Errorf("%d bytes still in use after the connections closed; want most of %d back", left, int64(open)-int64(before))
	}
}

// inuse returns the heap and stack bytes in use after a full GC.
func inuse() uint64 {
	runtime.GC()
	runtime.GC() // the first may leave finalizers' garbage (net.Conn) for the second
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// rss returns the process's resident set in bytes, 0 if unknown.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, res int64
	for i, f := 0, b; i < 2; i++ {
		j := 0
		for j < len(f) && f[j] != ' ' {
			j++
		}
		v, _ := strconv.ParseInt(string(f[:j]), 10, 64)
		if i == 0 {
			size = v
		} else {
			res = v
		}
		if j < len(f) {
			f = f[j+1:]
		}
	}
	_ = size
	return res * int64(os.Getpagesize())
}

// raiseNoFile raises the open-file limit to n if the hard limit allows,
// and skips the test if it does not.
func raiseNoFile(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skip(err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Skipf("open-file limit %d; need %d", lim.Max, n)
	}
	old := lim.Cur
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() {
		lim.Cur = old
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	})
}
