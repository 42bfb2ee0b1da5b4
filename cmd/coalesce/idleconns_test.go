package main

import (
	"bytes"
	"flag"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
	"time"
)

var idleConns = flag.Int("idleconns", 0, "TestIdleConnsRSS: keep-alive connections to open")

// TestIdleConnsRSS measures the server process's resident memory with
// -idleconns keep-alive connections open and idle (each after one
// request), and after they close; it is a measurement, skipped unless the
// flag is set. 10,000 connections need ulimit -n above 10,100:
//
//	go test ./cmd/coalesce -run TestIdleConnsRSS -v -idleconns 10000
func TestIdleConnsRSS(t *testing.T) {
	n := *idleConns
	if n <= 0 {
		t.Skip("-idleconns is not set")
	}
	s := startServer(t, "--http.max_connections", strconv.Itoa(2*n))
	pid := s.cmd.Process.Pid
	time.Sleep(time.Second) // let start-up garbage settle
	base := vmRSS(t, pid)
	conns := make([]net.Conn, 0, n)
	buf := make([]byte, 512)
	for range n {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatalf("after %d connections: %v", len(conns), err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil || !bytes.HasPrefix(buf, []byte("HTTP/1.1 200")) {
			t.Fatalf("connection %d: %q %v", len(conns), buf, err)
		}
	}
	time.Sleep(2 * time.Second)
	open := vmRSS(t, pid)
	t.Logf("%d idle keep-alive connections: server RSS %+.1f MB (%.0f bytes each)", n, float64(open-base)/1e6, float64(open-base)/float64(n))
	closed := time.Now()
	for _, c := range conns {
		c.Close()
	}
	for _, after := range []time.Duration{time.Second, 3 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second} {
		time.Sleep(time.Until(closed.Add(after)))
		t.Logf("%v after closing them: server RSS %+.1f MB", after, float64(vmRSS(t, pid)-base)/1e6)
	}
}

// vmRSS returns a process's resident set size in bytes.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("VmRSS:"))
	if i < 0 {
		t.Fatal("no VmRSS")
	}
	f := bytes.Fields(b[i+len("VmRSS:"):])
	kb, err := strconv.ParseInt(string(f[0]), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return kb << 10
}
