package proxy

import (
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/coalesce-ml/coalesce/backends"
)

// latencyBuckets are the upper bounds, in seconds, of the latency
// histograms: 50µs to ~6.5s in factors of 2, so that sub-millisecond
// answers are resolved and histogram_quantile works in Prometheus.
var latencyBuckets = metrics.ExponentialBuckets(0.00005, 2, 18)

// commonCodes are the status codes whose counters are created at start;
// others are created on first use.
var commonCodes = [...]int{200, 400, 404, 405, 413, 500, 503, 504}

const protoOther = "other"

var protocols = [...]string{protoPredict, protoV2, protoTFS, protoOther}

// serverMetrics holds every metric of the data plane, registered once at
// start. Its maps are read-only after newServerMetrics, so lookups need no
// lock; label values come from the configuration (model names) and fixed
// sets, never from request data.
type serverMetrics struct {
	set    *metrics.Set
	models map[string]*modelMetrics // "" = no model resolved
}

type modelMetrics struct {
	name       string
	requests   [len(protocols)][len(commonCodes)]*metrics.Counter
	latency    [len(protocols)]*metrics.PrometheusHistogram
	inferTime  *metrics.PrometheusHistogram
	inferCalls *metrics.Counter
	inferRows  *metrics.Counter
}

func newServerMetrics(set *metrics.Set, reg *backends.Registry) *serverMetrics {
	sm := &serverMetrics{set: set, models: map[string]*modelMetrics{}}
	for _, name := range append([]string{""}, reg.Names()...) {
		mm := &modelMetrics{name: name}
		for p, proto := range protocols {
			for c, code := range commonCodes {
				mm.requests[p][c] = set.NewCounter(requestsName(name, proto, code))
			}
			mm.latency[p] = set.NewPrometheusHistogramExt(`coalesce_request_duration_seconds{model="`+name+`",protocol="`+proto+`"}`, latencyBuckets)
		}
		if name != "" {
			mm.inferTime = set.NewPrometheusHistogramExt(`coalesce_inference_duration_seconds{model="`+name+`"}`, latencyBuckets)
			mm.inferCalls = set.NewCounter(`coalesce_inference_calls_total{model="` + name + `"}`)
			mm.inferRows = set.NewCounter(`coalesce_inference_rows_total{model="` + name + `"}`)
		}
		sm.models[name] = mm
	}
	return sm
}

func requestsName(model, proto string, code int) string {
	return `coalesce_requests_total{model="` + model + `",protocol="` + proto + `",code="` + strconv.Itoa(code) + `"}`
}

// observe counts one finished request and its latency since start.
// model must be a configured model name or "".
func (sm *serverMetrics) observe(model, proto string, code int, start time.Time) {
	mm := sm.models[model]
	if mm == nil {
		mm = sm.models[""]
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

// inference records one backend call of rows rows that started at start.
func (sm *serverMetrics) inference(m *backends.ModelVersion, rows int, start time.Time) {
	mm := sm.models[m.Name]
	mm.inferTime.UpdateDuration(start)
	mm.inferCalls.Inc()
	mm.inferRows.Add(rows)
}

func protoIndex(proto string) int {
	for i, p := range protocols {
		if p == proto {
			return i
		}
	}
	return len(protocols) - 1
}
