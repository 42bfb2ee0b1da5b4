package batcher

import (
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Metrics are the batcher's Prometheus series for one model version. They
// live as long as the version: NewMetrics creates (or finds) them and
// Unregister removes them. A nil *Metrics records nothing.
type Metrics struct {
	set       *metrics.Set
	names     []string // every series, for Unregister
	execTime  *metrics.PrometheusHistogram
	execCalls *metrics.Counter
	execRows  *metrics.Counter
	batchSize *metrics.PrometheusHistogram
	waitHist  *metrics.PrometheusHistogram
	released  map[string]*metrics.Counter // by release reason
	shedFull  *metrics.Counter
	shedAdmit *metrics.Counter
	expiredN  *metrics.Counter
	rows      *metrics.Gauge
	requests  *metrics.Gauge
	capacity  *metrics.Gauge // the queue bound in rows, set by New
}

// batchBuckets are powers of two from 1 to 1024 rows.
var batchBuckets = metrics.ExponentialBuckets(1, 2, 11)

// waitBuckets are 10µs to ~10s in factors of 2.
var waitBuckets = metrics.ExponentialBuckets(0.00001, 2, 21)

// execBuckets are 10µs to ~20s in factors of 2.
var execBuckets = metrics.ExponentialBuckets(0.00001, 2, 22)

// NewMetrics creates the batcher series of model version on set, or finds
// them when they exist (a version that is reloaded keeps its series).
// Names: coalesce_batch_size (rows per batch), coalesce_queue_wait_seconds,
// coalesce_batches_total{reason}, coalesce_shed_total{reason="queue_full"
// or "admission"}, coalesce_expired_total, coalesce_queue_rows,
// coalesce_queue_requests, coalesce_queue_capacity_rows (the bound of
// coalesce_queue_rows), and per backend execution (one observation per
// batch run: merging the inputs, Infer, splitting the outputs)
// coalesce_inference_duration_seconds, coalesce_inference_calls_total and
// coalesce_inference_rows_total; all labelled {model, version}.
func NewMetrics(set *metrics.Set, model, version string) *Metrics {
	l := `model="` + model + `",version="` + version + `"`
	m := &Metrics{set: set, released: map[string]*metrics.Counter{}}
	counter := func(name string) *metrics.Counter {
		m.names = append(m.names, name)
		return set.GetOrCreateCounter(name)
	}
	hist := func(name string, buckets []float64) *metrics.PrometheusHistogram {
		m.names = append(m.names, name)
		return set.GetOrCreatePrometheusHistogramExt(name, buckets)
	}
	gauge := func(name string) *metrics.Gauge {
		m.names = append(m.names, name)
		return set.GetOrCreateGauge(name, nil)
	}
	m.batchSize = hist(`coalesce_batch_size{`+l+`}`, batchBuckets)
	m.waitHist = hist(`coalesce_queue_wait_seconds{`+l+`}`, waitBuckets)
	m.shedFull = counter(`coalesce_shed_total{` + l + `,reason="queue_full"}`)
	m.shedAdmit = counter(`coalesce_shed_total{` + l + `,reason="admission"}`)
	m.expiredN = counter(`coalesce_expired_total{` + l + `}`)
	m.rows = gauge(`coalesce_queue_rows{` + l + `}`)
	m.requests = gauge(`coalesce_queue_requests{` + l + `}`)
	m.capacity = gauge(`coalesce_queue_capacity_rows{` + l + `}`)
	m.execTime = hist(`coalesce_inference_duration_seconds{`+l+`}`, execBuckets)
	m.execCalls = counter(`coalesce_inference_calls_total{` + l + `}`)
	m.execRows = counter(`coalesce_inference_rows_total{` + l + `}`)
	for _, r := range []string{ReleaseFull, ReleaseIdle, ReleaseDelay, ReleaseDeadline, ReleaseClose} {
		m.released[r] = counter(`coalesce_batches_total{` + l + `,reason="` + r + `"}`)
	}
	return m
}

// Unregister removes the series from their set. Call it once the version
// is retired and no batcher records on m any more.
func (m *Metrics) Unregister() {
	if m == nil {
		return
	}
	for _, name := range m.names {
		m.set.UnregisterMetric(name)
	}
}

// execution records one backend execution of a batch of rows rows.
func (m *Metrics) execution(rows int, d time.Duration) {
	if m != nil {
		m.execTime.Update(d.Seconds())
		m.execCalls.Inc()
		m.execRows.Add(rows)
	}
}

func (m *Metrics) batch(rows int, reason string) {
	if m != nil {
		m.batchSize.Update(float64(rows))
		m.released[reason].Inc()
	}
}

func (m *Metrics) queueWait(d time.Duration) {
	if m != nil {
		m.waitHist.Update(d.Seconds())
	}
}

func (m *Metrics) shed(reason string) {
	if m == nil {
		return
	}
	if reason == "admission" {
		m.shedAdmit.Inc()
	} else {
		m.shedFull.Inc()
	}
}

func (m *Metrics) expired() {
	if m != nil {
		m.expiredN.Inc()
	}
}

func (m *Metrics) depth(rows, requests int) {
	if m != nil {
		m.rows.Set(float64(rows))
		m.requests.Set(float64(requests))
	}
}

func (m *Metrics) queueCapacity(rows int) {
	if m != nil {
		m.capacity.Set(float64(rows))
	}
}
