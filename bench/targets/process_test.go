package targets

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestTailBuffer(t *testing.T) {
	f := func(max int, writes []string, want string) {
		t.Helper()
		b := &tailBuffer{max: max}
		for _, w := range writes {
			if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
				t.Fatalf("Write(%q) = %d, %v; want %d, nil", w, n, err, len(w))
			}
		}
		if got := b.String(); got != want {
			t.Errorf("writes %q max %d: String() = %q; want %q", writes, max, got, want)
		}
	}
	f(16, nil, "")
	f(16, []string{"one\n", "two\n"}, "one\ntwo\n")
	f(8, []string{"one\n", "two\n", "three\n"}, "three\n")       // kept "o\nthree\n", cut at the line
	f(8, []string{"0123456789abcdef\nxy"}, "xy")                 // one write larger than max
	f(8, []string{"abcdefghijkl"}, "efghijkl")                   // no newline: keep all
	f(10, []string{"first\n", "second\n", "3\n"}, "second\n3\n") // drop exactly a line
	f(10, []string{"a\n", "b\n", "c\n", "d\n", "e\n"}, "a\nb\nc\nd\ne\n")
}

func alwaysReady(context.Context, *http.Client) error { return nil }
func neverReady(context.Context, *http.Client) error  { return errors.New("no answer") }

func shSpec(script string, ready func(context.Context, *http.Client) error) spec {
	return spec{name: "sh", path: "/bin/sh", args: []string{"-c", script}, addr: "127.0.0.1:1", ready: ready}
}

func TestStartExitsEarly(t *testing.T) {
	_, err := start(testCtx(t, 30*time.Second), shSpec("echo boom >&2; exit 3", neverReady))
	if err == nil {
		t.Fatal("start of a process that exits = nil error")
	}
	for _, want := range []string{"exited before it was ready", "exit status 3", "boom", "log tail"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if errors.Is(err, errAddrInUse) {
		t.Errorf("error %q is errAddrInUse; want not", err)
	}
}

func TestStartAddrInUse(t *testing.T) {
	_, err := start(testCtx(t, 30*time.Second), shSpec("echo 'bind: address already in use' >&2; exit 1", neverReady))
	if !errors.Is(err, errAddrInUse) {
		t.Errorf("start error %v; want errAddrInUse", err)
	}
	var builds int
	_, err = startRetrying(testCtx(t, 30*time.Second), func() (spec, error) {
		builds++
		return shSpec("echo 'Address already in use' >&2; exit 1", neverReady), nil
	})
	if err == nil || builds != startAttempts {
		t.Errorf("startRetrying: %d builds, error %v; want %d and an error", builds, err, startAttempts)
	}
}

func TestStartNeverReady(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	_, err := start(ctx, shSpec("echo $$ >"+pidFile+"; exec sleep 60", func(context.Context, *http.Client) error {
		return errors.New("not yet")
	}))
	if err == nil || !strings.Contains(err.Error(), "not ready after") || !strings.Contains(err.Error(), "not yet") {
		t.Fatalf("start error %v; want not ready after ... not yet", err)
	}
	b, rerr := os.ReadFile(pidFile)
	if rerr != nil {
		t.Fatal(rerr)
	}
	pid, rerr := strconv.Atoi(strings.TrimSpace(string(b)))
	if rerr != nil {
		t.Fatal(rerr)
	}
	assertGroupGone(t, pid)
}

func TestStopKillsGroup(t *testing.T) {
	checkGoroutines(t, func() {
		// Two grandchildren in the group; SIGTERM ends all three.
		tg, err := start(testCtx(t, 30*time.Second), shSpec("sleep 60 & sleep 60 & wait", alwaysReady))
		if err != nil {
			t.Fatal(err)
		}
		waitMembers(t, tg.PID, 3)
		if err := tg.Stop(); err != nil {
			t.Errorf("Stop() = %v; want nil", err)
		}
		assertGroupGone(t, tg.PID)
		if err := tg.Stop(); err != nil {
			t.Errorf("second Stop() = %v; want nil", err)
		}
	})
}

func TestStopKillsAfterGrace(t *testing.T) {
	// The shell and its sleeps (which inherit the ignored disposition)
	// ignore SIGTERM; only SIGKILL ends them.
	tg, err := start(testCtx(t, 30*time.Second), shSpec(`trap "" TERM; sleep 60 & while :; do sleep 1; done`, alwaysReady))
	if err != nil {
		t.Fatal(err)
	}
	tg.grace = 200 * time.Millisecond
	waitMembers(t, tg.PID, 2)
	err = tg.Stop()
	if err == nil || !strings.Contains(err.Error(), "did not exit within") {
		t.Errorf("Stop() = %v; want did not exit within", err)
	}
	assertGroupGone(t, tg.PID)
	if again := tg.Stop(); again != err {
		t.Errorf("second Stop() = %v; want the first's %v", again, err)
	}
}

func TestStopAfterDeath(t *testing.T) {
	tg, err := start(testCtx(t, 30*time.Second), shSpec("echo dying; exit 4", alwaysReady))
	if err != nil {
		t.Fatal(err)
	}
	<-tg.done
	err = tg.Stop()
	if err == nil || !strings.Contains(err.Error(), "had exited before Stop") || !strings.Contains(err.Error(), "dying") {
		t.Errorf("Stop() = %v; want had exited before Stop, with the log", err)
	}
}

// waitMembers waits (bounded) until group pgid has at least n live
// processes, so that a test stops a fully started tree.
func waitMembers(t *testing.T, pgid, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := groupMembers(pgid)
		if err != nil {
			t.Fatal(err)
		}
		if len(m) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %d has %d processes; want %d", pgid, len(m), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
