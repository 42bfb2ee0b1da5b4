package targets

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseStat(t *testing.T) {
	// The command name may hold spaces and parentheses.
	line := "4242 (we(ird) n) ame) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 75 3 2 20 0 1 0 12345 1000 10 18446744073709551615\n"
	st, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := procStat{state: 'S', ppid: 17, pgrp: 4242, utime: 250, stime: 75, cutime: 3, cstime: 2}
	if st != want {
		t.Errorf("parseStat = %+v; want %+v", st, want)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 1 2", "1 (x) S a 1 0 0 0 0 0 0 0 0 1 1 0 0"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) = nil error; want one", bad)
		}
	}
}

func TestClockTicks(t *testing.T) {
	// Linux fixes USER_HZ at 100 on the architectures Go supports.
	if hz := clockTicks(); hz != 100 {
		t.Errorf("clockTicks() = %d; want 100", hz)
	}
}

// cpuUntil polls CPUSeconds(pid) (bounded) until it exceeds above.
func cpuUntil(t *testing.T, pid int, above float64, burn func()) float64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if burn != nil {
			burn()
		} else {
			time.Sleep(20 * time.Millisecond)
		}
		got, err := CPUSeconds(pid)
		if err != nil {
			t.Fatal(err)
		}
		if got > above {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPUSeconds(%d) = %v after 20s; want > %v", pid, got, above)
		}
	}
}

func TestCPUSecondsSelf(t *testing.T) {
	self := os.Getpid()
	before, err := CPUSeconds(self)
	if err != nil {
		t.Fatal(err)
	}
	if before <= 0 {
		t.Errorf("CPUSeconds(self) = %v; want > 0", before)
	}
	var sink uint64
	burn := func() {
		for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
			for i := range 10000 {
				sink += uint64(i) * sink
			}
		}
	}
	cpuUntil(t, self, before, burn)
	_ = sink
}

// TestCPUSecondsResolution burns about 3 ms of CPU, less than the 10 ms
// clock tick of /proc's utime and stime, and checks that CPUSeconds sees
// it as this process's own CPU clock does: with tick resolution it reads
// 0 or 10 ms, which is how a short smoke run came out as CPU 0.
func TestCPUSecondsResolution(t *testing.T) {
	self := os.Getpid()
	own := func() float64 {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
			t.Fatal(err)
		}
		return float64(ts.Nano()) / 1e9
	}
	start := own()
	before, err := CPUSeconds(self)
	if err != nil {
		t.Fatal(err)
	}
	burn0 := own()
	var sink uint64
	for own()-burn0 < 0.003 {
		for i := range 1000 {
			sink += uint64(i) * sink
		}
	}
	burnt := own() - burn0
	after, err := CPUSeconds(self)
	if err != nil {
		t.Fatal(err)
	}
	total := own() - start
	// CPUSeconds reads the clock last, so what it sees lies between the
	// burn alone and everything from start, its own /proc reading included.
	if got := after - before; got < burnt || got > total {
		t.Errorf("CPUSeconds(self) grew by %.6fs; want between the %.6fs burnt and the %.6fs of the whole measurement", got, burnt, total)
	}
	_ = sink
}

func TestCPUSecondsDescendants(t *testing.T) {
	self := os.Getpid()
	selfBefore, err := CPUSeconds(self)
	if err != nil {
		t.Fatal(err)
	}
	// A shell that waits while its child spins: the parent's own CPU is
	// ~0, so a positive figure must come from the descendant.
	cmd := exec.Command("/bin/sh", "-c", `sh -c 'while :; do :; done' & wait`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = cmd.Wait()
		}
	}
	defer stop()
	// The shell's own start-up takes a few ms of CPU, which the process
	// clock sees: wait for far more than that.
	tree := cpuUntil(t, pid, 0.05, nil)
	if parent, err := processCPU(pid); err != nil || parent >= tree/2 {
		t.Errorf("shell's own CPU %v (%v) is not well below its tree's %v; the child was not counted", parent, err, tree)
	}
	stop()
	// The spinning grandchild was killed, not waited for by the shell, so
	// its CPU is lost to us (the documented limit); ours must still grow.
	selfAfter, err := CPUSeconds(self)
	if err != nil {
		t.Fatal(err)
	}
	if selfAfter < selfBefore {
		t.Errorf("CPUSeconds(self) went from %v to %v", selfBefore, selfAfter)
	}
	if _, err := CPUSeconds(1 << 30); err == nil {
		t.Error("CPUSeconds of a missing pid = nil error; want one")
	}
}

func TestCPUSecondsReapedChild(t *testing.T) {
	// A child we reap moves its CPU into our cutime: the figure for us
	// covers it after it is gone, to the clock tick (cutime truncates the
	// child's CPU, which CPUSeconds read to the nanosecond while it ran).
	self := os.Getpid()
	before, err := CPUSeconds(self)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.NewTimer(300 * time.Millisecond)
	<-timer.C
	child := cpuUntil(t, cmd.Process.Pid, 0.05, nil)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	after, err := CPUSeconds(self)
	if err != nil {
		t.Fatal(err)
	}
	if tick := 1 / float64(clockTicks()); after-before < child-tick {
		t.Errorf("CPUSeconds(self) grew by %v; want at least the child's %v, less one clock tick (%v)", after-before, child, tick)
	}
}
