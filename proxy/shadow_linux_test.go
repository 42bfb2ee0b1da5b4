package proxy

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/internal/fakemodel"
	"github.com/coalesce-ml/coalesce/internal/idlethread"
	"github.com/coalesce-ml/coalesce/tensor"
)

// TestShadowRunsLowered: the shadow's inference runs on its worker's
// thread, in the idle scheduling class (the batcher's fast path runs a
// lone batch on the submitting goroutine), so that the kernel gives the
// answers' threads the CPU first. In a process on one CPU none does
// (idlethread.ErrOneCPU).
func TestShadowRunsLowered(t *testing.T) {
	s, c, set := testServerWith(t, patientConfig())
	b := fakemodel.Models["double"]()
	run := b.Run
	var runs, lowered atomic.Int32
	b.Run = func(ctx context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
		runs.Add(1)
		if idlethread.Lowered() {
			lowered.Add(1)
		}
		return run(ctx, in)
	}
	must(t, s.Update(withVersion2(t, b, func(m *config.ModelConfig) {
		m.Shadow = config.Shadow{Version: "2", Share: 1, Queue: 32, Interval: time.Millisecond}
	})))
	sendDouble(t, c, 4)
	waitShadowRows(t, set, "4")
	n, l := runs.Load(), lowered.Load()
	switch {
	case n == 0:
		t.Fatal("the shadow never ran")
	case runtime.NumCPU() < 2 && l != 0:
		// One CPU: the worker stays at normal priority (idlethread.ErrOneCPU).
		t.Errorf("%d of the shadow's %d runs on a thread in the idle class on one CPU; want none", l, n)
	case runtime.NumCPU() >= 2 && l != n:
		t.Errorf("%d of the shadow's %d runs on a thread in the idle class; want all", l, n)
	}
}
