// Package memlimit finds the memory limit a process runs under (its
// cgroup's, or the GOMEMLIMIT it was started with) and derives from it
// Go's soft memory limit and Coalesce's in-flight byte budget.
//
// A Go process does not know its container's memory limit: the runtime's
// soft limit (GOMEMLIMIT, runtime/debug.SetMemoryLimit) is unlimited unless
// set, so the heap grows until the kernel's OOM killer ends the process
// instead of the GC working harder first. SetDefault closes that gap.
package memlimit

import (
	"bytes"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
)

// Cgroup paths, relative to the cgroup file system's mount point, of the
// memory limit: cgroup v2 writes "max" for none; cgroup v1 writes a huge
// number (the page-rounded MaxInt64) for none.
const (
	v2File = "memory.max"
	v1File = "memory/memory.limit_in_bytes"
)

// DefaultRoot is where Linux mounts the cgroup file system. Inside a
// container with its own cgroup namespace (the default for cgroup v2) the
// files there are the container's own.
const DefaultRoot = "/sys/fs/cgroup"

// unlimitedV1 is the smallest value treated as "no limit" in cgroup v1,
// which reports the absence of a limit as MaxInt64 rounded down to a page.
const unlimitedV1 = 1 << 62

// CgroupLimit returns the memory limit in bytes of the cgroup mounted at
// root, trying cgroup v2 and then v1, and false when there is none or it
// cannot be read.
func CgroupLimit(root string) (int64, bool) {
	for _, name := range []string{v2File, v1File} {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return 0, false
		}
		s := string(bytes.TrimSpace(b))
		if s == "max" {
			return 0, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n >= unlimitedV1 {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

// Fraction is the share of the cgroup limit SetDefault gives the Go
// runtime: the rest is headroom for memory the soft limit does not count
// or cannot act on in time (non-Go allocations, a burst between GCs), as
// docs/operations.md §2.4 recommends (GOMEMLIMIT ≈ 90 % of the limit).
const Fraction = 0.9

// Source says where a memory limit came from.
type Source string

// Sources of the limit SetDefault reports.
const (
	FromEnv    Source = "GOMEMLIMIT" // the environment set it; left alone
	FromCgroup Source = "cgroup"     // Fraction of the cgroup limit
	None       Source = "none"       // no limit known
)

// SetDefault sets Go's soft memory limit to Fraction of the cgroup limit
// under root unless GOMEMLIMIT already set one, and returns the limit in
// force (0 when none) and where it came from. It changes process-wide
// state: call it once, from main.
func SetDefault(root string) (int64, Source) {
	if cur := debug.SetMemoryLimit(-1); cur != math.MaxInt64 {
		return cur, FromEnv
	}
	cg, ok := CgroupLimit(root)
	if !ok {
		return 0, None
	}
	limit := int64(float64(cg) * Fraction)
	debug.SetMemoryLimit(limit)
	return limit, FromCgroup
}

// Bounds of InflightBudget.
const (
	budgetFloor    = 16 << 20 // 16 MiB: a handful of large requests
	budgetCeiling  = 4 << 30  // 4 GiB: beyond it CPU, not memory, bounds throughput
	budgetNoLimit  = 1 << 30  // 1 GiB when no memory limit is known
	budgetFraction = 4        // a quarter of the memory limit
)

// InflightBudget derives the default byte budget for request bodies in
// flight from the memory limit (0 = unknown): a quarter of it, because a
// body being decoded costs the body plus its decoded tensors plus the
// response, and the rest of the heap (models, caches, connections) needs
// room too; at least 16 MiB and maxBody (so that the largest request the
// server accepts can always be admitted alone), at most 4 GiB; 1 GiB when
// no limit is known.
func InflightBudget(memLimit, maxBody int64) int64 {
	b := int64(budgetNoLimit)
	if memLimit > 0 {
		b = memLimit / budgetFraction
	}
	b = min(b, budgetCeiling)
	return max(b, budgetFloor, maxBody)
}
