package batcher

import (
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Metrics are the batcher's Prometheus series for one model version,
// registered once on the process's metrics set. A nil *Metrics records
// nothing.
type Metrics struct {
	batchSize *metrics.PrometheusHistogram
	waitHist  *metrics.PrometheusHistogram
	released  map[string]*metrics.Counter // by release reason
	shedFull  *metrics.Counter
	shedAdmit *metrics.Counter
	expiredN  *metrics.Counter
	rows      *metrics.Gauge
	requests  *metrics.Gauge
}

// batchBuckets are powers of two from 1 to 1024 rows.
var batchBuckets = metrics.ExponentialBuckets(1, 2, 11)

// waitBuckets are 10µs to ~10s in factors of 2.
var waitBuckets = metrics.ExponentialBuckets(0.00001, 2, 21)

// NewMetrics registers the batcher series of model version on set.
// Names: coalesce_batch_size (rows per batch), coalesce_queue_wait_seconds,
// coalesce_batches_total{reason}, coalesce_shed_total{reason="queue_full"
// or "admission"}, coalesce_expired_total, coalesce_queue_rows and
// coalesce_queue_requests, all labelled {model, version}.
func NewMetrics(set *metrics.Set, model, version string) *Metrics {
	l := `model="` + model + `",version="` + version + `"`
	m := &Metrics{
		batchSize: set.NewPrometheusHistogramExt(`coalesce_batch_size{`+l+`}`, batchBuckets),
		waitHist:  set.NewPrometheusHistogramExt(`coalesce_queue_wait_seconds{`+l+`}`, waitBuckets),
		released:  map[string]*metrics.Counter{},
		shedFull:  set.NewCounter(`coalesce_shed_total{` + l + `,reason="queue_full"}`),
		shedAdmit: set.NewCounter(`coalesce_shed_total{` + l + `,reason="admission"}`),
		expiredN:  set.NewCounter(`coalesce_expired_total{` + l + `}`),
		rows:      set.NewGauge(`coalesce_queue_rows{`+l+`}`, nil),
		requests:  set.NewGauge(`coalesce_queue_requests{`+l+`}`, nil),
	}
	for _, r := range []string{ReleaseFull, ReleaseIdle, ReleaseDelay, ReleaseDeadline, ReleaseClose} {
		m.released[r] = set.NewCounter(`coalesce_batches_total{` + l + `,reason="` + r + `"}`)
	}
	return m
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
