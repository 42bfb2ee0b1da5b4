package upstream

import (
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// Failure kinds, the kind label of coalesce_upstream_failures_total.
const (
	kindRefused   = "refused"   // the connection could not be made
	kindReset     = "reset"     // closed before any response byte
	kindTimeout   = "timeout"   // no complete answer within the per-try timeout or the deadline
	kind5xx       = "5xx"       // the upstream answered 5xx (or 429)
	kind4xx       = "4xx"       // the upstream answered 4xx: an input (400, 413, 422) or our configuration (404, ...)
	kindMalformed = "malformed" // the answer is not a valid response of the protocol
	kindSaturated = "saturated" // no free pooled connection (local saturation, not the upstream's fault)
)

var failureKinds = []string{kindRefused, kindReset, kindTimeout, kind5xx, kind4xx, kindMalformed, kindSaturated}

// latencyBuckets are 100µs to ~13s in factors of 2.
var latencyBuckets = metrics.ExponentialBuckets(0.0001, 2, 18)

// batchBuckets are powers of two from 1 to 1024 rows.
var batchBuckets = metrics.ExponentialBuckets(1, 2, 11)

// series counts the users of each series on a metrics set, so that a new
// load of a version (which creates the same series before the old load
// is closed) keeps them: a series is unregistered when its last user
// closes. It is shared by every backend one Loader creates. Safe for
// concurrent use.
type series struct {
	set  *metrics.Set   // never nil
	mu   sync.Mutex     // guards refs
	refs map[string]int // users per series name
}

func (s *series) ref(name string) {
	s.mu.Lock()
	if s.refs == nil {
		s.refs = map[string]int{}
	}
	s.refs[name]++
	s.mu.Unlock()
}

func (s *series) counter(name string) *metrics.Counter {
	s.ref(name)
	return s.set.GetOrCreateCounter(name)
}

func (s *series) gauge(name string) *metrics.Gauge {
	s.ref(name)
	return s.set.GetOrCreateGauge(name, nil)
}

func (s *series) histogram(name string, buckets []float64) *metrics.PrometheusHistogram {
	s.ref(name)
	return s.set.GetOrCreatePrometheusHistogramExt(name, buckets)
}

// release drops one use of each name and unregisters those left unused.
func (s *series) release(names []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		if s.refs[n]--; s.refs[n] <= 0 {
			delete(s.refs, n)
			s.set.UnregisterMetric(n)
		}
	}
}

// modelMetrics are the series of one upstream model version.
type modelMetrics struct {
	names     []string // every series, for release
	batchRows *metrics.PrometheusHistogram
	retries   *metrics.Counter // retries sent
	noBudget  *metrics.Counter // retries the budget refused
	rejected  *metrics.Counter // requests refused at once: no replica callable
	ready     *metrics.Gauge
}

// endpointMetrics are the series of one replica of a model version.
type endpointMetrics struct {
	requests  *metrics.Counter
	failures  map[string]*metrics.Counter // by kind
	latency   *metrics.PrometheusHistogram
	breaker   *metrics.Gauge // 0 closed, 1 half-open, 2 open
	ejections *metrics.Counter
	ejected   *metrics.Gauge
	connects  *metrics.Counter // TCP connection attempts
	healthy   *metrics.Gauge   // the last probe's answer
}

// newMetrics creates (or finds) the series of model version with the
// given endpoints. Names, all labelled {model, version}:
// coalesce_upstream_batch_rows (rows per upstream call),
// coalesce_upstream_retries_total, coalesce_upstream_retries_refused_total
// (over budget), coalesce_upstream_rejected_total (503 at once, every
// replica's breaker open), coalesce_upstream_ready; and with endpoint:
// coalesce_upstream_requests_total, coalesce_upstream_failures_total{kind},
// coalesce_upstream_request_duration_seconds, coalesce_upstream_breaker_state
// (0 closed, 1 half-open, 2 open), coalesce_upstream_ejections_total,
// coalesce_upstream_ejected, coalesce_upstream_connects_total,
// coalesce_upstream_healthy.
func newMetrics(s *series, model, version string, endpoints []string) (*modelMetrics, []*endpointMetrics) {
	l := `model="` + model + `",version="` + version + `"`
	m := &modelMetrics{}
	name := func(n string) string { m.names = append(m.names, n); return n }
	m.batchRows = s.histogram(name(`coalesce_upstream_batch_rows{`+l+`}`), batchBuckets)
	m.retries = s.counter(name(`coalesce_upstream_retries_total{` + l + `}`))
	m.noBudget = s.counter(name(`coalesce_upstream_retries_refused_total{` + l + `}`))
	m.rejected = s.counter(name(`coalesce_upstream_rejected_total{` + l + `}`))
	m.ready = s.gauge(name(`coalesce_upstream_ready{` + l + `}`))
	eps := make([]*endpointMetrics, len(endpoints))
	for i, ep := range endpoints {
		el := l + `,endpoint="` + ep + `"`
		e := &endpointMetrics{failures: map[string]*metrics.Counter{}}
		e.requests = s.counter(name(`coalesce_upstream_requests_total{` + el + `}`))
		for _, k := range failureKinds {
			e.failures[k] = s.counter(name(`coalesce_upstream_failures_total{` + el + `,kind="` + k + `"}`))
		}
		e.latency = s.histogram(name(`coalesce_upstream_request_duration_seconds{`+el+`}`), latencyBuckets)
		e.breaker = s.gauge(name(`coalesce_upstream_breaker_state{` + el + `}`))
		e.ejections = s.counter(name(`coalesce_upstream_ejections_total{` + el + `}`))
		e.ejected = s.gauge(name(`coalesce_upstream_ejected{` + el + `}`))
		e.connects = s.counter(name(`coalesce_upstream_connects_total{` + el + `}`))
		e.healthy = s.gauge(name(`coalesce_upstream_healthy{` + el + `}`))
		eps[i] = e
	}
	return m, eps
}
