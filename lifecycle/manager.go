// Package lifecycle keeps the model versions a server serves in step with
// its model repository. A new or changed version is loaded off the request
// path, checked and warmed, and only then swapped in (Target.Update); the
// versions it replaces drain and close. A version that fails to load or
// warm leaves what was serving in place and is reported, with its reason,
// by Index. Changes come from the repository watcher (models.control:
// poll, with SIGHUP forcing a rescan) or from the repository API
// (explicit: Load, Unload).
package lifecycle

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
)

// Target is what a Manager keeps up to date: proxy.Server.
type Target interface {
	// Registry returns the registry being served.
	Registry() *backends.Registry
	// Update serves reg instead, retiring the versions it drops, and
	// takes ownership of reg's backends.
	Update(reg *backends.Registry) error
}

// Retirer is a Target that reports whether a version it dropped is still
// draining (*proxy.Server): the index and the state gauge report an
// unloaded version UNLOADING until its last request was answered and its
// backend closed.
type Retirer interface {
	// Retiring reports whether a load of name at version that Update
	// dropped is still draining or closing.
	Retiring(name, version string) bool
	// OnRetired makes the Retirer call f, without holding any lock that
	// Retiring takes, whenever Retiring may have turned false for a
	// version. New sets it once.
	OnRetired(f func(name, version string))
}

// State is a model version's state, as the repository API reports it
// (Triton's names).
type State string

// The states of a model version.
const (
	Loading     State = "LOADING"     // being loaded, checked and warmed
	Ready       State = "READY"       // serving
	Unloading   State = "UNLOADING"   // retired: draining its queue (with a Retirer target)
	Unavailable State = "UNAVAILABLE" // not serving: failed (see Reason) or unloaded
)

var states = [...]State{Loading, Ready, Unloading, Unavailable}

// Status is the state of one model version. A Version of "" is the model
// itself (a config.yaml that does not parse).
type Status struct {
	Name, Version string
	State         State
	Reason        string // why it is not READY; empty when it is
}

// ErrControl is returned by Load and Unload when models.control is not
// explicit.
var ErrControl = errors.New("models.control is not explicit")

// ErrNotFound is returned by Load for a model the repository does not hold.
var ErrNotFound = errors.New("no such model in the repository")

// Manager loads and retires model versions. Create it with New; it is safe
// for concurrent use. In poll mode Start watches the repository until
// Close.
type Manager struct {
	cfg     *config.Config
	dir     string
	loaders map[string]backends.Loader
	target  Target
	log     *slog.Logger
	set     *metrics.Set

	mu     sync.Mutex     // serializes changes to the target; guards stamps and failed
	stamps map[key]string // fingerprint of the files of each served version
	failed map[key]string // fingerprint of each version whose last load failed

	smu    sync.Mutex // guards status (read by Index while mu is held for a load); taken before the Retirer's lock
	status map[key]*Status

	rescan chan struct{} // capacity 1: a pending rescan request
	stop   chan struct{} // closed by Close, once
	once   sync.Once     // closes stop
	done   chan struct{} // closed when the watcher goroutine ends; nil if none started
	// after returns a channel that fires after d: time.After, injected by
	// tests so that the settle delay is under their control.
	after func(d time.Duration) <-chan time.Time
}

type key struct{ name, version string }

// New returns a Manager of the repository cfg.Models.Repository, whose
// versions target serves; loaders load model files. State gauges and load
// counters are created on set. The target's current versions are taken as
// loaded from the files on disk now.
func New(cfg *config.Config, target Target, loaders map[string]backends.Loader, set *metrics.Set, log *slog.Logger) *Manager {
	m := &Manager{cfg: cfg, dir: cfg.Models.Repository, loaders: loaders, target: target, log: log, set: set,
		stamps: map[key]string{}, failed: map[key]string{}, status: map[key]*Status{},
		rescan: make(chan struct{}, 1), stop: make(chan struct{}), after: time.After}
	for _, mv := range target.Registry().All() {
		k := key{mv.Name, mv.Version}
		m.stamps[k] = stamp(filepath.Join(m.dir, mv.Name), mv.Version)
		m.setState(k, Ready, "")
	}
	if r, ok := target.(Retirer); ok {
		r.OnRetired(m.retired)
	}
	return m
}

// Index returns the state of every model version the manager knows of:
// served, loading, failed or unloaded, by name then version.
func (m *Manager) Index() []Status {
	m.smu.Lock()
	out := make([]Status, 0, len(m.status))
	for _, st := range m.status {
		out = append(out, *st)
	}
	m.smu.Unlock()
	for i, st := range out {
		if st.unloaded() && m.retiring(key{st.Name, st.Version}) {
			out[i].State = Unloading
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return versionLess(out[i].Version, out[j].Version)
	})
	return out
}

// Sync brings every model in line with the repository: versions that the
// version policy selects and that are new or changed on disk are loaded,
// checked and warmed; those that are no longer selected, or whose model
// is gone, are retired. It returns the failures, joined.
func (m *Manager) Sync() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := map[string]bool{}
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return fmt.Errorf("model repository: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			names[e.Name()] = true
		}
	}
	for _, name := range m.target.Registry().Names() {
		names[name] = true
	}
	return m.apply(slices.Sorted(maps.Keys(names)), false)
}

// Load loads model name from the repository as Sync would (explicit mode):
// its selected versions that are not served or changed on disk are loaded,
// the others retired. It returns the failures, joined; a model the
// repository does not hold is ErrNotFound.
func (m *Manager) Load(name string) error {
	if m.cfg.Models.Control != "explicit" {
		return fmt.Errorf("load %s: %w", name, ErrControl)
	}
	if strings.ContainsAny(name, `/\`) || name == "" || strings.HasPrefix(name, ".") {
		return fmt.Errorf("load %q: %w", name, ErrNotFound)
	}
	if _, err := os.Stat(filepath.Join(m.dir, name)); err != nil {
		return fmt.Errorf("load %q: %w", name, ErrNotFound)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.apply([]string{name}, false)
}

// Unload stops serving every version of model name (explicit mode). The
// versions leave the snapshot at once and drain in the background
// (proxy.Server.Update), so the index shows them UNAVAILABLE, "unloaded"
// when Unload returns.
func (m *Manager) Unload(name string) error {
	if m.cfg.Models.Control != "explicit" {
		return fmt.Errorf("unload %s: %w", name, ErrControl)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.target.Registry().Versions(name) == nil {
		return fmt.Errorf("unload %q: model is not loaded", name)
	}
	return m.apply([]string{name}, true)
}

// apply computes and swaps in the changes for models names (all versions
// removed when unload), with m.mu held.
func (m *Manager) apply(names []string, unload bool) error {
	defer m.forgetGone(names) // after the states below are final
	cur := m.target.Registry()
	next := cur
	var added []loaded
	var removed []key
	var errs []error
	for _, name := range names {
		add, rm, err := m.plan(cur, name, unload)
		if err != nil {
			errs = append(errs, err)
		}
		for _, l := range add {
			next = next.With(l.mv)
		}
		for _, k := range rm {
			next = next.Without(k.name, k.version)
		}
		added = append(added, add...)
		removed = append(removed, rm...)
	}
	if len(added) == 0 && len(removed) == 0 {
		return errors.Join(errs...)
	}
	if err := m.target.Update(next); err != nil {
		for _, l := range added {
			l.mv.Backend.Close()
			m.fail(key{l.mv.Name, l.mv.Version}, "update", err.Error())
		}
		for _, k := range removed {
			m.setState(k, Ready, "")
		}
		return errors.Join(append(errs, err)...)
	}
	for _, l := range added {
		mv := l.mv
		k := key{mv.Name, mv.Version}
		m.stamps[k] = l.stamp
		delete(m.failed, k)
		m.setState(k, Ready, "")
		m.counter(`coalesce_model_loads_total{model="` + mv.Name + `",result="success"}`).Inc()
		m.log.Info("model version loaded", "model", mv.Name, "version", mv.Version)
	}
	for _, k := range removed {
		delete(m.stamps, k)
		m.setState(k, Unavailable, "unloaded")
		m.log.Info("model version unloaded", "model", k.name, "version", k.version)
	}
	return errors.Join(errs...)
}

// plan loads, checks and warms what model name needs (with m.mu held) and
// returns the versions to add and to remove.
func (m *Manager) plan(cur *backends.Registry, name string, unload bool) (add []loaded, rm []key, err error) {
	served := map[string]bool{}
	for _, mv := range cur.Versions(name) {
		served[mv.Version] = true
	}
	dir := filepath.Join(m.dir, name)
	var want []string
	var cfg config.ModelConfig
	if !unload {
		if _, statErr := os.Stat(dir); statErr == nil {
			var onDisk []string
			cfg, onDisk, err = backends.ScanModel(dir)
			if err != nil {
				// Keep serving what serves; say why nothing changes.
				m.fail(key{name, ""}, "config", err.Error())
				return nil, nil, fmt.Errorf("model %s: %w", name, err)
			}
			m.clear(key{name, ""})
			want = backends.SelectVersions(cfg.VersionPolicy, onDisk)
		}
	}
	var errs []error
	missing := false // a wanted version is not served and did not load
	for _, v := range want {
		k := key{name, v}
		st := stamp(dir, v)
		if served[v] && m.stamps[k] == st {
			continue
		}
		if f, ok := m.failed[k]; ok && f == st {
			missing = missing || !served[v]
			continue // the same files failed before; wait for a change
		}
		m.setState(k, Loading, "")
		mv, reason, err := m.loadAndWarm(dir, name, v, cfg)
		if err != nil {
			m.failed[k] = st
			if served[v] {
				// The old load keeps serving; report the failed reload.
				m.setState(k, Ready, "")
				m.setReason(k, "reload failed: "+err.Error())
			} else {
				m.fail(k, reason, err.Error())
			}
			m.counter(`coalesce_model_load_failures_total{model="` + name + `",reason="` + reason + `"}`).Inc()
			m.log.Error("model version failed to load; what served keeps serving", "model", name, "version", v, "stage", reason, "err", err)
			errs = append(errs, err)
			missing = missing || !served[v]
			continue
		}
		add = append(add, loaded{mv, st})
	}
	// Availability first (TF Serving's availability-preserving policy):
	// while a wanted version is missing, the versions it would replace
	// keep serving.
	for v := range served {
		if !slices.Contains(want, v) && !missing {
			k := key{name, v}
			m.setState(k, Unloading, "")
			rm = append(rm, k)
		}
	}
	return add, rm, errors.Join(errs...)
}

// loadAndWarm loads one version and warms it; on failure it returns the
// stage that failed (load, warm) and closes what it loaded.
func (m *Manager) loadAndWarm(dir, name, version string, cfg config.ModelConfig) (*backends.ModelVersion, string, error) {
	mv, err := backends.LoadVersion(dir, name, version, cfg, m.loaders)
	if err != nil {
		return nil, "load", err
	}
	eff := m.cfg.EffectiveFor(&mv.Config)
	if err := Warm(mv, BatchSizes(eff, mv.Meta), readGolden(dir), m.cfg.HTTP.RequestTimeout*4); err != nil {
		mv.Backend.Close()
		return nil, "warm", fmt.Errorf("model %s version %s: %w", name, version, err)
	}
	return mv, "", nil
}

// forgetGone drops the index entries and state series of versions of
// models names that are neither served nor on disk any more, so that a
// server polling a repository whose versions come and go keeps a bounded
// index and set of series.
func (m *Manager) forgetGone(names []string) {
	m.smu.Lock()
	defer m.smu.Unlock()
	for k, st := range m.status {
		if st.State != Unavailable || k.version == "" || !slices.Contains(names, k.name) {
			continue
		}
		if _, err := os.Stat(filepath.Join(m.dir, k.name, k.version)); errors.Is(err, os.ErrNotExist) {
			delete(m.status, k)
			delete(m.failed, k)
			m.syncGauge(k) // its series go with its entry
		}
	}
}

// loaded is a version loaded and warmed, with the fingerprint of its files.
type loaded struct {
	mv    *backends.ModelVersion
	stamp string
}

// stamp fingerprints version v of the model in dir: every file of the
// version directory (name, size, modification time) and config.yaml, so
// that a change to either reloads the version.
func stamp(dir, v string) string {
	var b strings.Builder
	add := func(path string) {
		if fi, err := os.Stat(path); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", filepath.Base(path), fi.Size(), fi.ModTime().UnixNano())
		}
	}
	add(filepath.Join(dir, "config.yaml"))
	entries, _ := os.ReadDir(filepath.Join(dir, v))
	for _, e := range entries {
		add(filepath.Join(dir, v, e.Name()))
	}
	return b.String()
}

func versionLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}
