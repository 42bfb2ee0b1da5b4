package proxy

import (
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/coalesce-ml/coalesce/config"
)

// A model's canary (config.yaml canary:) takes a share of the requests
// that pin no version: decided per request in routing, before the cache
// and the batcher, by a deterministic draw (a per-model counter, or the
// value of canary.sticky_header so that one client stays on one side).
// The canary's 5xx ratio and its agreement with the primary (from shadow
// copies, when the shadow is the canary) are judged over windows; past a
// threshold its weight drops to 0: a rollback, logged and counted.

// split is one snapshot's canary routing of a model: c's share of the
// unpinned requests go to canary, the rest to primary.
type split struct {
	c               *canary
	primary, canary *entry
}

// canary is the state of one model's canary that outlives snapshots (its
// weight after a rollback, its window): it is kept by Update while the
// model's canary configuration is unchanged.
type canary struct {
	model string
	cfg   config.Canary
	draws atomic.Uint64
	// weight holds the float64 bits of the share sent to the canary; a
	// rollback stores 0.
	weight atomic.Uint64
	now    func() time.Time // time.Now; tests inject their clock

	mu     sync.Mutex // guards the window below
	start  time.Time  // the current window's start
	total  int        // canary requests answered in the window
	failed int        // ... answered 5xx
	rows   int        // shadow rows compared in the window
	agreed int        // ... that agreed with the primary

	rollbacks *metrics.Counter
}

func newCanary(set *metrics.Set, model string, cfg config.Canary) *canary {
	c := &canary{model: model, cfg: cfg, now: time.Now}
	c.weight.Store(math.Float64bits(cfg.Weight))
	set.GetOrCreateGauge(c.series("coalesce_canary_weight"), func() float64 { return math.Float64frombits(c.weight.Load()) })
	c.rollbacks = set.GetOrCreateCounter(c.series("coalesce_canary_rollbacks_total"))
	return c
}

func (c *canary) series(name string) string {
	return name + `{model="` + c.model + `",version="` + c.cfg.Version + `"}`
}

func (c *canary) unregister(set *metrics.Set) {
	set.UnregisterMetric(c.series("coalesce_canary_weight"))
	set.UnregisterMetric(c.series("coalesce_canary_rollbacks_total"))
}

// Weight returns the share of requests the canary receives now.
func (c *canary) Weight() float64 { return math.Float64frombits(c.weight.Load()) }

// pick reports whether the request goes to the canary. key is the sticky
// header's value (nil: split per request).
func (c *canary) pick(key []byte) bool {
	w := c.Weight()
	if w <= 0 {
		return false
	}
	var draw uint64
	if len(key) > 0 {
		draw = fnv1a(key)
	} else {
		draw = c.draws.Add(1)
	}
	return toCanary(draw, w)
}

// fnv1a hashes a sticky key: the same on every replica and restart, so
// that a client keeps its side wherever it lands.
func fnv1a(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return h
}

// toCanary maps draw through SplitMix64 to [0, 1) and compares it with
// weight: sequential draws (a counter) land on the canary with frequency
// weight, deterministically.
func toCanary(draw uint64, weight float64) bool {
	z := draw + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11)/(1<<53) < weight
}

// observe counts one canary request's answer and rolls back when the
// window's error ratio passes canary.rollback.max_error_ratio.
func (c *canary) observe(status int) *rollbackEvent {
	if c.Weight() == 0 || c.cfg.Rollback.MaxErrorRatio <= 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.window()
	c.total++
	if status >= 500 {
		c.failed++
	}
	if r := c.cfg.Rollback; c.total >= max(r.MinRequests, 1) && float64(c.failed)/float64(c.total) > r.MaxErrorRatio {
		return c.rollback("error_ratio", float64(c.failed)/float64(c.total))
	}
	return nil
}

// agree counts shadow rows compared with the primary and rolls back when
// the window's agreement falls below canary.rollback.min_agreement.
func (c *canary) agree(rows, agreed int) *rollbackEvent {
	if c.Weight() == 0 || c.cfg.Rollback.MinAgreement <= 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.window()
	c.rows += rows
	c.agreed += agreed
	if r := c.cfg.Rollback; c.rows >= max(r.MinRequests, 1) && float64(c.agreed)/float64(c.rows) < r.MinAgreement {
		return c.rollback("agreement", float64(c.agreed)/float64(c.rows))
	}
	return nil
}

// window starts a new window when the current one is over; c.mu is held.
func (c *canary) window() {
	now := c.now()
	if c.start.IsZero() || c.cfg.Rollback.Window > 0 && now.Sub(c.start) >= c.cfg.Rollback.Window {
		c.start, c.total, c.failed, c.rows, c.agreed = now, 0, 0, 0, 0
	}
}

// rollbackEvent describes a rollback, logged by the caller after c.mu is
// released.
type rollbackEvent struct {
	reason string
	value  float64
	n      int
}

func (c *canary) rollback(reason string, value float64) *rollbackEvent {
	if !c.weight.CompareAndSwap(c.weight.Load(), 0) {
		return nil
	}
	c.rollbacks.Inc()
	return &rollbackEvent{reason: reason, value: value, n: max(c.total, c.rows)}
}

// logRollback logs ev for model version c (nil: nothing happened).
func (s *Server) logRollback(c *canary, ev *rollbackEvent) {
	if ev == nil {
		return
	}
	s.log.Warn("canary rolled back: its weight is now 0", "model", c.model, "version", c.cfg.Version,
		"reason", ev.reason, "value", strconv.FormatFloat(ev.value, 'f', 4, 64), "window_requests", ev.n,
		"max_error_ratio", c.cfg.Rollback.MaxErrorRatio, "min_agreement", c.cfg.Rollback.MinAgreement)
}

// pickSplit routes an unpinned request for e's model through its canary
// split, if it has one: by the hash of hdr's canary.sticky_header when it
// has one, else by a draw.
func (sn *snapshot) pickSplit(hdr Peeker, e *entry) *entry {
	sp := sn.splits[e.Name]
	if sp == nil {
		return e
	}
	var key []byte
	if h := sp.c.cfg.StickyHeader; h != "" && hdr != nil {
		key = hdr.Peek(h)
	}
	if sp.c.pick(key) {
		return sp.canary
	}
	return sp.primary
}

// observeCanary counts the answer of a request that ran on e when e is its
// model's canary.
func (s *Server) observeCanary(sn *snapshot, e *entry, status int) {
	if e == nil || len(sn.splits) == 0 {
		return
	}
	if sp := sn.splits[e.Name]; sp != nil && sp.canary == e {
		s.logRollback(sp.c, sp.c.observe(status))
	}
}

// buildSplits sets sn.splits from each model's canary configuration (its
// highest version's config.yaml), keeping the canary state of models
// whose configuration did not change and unregistering the rest. s.mu is
// held.
func (s *Server) buildSplits(sn *snapshot) {
	next := map[string]*canary{}
	sn.splits = map[string]*split{}
	for _, name := range sn.reg.Names() {
		vs := sn.reg.Versions(name)
		cfg := vs[len(vs)-1].Config.Canary
		if cfg.Version == "" {
			continue
		}
		var primary, can *entry
		for _, mv := range vs {
			if mv.Version == cfg.Version {
				can = sn.entries[mv]
			} else {
				primary = sn.entries[mv] // the highest other version
			}
		}
		if primary == nil || can == nil {
			continue
		}
		c := s.canaries[name]
		if c == nil || !sameCanary(c.cfg, cfg) {
			if c != nil {
				c.unregister(s.set)
			}
			c = newCanary(s.set, name, cfg)
		}
		next[name] = c
		sn.splits[name] = &split{c: c, primary: primary, canary: can}
	}
	for name, c := range s.canaries {
		if next[name] != c {
			c.unregister(s.set)
		}
	}
	s.canaries = next
}

func sameCanary(a, b config.Canary) bool { return a == b }
