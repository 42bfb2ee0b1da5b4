package proxy

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/batcher"
	"github.com/coalesce-ml/coalesce/cache"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/drift"
)

// snapshot is the set of model versions the server serves, with their
// batchers and metric handles. It is immutable: a request loads the
// current snapshot once (Server.snap) and uses it throughout, and Update
// builds a new one and swaps it in.
type snapshot struct {
	reg     *backends.Registry
	entries map[*backends.ModelVersion]*entry
	def     string                  // the model POST /predict serves
	splits  map[string]*split       // canary routing by model name (canary.go)
	shadows map[string]*shadowRoute // shadow copies by model name (shadow.go)
}

// entry is one served model version.
type entry struct {
	*backends.ModelVersion
	b   *batcher.Batcher
	met *batcher.Metrics
	// req are the version's request series, shared by every load of the
	// version and removed with met when the last one retires.
	req     *modelMetrics
	timeout time.Duration // default deadline from arrival
	// gen is the version's load generation: unique among the versions
	// this server has served, so that what is keyed on it (a response
	// cache) never mixes the answers of two loads of one version.
	gen uint64
	// cache answers repeated inputs and computes identical requests in
	// flight once; nil when the model has neither its cache nor dedup
	// on. Update closes it when it retires the entry, which makes its
	// answers unreachable and frees them at once. cmet are its metrics.
	cache *cache.Cache
	cmet  *cache.Metrics
	// drift samples the version's requests against its model's
	// profile.json; nil without one or with drift off (drift.go).
	drift *drift.Handle
}

// get resolves a model name and version (empty: the highest) to an entry.
func (sn *snapshot) get(name, version string) (*entry, error) {
	m, err := sn.reg.Lookup(name, version)
	if err != nil {
		return nil, err
	}
	return sn.entries[m], nil
}

// successor returns the entry a request decoded for e should move to when
// e's batcher closed under it (e was retired by an Update): the entry now
// serving e's model at the version the request asked for (the highest
// when it asked for none), if its inputs are e's. It returns nil when
// there is none or it is e itself.
func (sn *snapshot) successor(e *entry, versioned bool) *entry {
	version := ""
	if versioned {
		version = e.Version
	}
	n, err := sn.get(e.Name, version)
	if err != nil || n == e || !slices.EqualFunc(n.Meta.Inputs, e.Meta.Inputs, sameSpec) {
		return nil
	}
	return n
}

func sameSpec(a, b backends.TensorSpec) bool {
	return a.Name == b.Name && a.DType == b.DType && a.Missing == b.Missing && slices.Equal(a.Shape, b.Shape)
}

// Update makes reg the set of served model versions. Versions that reg
// shares with the current set (the same *backends.ModelVersion) keep their
// batchers; new ones get a batcher, metrics and a load generation; those
// that reg no longer holds are retired in the background: their queues
// drain, then their backends close and their metrics are removed. A
// request that raced the swap and finds its batcher closed moves to the
// version that replaced it (again if that one was retired too, up to
// maxMoves times). Update also rebuilds the canary splits and shadows. Update is safe for concurrent use; the
// server owns the backends of every registry it was given.
func (s *Server) Update(reg *backends.Registry) error {
	names := reg.Names()
	if len(names) == 0 {
		return fmt.Errorf("models: none to serve")
	}
	budgets, err := s.cacheBudgets(reg)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("models: the server is closed")
	}
	old := s.snap.Load()
	old.closeDrift(reg) // before a new load of a version takes its series
	sn := &snapshot{reg: reg, entries: map[*backends.ModelVersion]*entry{}}
	for _, m := range reg.All() {
		if e := old.entry(m); e != nil {
			sn.entries[m] = e
			if e.cache != nil && budgets[m] > 0 {
				e.cache.SetMaxBytes(budgets[m]) // the shares change as models come and go
			}
			continue
		}
		eff := s.cfg.EffectiveFor(&m.Config)
		bc := batcher.Config{Enabled: eff.Enabled, MaxBatchSize: eff.MaxBatchSize, MaxQueueDelay: eff.MaxQueueDelay,
			PreferredBatchSize: eff.PreferredBatchSize, QueueCapacity: eff.QueueCapacity, PriorityLevels: eff.PriorityLevels}
		met := batcher.NewMetrics(s.set, m.Name, m.Version)
		if s.series == nil {
			s.series = map[string]int{}
		}
		s.series[seriesKey(m)]++
		s.gen++
		e := &entry{ModelVersion: m, b: batcher.New(m.Backend, bc, met, nil), met: met, timeout: eff.DefaultTimeout, gen: s.gen,
			req: newModelMetrics(s.set, m.Name, m.Version)}
		e.cache, e.cmet = s.newCache(m, eff, budgets[m], old)
		e.drift = s.newDrift(m)
		sn.entries[m] = e
	}
	sn.def = s.cfg.Models.Default
	if _, err := reg.Get(sn.def, ""); err != nil {
		if sn.def != "" && (old == nil || old.def != names[0]) {
			s.log.Warn("models.default is not in the model repository; POST /predict serves the first model", "models.default", sn.def, "serving", names[0])
		}
		sn.def = names[0]
	}
	s.buildSplits(sn)
	stopped := s.buildShadows(sn)
	s.snap.Store(sn)
	for _, sh := range stopped {
		sh.stop() // after the swap: no new request finds it
	}
	if old == nil {
		return nil
	}
	for m, e := range old.entries {
		if sn.entries[m] != nil {
			continue
		}
		if e.cache != nil {
			e.cache.Close() // its generation is gone: free its answers now
			if sn.cacheMetrics(m.Name, m.Version) != e.cmet {
				e.cmet.Unregister()
			}
		}
		if s.retired == nil {
			s.retired = map[string]int{}
		}
		s.retired[seriesKey(m)]++
		s.retiring.Add(1)
		go s.retire(e)
	}
	return nil
}

func (sn *snapshot) entry(m *backends.ModelVersion) *entry {
	if sn == nil {
		return nil
	}
	return sn.entries[m]
}

// cacheMetrics returns the cache metrics of the served version of that
// name and version, if it has any.
func (sn *snapshot) cacheMetrics(name, version string) *cache.Metrics {
	if sn == nil {
		return nil
	}
	for m, e := range sn.entries {
		if m.Name == name && m.Version == version && e.cmet != nil {
			return e.cmet
		}
	}
	return nil
}

// newCache returns the cache of a new entry for m (nil when the model
// has neither the cache nor dedup on) and its metrics: those of the load
// of the same version it replaces, if any, so that the series continue.
func (s *Server) newCache(m *backends.ModelVersion, eff config.Effective, budget int64, old *snapshot) (*cache.Cache, *cache.Metrics) {
	if !eff.Cache && !eff.Dedup {
		return nil, nil
	}
	met := old.cacheMetrics(m.Name, m.Version)
	if met == nil {
		met = cache.NewMetrics(s.set, m.Name, m.Version)
	}
	cfg := cache.Config{TTL: eff.CacheTTL, Dedup: eff.Dedup, Private: leaderOwn}
	if eff.Cache {
		cfg.MaxBytes = budget
	}
	return cache.New(cfg, met), met
}

// cacheBudgets gives each model version with its cache on its byte
// budget: its model's cache_bytes, or an equal share of what those leave
// of cache.max_bytes, split evenly among the model's served versions, so
// that all caches together stay within cache.max_bytes.
func (s *Server) cacheBudgets(reg *backends.Registry) (map[*backends.ModelVersion]int64, error) {
	byName := map[string][]*backends.ModelVersion{}
	for _, m := range reg.All() {
		byName[m.Name] = append(byName[m.Name], m)
	}
	own := map[string]int64{}
	var reserved int64
	sharing := 0
	for name, vs := range byName {
		eff := s.cfg.EffectiveFor(&vs[len(vs)-1].Config)
		switch {
		case !eff.Cache:
		case eff.CacheBytes > 0:
			own[name] = int64(eff.CacheBytes)
			reserved += int64(eff.CacheBytes)
		default:
			own[name] = -1
			sharing++
		}
	}
	total := int64(s.cfg.Cache.MaxBytes)
	if reserved > total {
		return nil, fmt.Errorf("models: the models' cache_bytes add up to %d bytes, more than cache.max_bytes (%d)", reserved, total)
	}
	share := int64(0)
	if sharing > 0 {
		share = (total - reserved) / int64(sharing)
	}
	budgets := map[*backends.ModelVersion]int64{}
	for name, b := range own {
		if b < 0 {
			b = share
		}
		for _, m := range byName[name] {
			budgets[m] = b / int64(len(byName[name]))
		}
	}
	return budgets, nil
}

// retire drains e's queue, closes its backend and, unless a new load of
// the same version still uses them, removes its batcher and request
// series.
func (s *Server) retire(e *entry) {
	defer s.retiring.Done()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Shutdown.GracePeriod)
	defer cancel()
	if err := e.b.Close(ctx); err != nil {
		s.log.Error("retired model version did not drain within shutdown.grace_period", "model", e.Name, "version", e.Version, "err", err)
	}
	if err := e.Backend.Close(); err != nil {
		s.log.Error("closing a retired model version", "model", e.Name, "version", e.Version, "err", err)
	}
	s.mu.Lock()
	key := seriesKey(e.ModelVersion)
	var notify func(name, version string)
	if s.retired[key]--; s.retired[key] <= 0 {
		delete(s.retired, key)
		notify = s.onRetired
	}
	if s.series[key]--; s.series[key] <= 0 {
		delete(s.series, key)
		e.met.Unregister()
		e.req.unregister(s.set)
	}
	s.mu.Unlock()
	s.log.Info("model version retired", "model", e.Name, "version", e.Version, "generation", e.gen)
	if notify != nil {
		// Without s.mu: the listener (lifecycle.Manager) takes its own
		// lock and, under it, calls Retiring, which takes s.mu; holding
		// s.mu here would invert that order.
		notify(e.Name, e.Version)
	}
}

// Retiring reports whether a load of model name at version that an
// Update dropped is still draining its queue or closing its backend
// (lifecycle.Retirer: the repository reports it UNLOADING until then).
func (s *Server) Retiring(name, version string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.retired[versionKey(name, version)] > 0
}

// OnRetired makes the server call f(name, version) each time the last
// retiring load of a model version has drained and closed its backend,
// so that Retiring turns false for it (lifecycle.Retirer: the manager
// then removes the version's UNLOADING state series). f runs on the
// retiring goroutine, without the server's lock (it may call Retiring),
// and Close waits for it as for the retirement; by the time it runs a
// later Update may have retired the same version again, so f should ask
// Retiring rather than assume. f replaces any earlier one; nil stops the
// calls.
func (s *Server) OnRetired(f func(name, version string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onRetired = f
}

// Models returns every served model version, by name then ascending
// version.
func (s *Server) Models() []*backends.ModelVersion { return s.snap.Load().reg.All() }

// seriesKey names the {model,version} series of m.
func seriesKey(m *backends.ModelVersion) string { return versionKey(m.Name, m.Version) }

// versionKey is the key of model name at version in Server.series and
// Server.retired.
func versionKey(name, version string) string { return name + "\x00" + version }

// Registry returns the registry being served (lifecycle.Target).
func (s *Server) Registry() *backends.Registry { return s.snap.Load().reg }
