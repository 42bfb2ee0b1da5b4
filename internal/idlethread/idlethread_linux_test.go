package idlethread

import (
	"errors"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLower: the lowered goroutine's thread is in the idle class, other
// goroutines' threads are not, the runtime has one P more while it lives
// (and Procs does not count it), and the thread ends with its goroutine
// instead of going back to Go's pool of threads.
func TestLower(t *testing.T) {
	// The class and the P do not depend on the CPUs there are; on one
	// CPU Lower refuses (TestLowerOneCPU), so the test counts two.
	defer func(f func() int) { numCPU = f }(numCPU)
	numCPU = func() int { return 2 }
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	procs := runtime.GOMAXPROCS(0)
	tid := 0
	// A goroutine that exits locked to the process's main thread parks
	// it for good (Go cannot end that thread); the next one then runs on
	// another thread, which Go ends.
	for try := 0; try < 2 && (tid == 0 || tid == os.Getpid()); try++ {
		lowered, exit, done := make(chan error), make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			release, err := Lower()
			defer release()
			if err == nil && !Lowered() {
				t.Error("Lowered() = false after Lower; want true")
			}
			tid = unix.Gettid()
			lowered <- err
			<-exit
		}()
		if err := <-lowered; err != nil {
			t.Fatalf("Lower() = %v; want nil on Linux (lowering one's own thread needs no privilege)", err)
		}
		if Lowered() {
			t.Error("Lowered() = true on the test's own thread; want false")
		}
		if got := runtime.GOMAXPROCS(0); got != procs+1 {
			t.Errorf("GOMAXPROCS = %d while a goroutine is lowered; want %d+1", got, procs)
		}
		if got := Procs(); got != procs {
			t.Errorf("Procs() = %d while a goroutine is lowered; want %d", got, procs)
		}
		close(exit)
		<-done
		if got := runtime.GOMAXPROCS(0); got != procs {
			t.Errorf("GOMAXPROCS = %d after the lowered goroutine released its P; want %d", got, procs)
		}
	}
	if tid == os.Getpid() {
		t.Fatal("both lowered goroutines ran on the main thread; want the second elsewhere")
	}
	task := "/proc/self/task/" + strconv.Itoa(tid)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, err := os.Stat(task); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still exists 10s after its lowered goroutine exited; want the thread ended", task)
		}
	}
}

// TestLowerOneCPU: a process that may run on one CPU only is not lowered
// and gets no P.
func TestLowerOneCPU(t *testing.T) {
	defer func(f func() int) { numCPU = f }(numCPU)
	numCPU = func() int { return 1 }
	procs := runtime.GOMAXPROCS(0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // so that Lowered's answer is this goroutine's
		defer runtime.UnlockOSThread()
		release, err := Lower()
		defer release()
		if !errors.Is(err, ErrOneCPU) {
			t.Errorf("Lower() on one CPU = %v; want ErrOneCPU", err)
		}
		if Lowered() {
			t.Error("Lowered() = true after Lower on one CPU; want false")
		}
		if got := runtime.GOMAXPROCS(0); got != procs {
			t.Errorf("GOMAXPROCS = %d after Lower on one CPU; want %d, unchanged", got, procs)
		}
	}()
	<-done
}
