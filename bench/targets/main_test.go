package targets

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain doubles as the no-op server that StartNoop re-executes, the way
// the bench tool does: `targets.test noop --addr A`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "noop" {
		os.Exit(noopMain(os.Args[2:]))
	}
	code := m.Run()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// shared holds what several tests reuse: a prepared Python (training the
// models takes seconds), made once in a folder TestMain removes.
var shared struct {
	once sync.Once
	dir  string
	py   *Python
	err  error
}

func noopMain(args []string) int {
	fs := flag.NewFlagSet("noop", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "noop listening on", ln.Addr())
	if err := ServeNoop(ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// testCtx is bounded so that no test can hang on a server.
func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// reply is what do returns.
type reply struct {
	status int
	body   string
	header http.Header
	close  bool // the server asked to close the connection
}

// do sends one request without keep-alive.
func do(t *testing.T, method, url, body string) reply {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, string(b), resp.Header, resp.Close}
}

// assertGroupGone fails unless no live process is left in group pgid.
func assertGroupGone(t *testing.T, pgid int) {
	t.Helper()
	left, err := groupMembers(pgid)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("processes %v of group %d still running after Stop", left, pgid)
	}
}

// checkGoroutines fails when, after f, goroutines beyond those running
// before remain for more than a few seconds. Two fasthttp goroutines are
// not counted: the process-wide Date header ticker, started once and never
// stopped, and a stopped worker pool's cleaner, which notices the stop
// only after its idle period (10s).
func checkGoroutines(t *testing.T, f func()) {
	t.Helper()
	before := len(goroutines())
	f()
	deadline := time.Now().Add(5 * time.Second)
	for {
		after := goroutines()
		if len(after) <= before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d before, %d after:\n%s", before, len(after), strings.Join(after, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// goroutines returns the stacks of the running goroutines but fasthttp's
// two long-lived ones (see checkGoroutines).
func goroutines() []string {
	buf := make([]byte, 1<<20)
	var out []string
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if !strings.Contains(g, "fasthttp.updateServerDate") && !strings.Contains(g, "fasthttp.(*workerPool).Start") {
			out = append(out, g)
		}
	}
	return out
}
