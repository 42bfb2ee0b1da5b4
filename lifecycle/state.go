package lifecycle

import "github.com/VictoriaMetrics/metrics"

// The manager's metrics, created and removed with the versions they
// describe (label values come from the repository's directory names):
//
//	coalesce_model_state{model,version,state}             1 for the version's state in Index
//	coalesce_model_loads_total{model,result="success"}    versions loaded and swapped in
//	coalesce_model_load_failures_total{model,reason}      versions that failed: config, load, warm, update
//
// A version has one state series while Index lists it, and none once it
// is unloaded and drained or forgotten. An unloaded version drains in a
// Retirer target after setState moved it to UNAVAILABLE, so its series
// reads UNLOADING until the Retirer calls retired; both ask Retiring
// under smu, so whichever runs last sees the drain over (a Retirer takes
// no lock of the manager's, and calls retired without its own).

// setState records k's state and moves its state gauge.
func (m *Manager) setState(k key, s State, reason string) {
	m.smu.Lock()
	defer m.smu.Unlock()
	st := m.status[k]
	if st == nil {
		st = &Status{Name: k.name, Version: k.version}
		m.status[k] = st
	}
	st.State, st.Reason = s, reason
	m.syncGauge(k)
}

// retired is the Retirer's notice that name at version may have stopped
// retiring: an unloaded version's UNLOADING series goes once it has. A
// new load of the same version, READY while the old one drained, keeps
// its series.
func (m *Manager) retired(name, version string) {
	m.smu.Lock()
	defer m.smu.Unlock()
	m.syncGauge(key{name, version})
}

// syncGauge makes k's state series say what Index says of k, with m.smu
// held: 1 under its state (UNLOADING for an unloaded version the target
// is still retiring), no other series, and none at all when k is
// forgotten or unloaded and drained.
func (m *Manager) syncGauge(k key) {
	if k.version == "" {
		return
	}
	var cur State // "": no series
	if st := m.status[k]; st != nil {
		cur = st.State
		if st.unloaded() {
			cur = ""
			if m.retiring(k) {
				cur = Unloading
			}
		}
	}
	for _, s := range states {
		if s != cur {
			m.set.UnregisterMetric(stateName(k, s))
		}
	}
	if cur != "" {
		m.set.GetOrCreateGauge(stateName(k, cur), nil).Set(1)
	}
}

// retiring reports whether the target still drains a load of k that it
// dropped (false without a Retirer).
func (m *Manager) retiring(k key) bool {
	r, ok := m.target.(Retirer)
	return ok && r.Retiring(k.name, k.version)
}

// unloaded reports whether st is a version the manager retired, as
// opposed to one that failed.
func (st *Status) unloaded() bool { return st.State == Unavailable && st.Reason == "unloaded" }

// setReason sets k's reason without changing its state (a failed reload
// of a version that keeps serving).
func (m *Manager) setReason(k key, reason string) {
	m.smu.Lock()
	defer m.smu.Unlock()
	if st := m.status[k]; st != nil {
		st.Reason = reason
	}
}

// fail marks k unavailable because stage failed with msg.
func (m *Manager) fail(k key, stage, msg string) { m.setState(k, Unavailable, stage+": "+msg) }

// clear forgets k's status (a model-level failure that is fixed).
func (m *Manager) clear(k key) {
	m.smu.Lock()
	defer m.smu.Unlock()
	delete(m.status, k)
}

func (m *Manager) counter(name string) *metrics.Counter { return m.set.GetOrCreateCounter(name) }

func stateName(k key, s State) string {
	return `coalesce_model_state{model="` + k.name + `",version="` + k.version + `",state="` + string(s) + `"}`
}
