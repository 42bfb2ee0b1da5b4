package cache

import (
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
)

// Metrics are the cache series of one model version, labelled
// {model, version}: coalesce_cache_hits_total, coalesce_cache_misses_total
// (requests that ran the model), coalesce_cache_shared_total (requests
// answered by an identical request in flight), coalesce_cache_evictions_total
// (entries dropped for room or expired; not those dropped with a retired
// version), coalesce_cache_bytes and coalesce_cache_entries (in use).
//
// NewMetrics creates them and Unregister removes them. Several Caches may
// record on one Metrics (two loads of one version while the old drains):
// the gauges show their sum. A nil *Metrics records nothing.
type Metrics struct {
	set       *metrics.Set
	names     []string
	hits      *metrics.Counter
	misses    *metrics.Counter
	shared    *metrics.Counter
	evictions *metrics.Counter
	bytes     atomic.Int64 // what the gauges report
	entries   atomic.Int64
}

// NewMetrics creates the cache series of model version on set. Call it
// once per version and keep the result: the gauges read this *Metrics.
func NewMetrics(set *metrics.Set, model, version string) *Metrics {
	l := `{model="` + model + `",version="` + version + `"}`
	m := &Metrics{set: set}
	counter := func(name string) *metrics.Counter {
		m.names = append(m.names, name)
		return set.GetOrCreateCounter(name)
	}
	m.hits = counter("coalesce_cache_hits_total" + l)
	m.misses = counter("coalesce_cache_misses_total" + l)
	m.shared = counter("coalesce_cache_shared_total" + l)
	m.evictions = counter("coalesce_cache_evictions_total" + l)
	for _, g := range []struct {
		name string
		v    *atomic.Int64
	}{{"coalesce_cache_bytes" + l, &m.bytes}, {"coalesce_cache_entries" + l, &m.entries}} {
		m.names = append(m.names, g.name)
		v := g.v
		set.GetOrCreateGauge(g.name, func() float64 { return float64(v.Load()) })
	}
	return m
}

// Unregister removes the series from their set. Call it once no Cache
// records on m any more.
func (m *Metrics) Unregister() {
	if m == nil {
		return
	}
	for _, name := range m.names {
		m.set.UnregisterMetric(name)
	}
}

func (m *Metrics) hit() {
	if m != nil {
		m.hits.Inc()
	}
}

func (m *Metrics) miss() {
	if m != nil {
		m.misses.Inc()
	}
}

func (m *Metrics) share() {
	if m != nil {
		m.shared.Inc()
	}
}

// stored records a change of entries and bytes, and evicted evictions.
func (m *Metrics) stored(entries, bytes int64, evicted int) {
	if m == nil {
		return
	}
	m.entries.Add(entries)
	m.bytes.Add(bytes)
	if evicted > 0 {
		m.evictions.Add(evicted)
	}
}
