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
// model; others are created on first use.
var commonCodes = [...]int{200, 400, 404, 405, 413, 500, 503, 504}

var protocols = [...]string{protoPredict, protoV2, protoTFS, protoGRPC, protoOther}

// serverMetrics holds the request metrics of requests that resolved no
// model (model=""); each served model's live in the snapshot (modelMetrics),
// created and removed with the model. Label values come from the
// configuration (model names) and fixed sets, never from request data.
type serverMetrics struct {
	set  *metrics.Set
	none *modelMetrics
	// shedInflight counts requests refused at the edge because
	// http.max_inflight were in flight: coalesce_shed_total{reason=
	// "max_inflight"}, the family the batchers count their own shedding
	// in (with model and version labels).
	shedInflight *metrics.Counter
}

// modelMetrics are the request series of one model name:
// coalesce_requests_total{model,protocol,code} and
// coalesce_request_duration_seconds{model,protocol}, from the request's
// arrival to its answer. Backend executions are counted per version by the
// batcher (coalesce_inference_*).
type modelMetrics struct {
	name     string
	requests [len(protocols)][len(commonCodes)]*metrics.Counter
	latency  [len(protocols)]*metrics.PrometheusHistogram
}

func newServerMetrics(set *metrics.Set) *serverMetrics {
	return &serverMetrics{set: set, none: newModelMetrics(set, ""),
		shedInflight: set.GetOrCreateCounter(`coalesce_shed_total{reason="max_inflight"}`)}
}

// newModelMetrics creates (or finds) the request series of model name.
func newModelMetrics(set *metrics.Set, name string) *modelMetrics {
	mm := &modelMetrics{name: name}
	for p, proto := range protocols {
		for c, code := range commonCodes {
			mm.requests[p][c] = set.GetOrCreateCounter(requestsName(name, proto, code))
		}
		mm.latency[p] = set.GetOrCreatePrometheusHistogramExt(latencyName(name, proto), latencyBuckets)
	}
	return mm
}

// unregister removes the series of a model that is no longer served,
// including the status codes created on first use.
func (mm *modelMetrics) unregister(set *metrics.Set) {
	prefix := `coalesce_requests_total{model="` + mm.name + `",`
	for _, name := range set.ListMetricNames() {
		if len(name) > len(prefix) && name[:len(prefix)] == prefix {
			set.UnregisterMetric(name)
		}
	}
	for _, proto := range protocols {
		set.UnregisterMetric(latencyName(mm.name, proto))
	}
}

func requestsName(model, proto string, code int) string {
	return `coalesce_requests_total{model="` + model + `",protocol="` + proto + `",code="` + strconv.Itoa(code) + `"}`
}

func latencyName(model, proto string) string {
	return `coalesce_request_duration_seconds{model="` + model + `",protocol="` + proto + `"}`
}

// observe counts one finished request of model mm (nil: none resolved) and
// its latency since start.
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
	sm.set.GetOrCreateCounter(requestsName(mm.name, proto, code)).Inc()
}

func protoIndex(proto string) int {
	for i, p := range protocols {
		if p == proto {
			return i
		}
	}
	return len(protocols) - 1
}
