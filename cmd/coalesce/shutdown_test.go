package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// loadClient is one keep-alive client of hammer: it sends a request, reads
// the answer, and sends the next on the same connection until the server
// asks it to close; then it reconnects, and stops when the connection is
// refused.
type loadTally struct {
	mu       sync.Mutex
	answered int      // requests that got a whole response (200, or 503 closing)
	refused  int      // connections refused after SIGTERM: nothing was sent
	moved    int      // clients that went elsewhere after the drain delay
	lost     []string // requests sent that got no whole response
	bad      []string // answers other than 200 or 503 with Connection: close
	last     time.Time
}

func (t *loadTally) add(f func(t *loadTally)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f(t)
}

// hammer runs clients keep-alive clients against addr, each sending
// POST /predict with body back to back, until each is refused a
// connection after signaled is closed, or for at most limit. Once moved
// is closed, a client told to close its connection stops instead of
// reconnecting, as clients do once a load balancer stopped sending them
// to this server.
func hammer(addr string, body []byte, clients int, signaled, moved <-chan struct{}, started chan<- struct{}, limit time.Duration) *loadTally {
	req := []byte(fmt.Sprintf("POST /predict?model=digits-mlp HTTP/1.1\r\nHost: coalesce\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	tally := &loadTally{}
	end := time.Now().Add(limit)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			var resp fasthttp.Response
			var conn net.Conn
			var br *bufio.Reader
			defer func() {
				if conn != nil {
					conn.Close()
				}
			}()
			first := true
			for time.Now().Before(end) {
				if conn == nil {
					select {
					case <-moved:
						tally.add(func(t *loadTally) { t.moved++ })
						return
					default:
					}
					c, err := net.Dial("tcp", addr)
					if err != nil {
						select {
						case <-signaled:
							tally.add(func(t *loadTally) { t.refused++ })
						default:
							tally.add(func(t *loadTally) { t.bad = append(t.bad, "dial before SIGTERM: "+err.Error()) })
						}
						return
					}
					conn, br = c, bufio.NewReader(c)
				}
				if _, err := conn.Write(req); err != nil {
					tally.add(func(t *loadTally) { t.lost = append(t.lost, "write: "+err.Error()) })
					return
				}
				resp.Reset()
				if err := resp.Read(br); err != nil {
					tally.add(func(t *loadTally) { t.lost = append(t.lost, "read: "+err.Error()) })
					return
				}
				st, closing := resp.StatusCode(), resp.ConnectionClose()
				tally.add(func(t *loadTally) {
					t.answered++
					t.last = time.Now()
					if st != 200 && (st != 503 || !closing) {
						t.bad = append(t.bad, fmt.Sprintf("status %d close=%v: %s", st, closing, resp.Body()))
					}
				})
				if first {
					first = false
					started <- struct{}{}
				}
				if closing {
					conn.Close()
					conn = nil
				}
			}
		})
	}
	wg.Wait()
	return tally
}

// TestSIGTERMKeepAlive sends SIGTERM while 64 keep-alive clients keep
// requests in flight on the real digits model, and checks that no
// request that was sent goes unanswered (a refused new connection is
// fine; EOF or a reset after sending is a lost request), and that the
// process exits 0 once they are answered. It logs the figures: go test ./cmd/coalesce -run TestSIGTERMKeepAlive -v.
// COALESCE_BIN runs it against another build, e.g. an older one.
func TestSIGTERMKeepAlive(t *testing.T) {
	if testing.Short() {
		t.Skip("64 clients for a second")
	}
	// With a drain delay, clients told to close reconnect to this server
	// until endpoint removal has propagated (half the delay here), then
	// go elsewhere: the listener closes only after the delay, and a
	// connection that the kernel accepted into a listener just then
	// would be reset (see proxy.Server.Shutdown).
	tests := []struct {
		name  string
		flags []string
		moved time.Duration // after SIGTERM; 0 = never
	}{
		{"defaults", nil, 0},
		{"drain_delay", []string{"--shutdown.drain_delay", "300ms"}, 150 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if bin := os.Getenv("COALESCE_BIN"); bin != "" {
				old := binPath
				binPath = bin
				defer func() { binPath = old }()
			}
			s := startServer(t, tt.flags...)
			body := readFile(t, "models", "digits-mlp", "examples", "predict.json")
			const clients = 64
			signaled, moved := make(chan struct{}), make(chan struct{})
			started := make(chan struct{}, clients)
			done := make(chan *loadTally, 1)
			go func() { done <- hammer(s.addr, body, clients, signaled, moved, started, 20*time.Second) }()
			for range clients {
				<-started
			}
			time.Sleep(300 * time.Millisecond) // let the load run
			sigAt := time.Now()
			close(signaled)
			if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if tt.moved > 0 {
				time.AfterFunc(tt.moved, func() { close(moved) })
			}
			if len(tt.flags) > 0 {
				// Readiness turns 503 at once, while the drain delay keeps serving.
				st := 0
				for deadline := time.Now().Add(250 * time.Millisecond); st != 503 && time.Now().Before(deadline); {
					st, _, _ = httpDo(s.addr, "GET", "/v2/health/ready", nil, map[string]string{"Connection": "close"})
				}
				if st != 503 {
					t.Errorf("readiness during the drain delay = %d; want 503", st)
				}
			}
			tally := <-done
			var exitAt time.Time
			select {
			case <-s.done:
				exitAt = time.Now()
			case <-time.After(30 * time.Second):
				t.Fatal("server did not exit within 30s of SIGTERM")
			}
			t.Logf("%d clients: %d requests answered, %d lost, %d connections refused and %d clients gone elsewhere after SIGTERM; exit %d after %v (last answer %v after SIGTERM)",
				clients, tally.answered, len(tally.lost), tally.refused, tally.moved, s.exitCode, exitAt.Sub(sigAt).Round(time.Millisecond), tally.last.Sub(sigAt).Round(time.Millisecond))
			if len(tally.lost) > 0 {
				t.Errorf("%d requests lost; first: %s", len(tally.lost), tally.lost[0])
			}
			if len(tally.bad) > 0 {
				t.Errorf("%d unexpected answers; first: %s", len(tally.bad), tally.bad[0])
			}
			if s.exitCode != 0 {
				t.Errorf("exit code = %d; want 0 (stderr: %s)", s.exitCode, s.stderr)
			}
			if tally.answered < clients {
				t.Errorf("only %d requests answered; want load during the test", tally.answered)
			}
			if !strings.Contains(s.stdout.String(), `"msg":"shutdown complete"`) {
				t.Errorf("no shutdown line in the log: %s", s.stdout)
			}
		})
	}
}
