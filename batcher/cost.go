package batcher

import (
	"math"
	"time"
)

// costModel learns how long the backend takes for a batch of n rows,
// t(n) ≈ a + b·n, by least squares over the most recent batches. Its zero
// value knows nothing. It is not safe for concurrent use (the batcher's
// mutex guards it).
type costModel struct {
	n    [costWindow]float64 // rows of the recent batches (ring)
	t    [costWindow]float64 // their durations, seconds
	len  int                 // filled entries
	next int                 // next slot to overwrite
	a, b float64             // fitted; valid when fitted
	ok   bool
}

// costWindow is how many recent batches the fit uses: enough to average
// out noise, few enough to follow a change of machine load within a
// second of traffic.
const costWindow = 64

// observe records a batch of rows rows that took d, and refits.
func (c *costModel) observe(rows int, d time.Duration) {
	c.n[c.next], c.t[c.next] = float64(rows), d.Seconds()
	c.next = (c.next + 1) % costWindow
	if c.len < costWindow {
		c.len++
	}
	// Refit while learning, then every 8th batch: the fit reads the whole
	// window, and one batch barely moves it.
	if c.len < 16 || c.next%8 == 0 {
		c.fit()
	}
}

func (c *costModel) fit() {
	k := float64(c.len)
	var sn, st float64
	for i := 0; i < c.len; i++ {
		sn += c.n[i]
		st += c.t[i]
	}
	mn, mt := sn/k, st/k
	var cov, vn float64
	for i := 0; i < c.len; i++ {
		cov += (c.n[i] - mn) * (c.t[i] - mt)
		vn += (c.n[i] - mn) * (c.n[i] - mn)
	}
	if vn < 1e-9 || cov <= 0 {
		// One batch size only (or noise): the fixed and per-row parts
		// cannot be told apart. Assume no fixed cost, which never makes
		// the batcher wait: waiting must be justified by evidence.
		c.a, c.b = 0, mt/math.Max(mn, 1)
	} else {
		c.b = cov / vn
		c.a = math.Max(0, mt-c.b*mn)
	}
	c.ok = true
}

// estimate returns the expected duration of a batch of n rows, and false
// when nothing has been observed yet.
func (c *costModel) estimate(n int) (time.Duration, bool) {
	if !c.ok {
		return 0, false
	}
	return time.Duration((c.a + c.b*float64(n)) * float64(time.Second)), true
}

// rateMeter estimates the arrival rate of rows with an exponentially
// weighted moving average of inter-arrival gaps. Not safe for concurrent
// use.
type rateMeter struct {
	last time.Time
	gap  float64 // smoothed seconds per row
}

// rateAlpha is the weight of the newest gap: the average forgets half of
// its past in about 14 arrivals.
const rateAlpha = 0.05

// arrive records rows arriving at now.
func (m *rateMeter) arrive(now time.Time, rows int) {
	if m.last.IsZero() {
		m.last = now
		return
	}
	g := math.Max(now.Sub(m.last).Seconds(), 1e-7) / float64(rows) // simultaneous arrivals: a floor, not 0
	m.last = now
	if m.gap == 0 {
		m.gap = g
		return
	}
	m.gap += rateAlpha * (g - m.gap)
}

// rate returns rows per second as of now: the smoothed rate, lowered when
// the time since the last arrival says traffic has slowed.
func (m *rateMeter) rate(now time.Time) float64 {
	if m.gap <= 0 {
		return 0
	}
	gap := m.gap
	if since := now.Sub(m.last).Seconds(); since > gap {
		gap = since
	}
	return 1 / gap
}
