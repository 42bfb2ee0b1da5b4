package targets

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// CPUSeconds returns the CPU time, user plus system in seconds, used so far
// by process pid and all its descendants. Live descendants are found by
// walking the parent links of every process in /proc; descendants that
// have exited count through their parent's cutime and cstime once the
// parent has waited for them (as gunicorn's master does for its workers).
// The CPU of a descendant that exited and was reaped by someone else (an
// orphan adopted by init) is lost.
//
// The figure is for differences: take it before and after a run. The
// CPU of live processes is read from their process CPU clocks
// (clock_gettime on the clock of clock_getcpuclockid(3)), to the
// nanosecond; /proc's utime and stime count in clock ticks (10 ms), which
// made a short, light run (a 400 ms smoke run at 300 req/s uses a few ms
// of CPU) read as 0 CPU. Reaped descendants count at the tick resolution
// of cutime and cstime.
func CPUSeconds(pid int) (float64, error) {
	procs, err := readProcs()
	if err != nil {
		return 0, err
	}
	if _, ok := procs[pid]; !ok {
		return 0, fmt.Errorf("cpu seconds: process %d not found in /proc", pid)
	}
	children := make(map[int][]int, len(procs))
	for p, st := range procs {
		children[st.ppid] = append(children[st.ppid], p)
	}
	hz := float64(clockTicks())
	var secs float64
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		st := procs[p]
		own, err := processCPU(p)
		if err != nil {
			own = float64(st.utime+st.stime) / hz // it exited since readProcs
		}
		secs += own + float64(st.cutime+st.cstime)/hz
		queue = append(queue, children[p]...)
	}
	return secs, nil
}

// processCPU returns the CPU time of every thread, live or exited, of
// process pid, from its CPU-time clock: the clock ID that
// clock_getcpuclockid(3) returns, MAKE_PROCESS_CPUCLOCK(pid,
// CPUCLOCK_SCHED) in the kernel's include/linux/posix-timers.h.
func processCPU(pid int) (float64, error) {
	if pid <= 0 || pid >= 1<<22 { // PID_MAX_LIMIT; larger would overflow the ID
		return 0, fmt.Errorf("pid %d out of range", pid)
	}
	const cpuclockSched = 2
	var ts unix.Timespec
	if err := unix.ClockGettime(int32(^pid<<3|cpuclockSched), &ts); err != nil {
		return 0, err
	}
	return float64(ts.Nano()) / 1e9, nil
}

// procStat holds the fields of /proc/<pid>/stat used here; see proc(5).
type procStat struct {
	state                        byte
	ppid, pgrp                   int
	utime, stime, cutime, cstime uint64 // clock ticks
}

// readProcs reads /proc/<pid>/stat of every process. Processes that exit
// while it reads are skipped.
func readProcs() (map[int]procStat, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("read /proc: %w", err)
	}
	procs := make(map[int]procStat, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone
		}
		st, err := parseStat(data)
		if err != nil {
			return nil, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		procs[pid] = st
	}
	return procs, nil
}

// parseStat parses one /proc/<pid>/stat line. The command name, field 2,
// is in parentheses and may itself contain spaces and parentheses, so the
// other fields are counted from the last ')'.
func parseStat(data []byte) (procStat, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("no ')' in %q", data)
	}
	f := bytes.Fields(data[i+1:])
	// f[0] is field 3 (state); utime..cstime are fields 14..17.
	if len(f) < 15 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("short line %q", data)
	}
	var st procStat
	st.state = f[0][0]
	ints := []struct {
		dst *int
		i   int
	}{{&st.ppid, 1}, {&st.pgrp, 2}}
	for _, x := range ints {
		v, err := strconv.Atoi(string(f[x.i]))
		if err != nil {
			return procStat{}, fmt.Errorf("field %d: %w", x.i+3, err)
		}
		*x.dst = v
	}
	for k, dst := range []*uint64{&st.utime, &st.stime, &st.cutime, &st.cstime} {
		v, err := strconv.ParseUint(string(f[11+k]), 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("field %d: %w", 14+k, err)
		}
		*dst = v
	}
	return st, nil
}

// groupMembers returns the live processes (neither zombie nor dead) of
// process group pgid.
func groupMembers(pgid int) ([]int, error) {
	procs, err := readProcs()
	if err != nil {
		return nil, err
	}
	var pids []int
	for pid, st := range procs {
		if st.pgrp == pgid && st.state != 'Z' && st.state != 'X' {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// clockTicks returns the unit of the /proc CPU times per second
// (sysconf(_SC_CLK_TCK)). The kernel passes it to every process in the
// auxiliary vector as AT_CLKTCK; it is 100 on every common Linux
// architecture, the fallback when the vector cannot be read. Reading the
// vector costs less than one /proc/<pid>/stat, so it is not cached.
func clockTicks() uint64 {
	const atClkTck = 17 // <elf.h>
	if data, err := os.ReadFile("/proc/self/auxv"); err == nil {
		word := strconv.IntSize / 8
		for i := 0; i+2*word <= len(data); i += 2 * word {
			key, val := auxWord(data[i:], word), auxWord(data[i+word:], word)
			if key == atClkTck && val > 0 {
				return val
			}
			if key == 0 { // AT_NULL ends the vector
				break
			}
		}
	}
	return 100
}

func auxWord(b []byte, word int) uint64 {
	if word == 4 {
		return uint64(binary.NativeEndian.Uint32(b))
	}
	return binary.NativeEndian.Uint64(b)
}
