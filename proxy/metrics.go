package proxy

import (
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// latencyBuckets are the upper bounds, in seconds, of the latency
// histograms: 50µs to ~6.5s in factors of 2, so that sub-millisecond
// answers are resolved and histogram_quantile works in Prometheus.
var latencyBuckets = metrics.ExponentialBuckets(0.00005, 2, 18)

// commonCodes are the status codes whose counters are created with a
// model version; others are created on first use.
var commonCodes = [...]int{200, 400, 404, 405, 413, 500, 503, 504}

var protocols = [...]string{protoPredict, protoV2, protoTFS, protoGRPC, protoOther}

// serverMetrics holds the request metrics of requests that resolved no
// model version (model="", version=""); each served version's live in its
// snapshot entry (entry.req), created with the version and removed when
// no load of it is served any more (Server.retire). Label values come from
// the configuration (model names, versions) and fixed sets, never from
// request data.
type serverMetrics struct {
	set  *metrics.Set
	none *modelMetrics
	// shedInflight counts requests refused at the edge because
	// http.max_inflight were in flight: coalesce_shed_total{reason=
	// "max_inflight"}, the family the batchers count their own shedding
	// in (with model and version labels).
	shedInflight *metrics.Counter
}

// modelMetrics are the request series of one model version:
// coalesce_requests_total{model,version,protocol,code} and
// coalesce_request_duration_seconds{model,version,protocol}, from the
// request's arrival to its answer, counted under the version that
// answered (after labels, the canary split and a move to the successor of
// a retired version). Every load of one version shares them (GetOrCreate),
// so that a reload continues its counters. Backend executions are counted
// per version by the batcher (coalesce_inference_*).
type modelMetrics struct {
	name, version string
	requests      [len(protocols)][len(commonCodes)]*metrics.Counter
	latency       [len(protocols)]*metrics.PrometheusHistogram
}

func newServerMetrics(set *metrics.Set) *serverMetrics {
	return &serverMetrics{set: set, none: newModelMetrics(set, "", ""),
		shedInflight: set.GetOrCreateCounter(`coalesce_shed_total{reason="max_inflight"}`)}
}

// newModelMetrics creates (or finds) the request series of model name at
// version.
func newModelMetrics(set *metrics.Set, name, version string) *modelMetrics {
	mm := &modelMetrics{name: name, version: version}
	for p, proto := range protocols {
		for c, code := range commonCodes {
			mm.requests[p][c] = set.GetOrCreateCounter(requestsName(name, version, proto, code))
		}
		mm.latency[p] = set.GetOrCreatePrometheusHistogramExt(latencyName(name, version, proto), latencyBuckets)
	}
	return mm
}

// unregister removes the series of a version that is no longer served,
// including the status codes created on first use.
func (mm *modelMetrics) unregister(set *metrics.Set) {
	prefix := `coalesce_requests_total{model="` + mm.name + `",version="` + mm.version + `",`
	for _, name := range set.ListMetricNames() {
		if len(name) > len(prefix) && name[:len(prefix)] == prefix {
			set.UnregisterMetric(name)
		}
	}
	for _, proto := range protocols {
		set.UnregisterMetric(latencyName(mm.name, mm.version, proto))
	}
}

func requestsName(model, version, proto string, code int) string {
	return `coalesce_requests_total{model="` + model + `",version="` + version + `",protocol="` + proto + `",code="` + strconv.Itoa(code) + `"}`
}

func latencyName(model, version, proto string) string {
	return `coalesce_request_duration_seconds{model="` + model + `",version="` + version + `",protocol="` + proto + `"}`
}

// observe counts one finished request of the version whose series are mm
// (nil: none resolved) and its latency since start.
func (sm *serverMetrics) observe(mm *modelMetrics, proto string, code int, start time.Time) {
	if mm == nil {
		mm = sm.none
	}
	p := protoIndex(proto)
	mm.latency[p].UpdateDuration(start)
	for c, cc := range commonCodes {
		if cc == code {
			mm.requests[p][c].Inc()
			return
		}
	}
	sm.set.GetOrCreateCounter(requestsName(mm.name, mm.version, proto, code)).Inc()
}

// requestMetrics returns e's request series; nil for a nil e.
func (e *entry) requestMetrics() *modelMetrics {
	if e == nil {
		return nil
	}
	return e.req
}

func protoIndex(proto string) int {
	for i, p := range protocols {
		if p == proto {
			return i
		}
	}
	return len(protocols) - 1
}
