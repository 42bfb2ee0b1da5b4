package cpu

import "sync"

// freeList keeps a kernel's per-call scratch (padded inputs, im2col
// blocks, recurrent state) for reuse. Unlike sync.Pool it is not emptied
// by the garbage collector: a convolution's buffers are megabytes, and
// reallocating them after every collection made the collector run more
// often, which dropped them again. At most Options.Concurrency calls run
// a kernel at once, so the list holds at most that many buffers. The
// zero value is an empty list, safe for concurrent use.
type freeList[T any] struct {
	mu    sync.Mutex
	items []*T // guarded by mu
}

// get returns a kept item, or nil when there is none.
func (l *freeList[T]) get() *T {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.items); n > 0 {
		it := l.items[n-1]
		l.items = l.items[:n-1]
		return it
	}
	return nil
}

// put keeps it for a later get.
func (l *freeList[T]) put(it *T) {
	l.mu.Lock()
	l.items = append(l.items, it)
	l.mu.Unlock()
}
