package lifecycle

import "github.com/VictoriaMetrics/metrics"

// The manager's metrics, created and removed with the versions they
// describe (label values come from the repository's directory names):
//
//	coalesce_model_state{model,version,state}             1 for the version's current state
//	coalesce_model_loads_total{model,result="success"}    versions loaded and swapped in
//	coalesce_model_load_failures_total{model,reason}      versions that failed: config, load, warm, update

// setState records k's state and moves its state gauge. An unloaded
// version (Unavailable, "unloaded") keeps its index entry but loses its
// gauge.
func (m *Manager) setState(k key, s State, reason string) {
	m.smu.Lock()
	defer m.smu.Unlock()
	st := m.status[k]
	if st == nil {
		st = &Status{Name: k.name, Version: k.version}
		m.status[k] = st
	}
	st.State, st.Reason = s, reason
	if k.version == "" {
		return
	}
	for _, other := range states {
		if other != s {
			m.set.UnregisterMetric(stateName(k, other))
		}
	}
	if s == Unavailable && reason == "unloaded" {
		m.set.UnregisterMetric(stateName(k, s))
		return
	}
	m.set.GetOrCreateGauge(stateName(k, s), nil).Set(1)
}

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
