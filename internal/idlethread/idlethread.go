// Package idlethread moves the calling goroutine onto an OS thread of the
// lowest scheduling priority there is, Linux's SCHED_IDLE: the kernel runs
// such a thread only on a CPU that no other thread of the machine wants,
// and takes the CPU back from it as soon as one does.
//
// It is for background work that must never cost the answers a process
// is giving (a shadow model's inference). Go's scheduler cannot rank
// goroutines, but the kernel ranks threads, and a goroutine locked to its
// thread (runtime.LockOSThread) runs only there. Such a goroutine still
// holds one of Go's Ps while it runs, and keeps holding it while the
// kernel leaves its thread waiting for a CPU, so Lower gives the runtime
// one more P (GOMAXPROCS+1) for as long as the goroutine is lowered:
// otherwise a starved low-priority goroutine would take a P, and with it
// a core's worth of Go code, from the work it is meant to yield to. The
// Ps for work at normal priority stay what they were (Procs).
//
// The count of added Ps is the package's state, as GOMAXPROCS is the
// runtime's: both belong to the process. While some are added, the
// runtime no longer follows a change of the container's CPU limit (Go
// stops doing so once GOMAXPROCS is set); the value from before comes
// back when the last lowered goroutine releases its P.
package idlethread

import (
	"errors"
	"runtime"
	"sync"
)

// ErrUnsupported is returned by Lower where the operating system has no
// idle scheduling class (every system but Linux).
var ErrUnsupported = errors.New("idlethread: no idle scheduling class on " + runtime.GOOS)

// ErrOneCPU is returned by Lower when the process may run on one CPU only
// (its affinity mask: a cpuset of one CPU, taskset). The P Lower would
// add could then only share that CPU with the process's other work: the
// runtime runs its goroutines on both Ps' threads, which take turns on
// the one CPU. Measured with the server alone on one CPU and a shadow at
// share 1 (bench/RESULTS.md, "The shadow's thread in the idle class"),
// the added P took the share of answers of another model that the server
// itself took over 100 µs from 0.01 % to 0.26 %, and that model's p99
// 14 % up, more than lowering the shadow saved its own model's.
var ErrOneCPU = errors.New("idlethread: the process runs on one CPU, which an added P would share")

// numCPU is runtime.NumCPU; tests replace it.
var numCPU = runtime.NumCPU

var (
	mu    sync.Mutex // guards added and base, and GOMAXPROCS changes
	added int        // Ps added for lowered goroutines
	base  int        // GOMAXPROCS before the first was added
)

// Lower locks the calling goroutine to its OS thread, adds one P to the
// runtime for it and puts the thread in the idle scheduling class. The
// goroutine must call release, once, as its last act (deferred), and must
// not unlock its thread (runtime.UnlockOSThread): Go ends a thread whose
// goroutine exits locked to it, so the lowered thread is never given to
// other goroutines. When the class cannot be set (ErrUnsupported; a
// seccomp profile refusing sched_setattr), or should not be (ErrOneCPU),
// Lower leaves the goroutine as it was and returns the error with a
// release that does nothing: the caller goes on at normal priority.
func Lower() (release func(), err error) {
	if numCPU() < 2 {
		return func() {}, ErrOneCPU
	}
	runtime.LockOSThread()
	if err := lower(); err != nil {
		runtime.UnlockOSThread()
		return func() {}, err
	}
	// Changed from a thread of normal priority: GOMAXPROCS stops the
	// world, and the thread that asked waits for every P to stop.
	onThread(addP)
	var once sync.Once
	return func() { once.Do(func() { onThread(removeP) }) }, nil
}

// Procs returns the Ps for work at normal priority: GOMAXPROCS without
// the Ps Lower added. Code that sizes its parallelism by the runtime's
// Ps (one worker per P) should ask Procs instead.
func Procs() int {
	mu.Lock()
	defer mu.Unlock()
	return runtime.GOMAXPROCS(0) - added
}

// Lowered reports whether the calling goroutine's thread is in the idle
// scheduling class. It is for tests and diagnostics: the answer holds only
// for a goroutine locked to its thread.
func Lowered() bool { return lowered() }

func addP() {
	mu.Lock()
	defer mu.Unlock()
	if added == 0 {
		base = runtime.GOMAXPROCS(0)
	}
	added++
	runtime.GOMAXPROCS(base + added)
}

func removeP() {
	mu.Lock()
	defer mu.Unlock()
	added--
	runtime.GOMAXPROCS(base + added)
}

// onThread runs f on a new goroutine, which no lowered thread runs, and
// waits for it.
func onThread(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}
