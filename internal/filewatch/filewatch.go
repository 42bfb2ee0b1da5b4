// Package filewatch calls a function when files change, by polling their
// size, modification time and inode. Polling, unlike inotify, follows the
// symlink swaps with which Kubernetes updates mounted Secrets and
// ConfigMaps, and survives editors that rename over a file.
package filewatch

import (
	"os"
	"sync"
	"syscall"
	"time"
)

// Watcher polls a set of files. Create it with New; Close stops it.
type Watcher struct {
	paths    []string
	onChange func()
	stop     chan struct{} // closed by Close; capacity 0
	done     chan struct{} // closed when the goroutine has returned
	once     sync.Once
}

// stamp is what a poll compares; a change of any field is a change.
type stamp struct {
	size  int64
	mtime time.Time
	ino   uint64
	err   bool // the file could not be read
}

func stat(p string) stamp {
	st, err := os.Stat(p) // follows symlinks: a swapped target is a change
	if err != nil {
		return stamp{err: true}
	}
	s := stamp{size: st.Size(), mtime: st.ModTime()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		s.ino = sys.Ino
	}
	return s
}

// New starts polling paths every interval (which must be positive) and
// calls onChange, from the Watcher's goroutine, once per poll in which any
// of them changed. onChange must not call Close.
func New(interval time.Duration, onChange func(), paths ...string) *Watcher {
	if interval <= 0 {
		panic("BUG: filewatch: interval must be positive")
	}
	w := &Watcher{paths: paths, onChange: onChange, stop: make(chan struct{}), done: make(chan struct{})}
	last := make([]stamp, len(paths))
	for i, p := range paths {
		last[i] = stat(p)
	}
	go func() {
		defer close(w.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
			changed := false
			for i, p := range w.paths {
				if s := stat(p); s != last[i] {
					last[i], changed = s, true
				}
			}
			if changed {
				w.onChange()
			}
		}
	}()
	return w
}

// Close stops polling and waits for a running onChange to return. A
// second call does nothing; a nil Watcher may be closed.
func (w *Watcher) Close() {
	if w == nil {
		return
	}
	w.once.Do(func() { close(w.stop) })
	<-w.done
}
