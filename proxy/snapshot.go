package proxy

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/batcher"
)

// snapshot is the set of model versions the server serves, with their
// batchers and metric handles. It is immutable: a request loads the
// current snapshot once (Server.snap) and uses it throughout, and Update
// builds a new one and swaps it in.
type snapshot struct {
	reg     *backends.Registry
	entries map[*backends.ModelVersion]*entry
	models  map[string]*modelMetrics // request metrics by model name
	def     string                   // the model POST /predict serves
	splits  map[string]*split        // canary routing by model name (canary.go)
	shadows map[string]*shadowRoute  // shadow copies by model name (shadow.go)
}

// entry is one served model version.
type entry struct {
	*backends.ModelVersion
	b       *batcher.Batcher
	met     *batcher.Metrics
	timeout time.Duration // default deadline from arrival
	// gen is the version's load generation: unique among the versions
	// this server has served, so that what is keyed on it (a response
	// cache) never mixes the answers of two loads of one version.
	gen uint64
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("models: the server is closed")
	}
	old := s.snap.Load()
	sn := &snapshot{reg: reg, entries: map[*backends.ModelVersion]*entry{}, models: map[string]*modelMetrics{}}
	for _, name := range names {
		if mm := old.modelMetrics(name); mm != nil {
			sn.models[name] = mm
		} else {
			sn.models[name] = newModelMetrics(s.set, name)
		}
	}
	for _, m := range reg.All() {
		if e := old.entry(m); e != nil {
			sn.entries[m] = e
			continue
		}
		eff := s.cfg.EffectiveFor(&m.Config)
		bc := batcher.Config{Enabled: eff.Enabled, MaxBatchSize: eff.MaxBatchSize, MaxQueueDelay: eff.MaxQueueDelay,
			PreferredBatchSize: eff.PreferredBatchSize, QueueCapacity: eff.QueueCapacity, PriorityLevels: eff.PriorityLevels}
		met := batcher.NewMetrics(s.set, m.Name, m.Version)
		s.gen++
		sn.entries[m] = &entry{ModelVersion: m, b: batcher.New(m.Backend, bc, met, nil), met: met, timeout: eff.DefaultTimeout, gen: s.gen}
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
		_, err := reg.Get(m.Name, m.Version)
		relabelled := err == nil // a new load of the same version keeps its series
		s.retiring.Add(1)
		go s.retire(e, relabelled)
	}
	for name, mm := range old.models {
		if sn.models[name] == nil {
			mm.unregister(s.set)
		}
	}
	return nil
}

func (sn *snapshot) entry(m *backends.ModelVersion) *entry {
	if sn == nil {
		return nil
	}
	return sn.entries[m]
}

func (sn *snapshot) modelMetrics(name string) *modelMetrics {
	if sn == nil {
		return nil
	}
	return sn.models[name]
}

// retire drains e's queue, closes its backend and, unless a new load of
// the same version now uses them, removes its metrics.
func (s *Server) retire(e *entry, relabelled bool) {
	defer s.retiring.Done()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Shutdown.GracePeriod)
	defer cancel()
	if err := e.b.Close(ctx); err != nil {
		s.log.Error("retired model version did not drain within shutdown.grace_period", "model", e.Name, "version", e.Version, "err", err)
	}
	if err := e.Backend.Close(); err != nil {
		s.log.Error("closing a retired model version", "model", e.Name, "version", e.Version, "err", err)
	}
	if !relabelled {
		e.met.Unregister()
	}
	s.log.Info("model version retired", "model", e.Name, "version", e.Version, "generation", e.gen)
}

// Models returns every served model version, by name then ascending
// version.
func (s *Server) Models() []*backends.ModelVersion { return s.snap.Load().reg.All() }

// Registry returns the registry being served (lifecycle.Target).
func (s *Server) Registry() *backends.Registry { return s.snap.Load().reg }
