// Package targets starts, stops and observes the servers a benchmark
// measures: Coalesce, the bare fasthttp ceiling, and the seed's Flask
// example under its built-in server and under gunicorn.
//
// Every Start* function binds the server to 127.0.0.1 on ports it picks,
// runs it in its own process group (so that Stop takes workers and other
// children down with it), and returns only once the server answers a real
// request, or with an error that carries the tail of its log. CPUSeconds
// and Scrape give the server's side of a run: CPU time from /proc and the
// deltas of its Prometheus metrics.
package targets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// readyTimeout bounds every start, on top of the caller's context:
	// Coalesce is ready in well under a second, the Python servers in a
	// few (importing sklearn and unpickling the model).
	readyTimeout = 60 * time.Second
	probeEvery   = 50 * time.Millisecond
	probeTimeout = 5 * time.Second // one readiness request
	// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
	stopGrace = 10 * time.Second
	// goneTimeout bounds the wait, after the leader exited, for the rest
	// of its process group to disappear.
	goneTimeout = 5 * time.Second
	logTailSize = 4 << 10
	// startAttempts is how often a start is tried when the server could
	// not bind its port: ports are picked by binding :0 and closing, so
	// another process may take one before the server binds it.
	startAttempts = 3
)

// errAddrInUse marks a start that failed because a port was taken.
var errAddrInUse = errors.New("address already in use")

// errExited marks a server that exited before it was ready.
var errExited = errors.New("exited before it was ready")

// Target is a running server under test. Its exported fields are set by
// the Start function that returned it and must not be changed. Stop and Log
// are safe for concurrent use.
type Target struct {
	Name       string // "coalesce", "flask", "gunicorn", "noop-fasthttp", ...
	Addr       string // 127.0.0.1:port of the data plane
	MetricsURL string // http://127.0.0.1:port/metrics; "" when the server has none
	// PID is the server process. It leads its own process group; its
	// children (gunicorn workers) are counted with it by CPUSeconds and
	// stopped with it by Stop.
	PID int

	log   *tailBuffer
	grace time.Duration // SIGTERM to SIGKILL, stopGrace but in tests
	done  chan struct{} // closed by the waiter goroutine once waitErr is set
	// waitErr is cmd.Wait's result; read it only after done is closed.
	waitErr error

	stopOnce sync.Once
	stopErr  error // set inside stopOnce
}

// Log returns the last ~4 KiB of the server's combined stdout and stderr,
// starting at a line boundary when older output was dropped.
func (t *Target) Log() string { return t.log.String() }

// Stop sends SIGTERM to the server's process group, waits up to 10s for
// the server to exit, then sends SIGKILL; in either case it kills what is
// left of the group and waits (bounded) until no member runs any more, so
// that ports and CPUs are free when it returns. It returns nil when the
// server exited cleanly (status 0, or killed by the SIGTERM), and an error
// when it had to be killed, exited with another status, or had already
// died before Stop was called. Stop is idempotent: later calls return the
// first call's result.
func (t *Target) Stop() error {
	t.stopOnce.Do(func() { t.stopErr = t.stop() })
	return t.stopErr
}

func (t *Target) stop() error {
	var err error
	select {
	case <-t.done:
		err = fmt.Errorf("%s (pid %d) had exited before Stop: %v", t.Name, t.PID, t.waitErr)
	default:
		// The whole group gets SIGTERM: gunicorn's master and workers both
		// shut down gracefully on it, and nothing is orphaned if the
		// leader dies first.
		_ = syscall.Kill(-t.PID, syscall.SIGTERM)
		timer := time.NewTimer(t.grace)
		select {
		case <-t.done:
			timer.Stop()
			if !exitedCleanly(t.waitErr) {
				err = fmt.Errorf("%s (pid %d) exited uncleanly after SIGTERM: %v", t.Name, t.PID, t.waitErr)
			}
		case <-timer.C:
			_ = syscall.Kill(-t.PID, syscall.SIGKILL)
			<-t.done // prompt: SIGKILL cannot be caught, and cmd.WaitDelay bounds the pipe copy
			err = fmt.Errorf("%s (pid %d) did not exit within %v of SIGTERM; killed", t.Name, t.PID, t.grace)
		}
	}
	// Members that outlived the leader (a worker stuck in a request, a
	// grandchild in its own loop) must not keep burning CPU during the
	// next measurement.
	_ = syscall.Kill(-t.PID, syscall.SIGKILL)
	if gerr := waitGroupGone(t.PID, goneTimeout); gerr != nil && err == nil {
		err = fmt.Errorf("%s: %w", t.Name, gerr)
	}
	if err != nil {
		return fmt.Errorf("%w\n%s", err, t.logSection())
	}
	return nil
}

// exitedCleanly reports whether a Wait result means a normal shutdown:
// status 0, or death by the SIGTERM that Stop sent (Python's default
// disposition for it).
func exitedCleanly(err error) bool {
	if err == nil {
		return true
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM
}

// waitGroupGone polls /proc until no live process (zombies excepted: they
// hold no port and use no CPU) has process group pgid, or timeout passes.
func waitGroupGone(pgid int, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		left, err := groupMembers(pgid)
		if err != nil || len(left) == 0 {
			return err
		}
		select {
		case <-deadline.C:
			return fmt.Errorf("processes %v of group %d still running %v after SIGKILL", left, pgid, timeout)
		case <-tick.C:
		}
	}
}

func (t *Target) logSection() string {
	return "--- " + t.Name + " log tail ---\n" + t.Log()
}

// spec says how to run one server and how to tell that it is ready.
type spec struct {
	name       string
	path       string   // executable
	args       []string // after path
	dir        string   // working directory; "" = ours
	env        []string // nil = ours
	addr       string
	metricsURL string
	// ready performs one readiness probe; nil means ready.
	ready func(ctx context.Context, c *http.Client) error
}

// startRetrying starts the server that build describes, building it anew
// (with fresh ports) when the previous attempt could not bind its port.
func startRetrying(ctx context.Context, build func() (spec, error)) (*Target, error) {
	var err error
	for range startAttempts {
		var s spec
		if s, err = build(); err != nil {
			return nil, err
		}
		var t *Target
		if t, err = start(ctx, s); !errors.Is(err, errAddrInUse) {
			return t, err
		}
	}
	return nil, err
}

// start runs s and waits until it is ready, the process exits, or ctx (at
// most readyTimeout) ends. On failure the process group is stopped and the
// error carries the log tail.
func start(ctx context.Context, s spec) (*Target, error) {
	// exec.Command, not CommandContext: ctx bounds the start, not the
	// server's life, which Stop ends.
	cmd := exec.Command(s.path, s.args...)
	cmd.Dir = s.dir
	cmd.Env = s.env
	buf := &tailBuffer{max: logTailSize}
	cmd.Stdout, cmd.Stderr = buf, buf // one writer: exec uses one pipe for both
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// Do not outlive a crashed benchmark. The signal fires when the
		// OS thread that forked exits, which the Go runtime does only for
		// threads locked by a goroutine that exits locked
		// (https://github.com/golang/go/issues/27505); nothing here does.
		Pdeathsig: syscall.SIGKILL,
	}
	// Grandchildren inherit the output pipe; if they outlive the leader,
	// Wait still returns this long after it exits.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", s.name, s.path, err)
	}
	t := &Target{
		Name: s.name, Addr: s.addr, MetricsURL: s.metricsURL, PID: cmd.Process.Pid,
		log: buf, grace: stopGrace, done: make(chan struct{}),
	}
	go func() {
		t.waitErr = cmd.Wait()
		close(t.done)
	}()
	if err := t.waitReady(ctx, s.ready); err != nil {
		_ = t.Stop() // its error repeats what err says
		if errors.Is(err, errExited) && strings.Contains(strings.ToLower(buf.String()), "in use") {
			err = fmt.Errorf("%w (%w)", err, errAddrInUse)
		}
		return nil, fmt.Errorf("%s at %s (%s %s): %w\n%s", s.name, s.addr, s.path,
			strings.Join(s.args, " "), err, t.logSection())
	}
	return t, nil
}

// waitReady probes until ready returns nil, the process exits, or ctx (at
// most readyTimeout) ends.
func (t *Target) waitReady(ctx context.Context, ready func(context.Context, *http.Client) error) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	client := newClient()
	tick := time.NewTicker(probeEvery)
	defer tick.Stop()
	began := time.Now()
	for {
		pctx, pcancel := context.WithTimeout(ctx, probeTimeout)
		last := ready(pctx, client)
		pcancel()
		if last == nil {
			return nil
		}
		select {
		case <-t.done:
			return fmt.Errorf("%w: %v", errExited, t.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v (%w); last probe: %v",
				time.Since(began).Round(time.Millisecond), ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// newClient returns an HTTP client for probes and scrapes. It keeps no
// connection alive, so it leaves no idle connection behind (one would
// occupy a gunicorn sync worker, and a goroutine here), and it uses no
// proxy from the environment.
func newClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
}

// probe returns a readiness check that sends method url with body (nil for
// none) and wants status 200.
func probe(method, url, contentType string, body []byte) func(context.Context, *http.Client) error {
	return func(ctx context.Context, c *http.Client) error {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, url, rd)
		if err != nil {
			return err
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s %s: status %d: %s", method, url, resp.StatusCode, bytes.TrimSpace(msg))
		}
		return nil
	}
}

// freeAddrs returns n distinct 127.0.0.1:port addresses that were free a
// moment ago. All n listeners are held open together so the ports differ.
func freeAddrs(n int) ([]string, error) {
	addrs := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

// tailBuffer is an io.Writer that keeps the last max bytes written to it.
// It is safe for concurrent use.
type tailBuffer struct {
	max int

	mu      sync.Mutex // protects buf, dropped
	buf     []byte
	dropped bool // older output was discarded
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if len(p) >= b.max {
		b.buf = append(b.buf[:0], p[len(p)-b.max:]...)
		b.dropped = true
		return n, nil
	}
	if over := len(b.buf) + len(p) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
		b.dropped = true
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

// String returns the kept output, from the first whole line when older
// output was dropped.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf
	if b.dropped {
		if i := bytes.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
			s = s[i+1:]
		}
	}
	return string(s)
}
