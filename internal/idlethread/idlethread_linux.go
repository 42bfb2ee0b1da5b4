package idlethread

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// lower sets the calling thread's policy (sched_setattr on thread 0: the
// caller) to SCHED_IDLE. Lowering a thread's own priority needs no
// privilege.
func lower() error {
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}
	if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
		return fmt.Errorf("idlethread: sched_setattr(SCHED_IDLE): %w", err)
	}
	return nil
}

func lowered() bool {
	attr, err := unix.SchedGetAttr(0, 0)
	return err == nil && attr.Policy == unix.SCHED_IDLE
}
