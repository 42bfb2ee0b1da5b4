package lifecycle

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Start watches the repository (models.control: poll) until Close: a
// change anywhere in it, once the repository has been quiet for
// models.settle_delay, runs Sync; Rescan runs it at once. fsnotify does
// not recurse, so the repository, each model directory and each version
// directory are watched, and the set is renewed after every Sync. In
// other modes Start does nothing.
func (m *Manager) Start() error {
	if m.cfg.Models.Control != "poll" {
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	m.watch(w)
	m.done = make(chan struct{})
	go m.run(w)
	return nil
}

// Rescan asks the watcher to run Sync now (SIGHUP); it never blocks, and
// does nothing unless Start started one.
func (m *Manager) Rescan() {
	select {
	case m.rescan <- struct{}{}:
	default: // one is pending already
	}
}

// Close stops the watcher and waits for it to end; a Sync in progress
// finishes first. A second call does nothing.
func (m *Manager) Close() error {
	m.once.Do(func() { close(m.stop) })
	if m.done != nil {
		<-m.done
	}
	return nil
}

func (m *Manager) run(w *fsnotify.Watcher) {
	defer close(m.done)
	defer w.Close()
	var settle <-chan time.Time // nil: nothing pending
	resync := func() {
		settle = nil
		if err := m.Sync(); err != nil {
			m.log.Warn("model repository sync", "err", err)
		}
		m.watch(w)
	}
	for {
		select {
		case <-m.stop:
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if ev.Has(fsnotify.Create) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					_ = w.Add(ev.Name) // a new model or version directory
				}
			}
			// Every event restarts the quiet period: a file being copied
			// writes many times.
			settle = m.after(m.cfg.Models.SettleDelay)
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			m.log.Warn("model repository watcher", "err", err)
		case <-m.rescan:
			resync()
		case <-settle:
			resync()
		}
	}
}

// watch adds the repository and its model and version directories to w.
func (m *Manager) watch(w *fsnotify.Watcher) {
	_ = w.Add(m.dir)
	models, _ := os.ReadDir(m.dir)
	for _, e := range models {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		dir := filepath.Join(m.dir, e.Name())
		_ = w.Add(dir)
		versions, _ := os.ReadDir(dir)
		for _, v := range versions {
			if v.IsDir() {
				_ = w.Add(filepath.Join(dir, v.Name()))
			}
		}
	}
}
