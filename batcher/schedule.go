package batcher

import (
	"math"
	"time"
)

// schedule is the batcher's one scheduling goroutine: it expires requests
// whose deadline passed, hands batches to idle workers, and sleeps until
// something changes (a request, a free worker) or a timer it set (the end
// of a wait, the next deadline) fires.
func (bt *Batcher) schedule() {
	defer close(bt.stopped)
	timer := bt.clock.NewTimer(time.Hour)
	timer.Stop()
	var ready []*batch
	for {
		now := bt.clock.Now()
		bt.mu.Lock()
		expired, next := bt.expire(now)
		ready = ready[:0]
		var wakeAt time.Time
		for bt.idle > 0 && bt.requests > 0 {
			b, until := bt.decide(now)
			if b == nil {
				wakeAt = until
				break
			}
			bt.idle--
			ready = append(ready, b)
		}
		if !next.IsZero() && (wakeAt.IsZero() || next.Before(wakeAt)) {
			wakeAt = next // the tightest deadline of what is still queued
		}
		bt.armed = wakeAt
		// Closing ends once nothing is queued and every worker slot is
		// free again: a lone request's batch that its submitter runs
		// itself (Submit's fast path) holds a slot but not wg, and its
		// backend must not be closed under it.
		finished := bt.closing && bt.requests == 0 && bt.idle == bt.workers
		bt.met.depth(bt.rows, bt.requests)
		bt.mu.Unlock()

		for _, c := range expired {
			c.done <- result{err: ErrExpired}
		}
		for _, b := range ready {
			bt.batches <- b // a worker is idle: it takes it at once
		}
		if finished {
			close(bt.batches)
			bt.wg.Wait()
			return
		}
		if !wakeAt.IsZero() {
			timer.Reset(max(wakeAt.Sub(now), 0))
		}
		if bt.onWait != nil {
			bt.onWait()
		}
		select {
		case <-bt.wake:
		case <-timer.C():
		}
		timer.Stop()
	}
}

// expire removes the queued calls whose deadline is not after now and
// returns them, to be answered outside the lock, with the tightest
// deadline of the calls that remain (zero if none): one pass for both.
// Called with mu held.
func (bt *Batcher) expire(now time.Time) (out []*call, next time.Time) {
	for l, q := range bt.queues {
		kept := q[:0]
		for _, c := range q {
			if c.req.Deadline.After(now) {
				kept = append(kept, c)
				if next.IsZero() || c.req.Deadline.Before(next) {
					next = c.req.Deadline
				}
				continue
			}
			out = append(out, c)
			bt.rows -= c.rows
			bt.requests--
		}
		clear(q[len(kept):]) // let the expired calls be collected
		bt.queues[l] = kept
	}
	for range out {
		bt.met.expired()
	}
	return out, next
}

// decide applies the dispatch policy for one idle worker at now: it
// returns the batch to run, or nil and the time to look again. Called
// with mu held and at least one request queued.
//
// The policy, in order:
//   - closing, or batching off: dispatch at once;
//   - the compatible rows at the head of the queue fill MaxBatchSize:
//     dispatch ("full");
//   - waiting cannot pay (no MaxQueueDelay, nothing learnt yet, or the
//     rows already reach the batch size at which a worker keeps up with
//     the arrival rate): dispatch ("idle"), so a lone request never waits;
//   - otherwise wait for the rows expected to arrive, but never past the
//     oldest request's MaxQueueDelay ("delay") nor past the time the
//     batch must start to meet the tightest deadline in it ("deadline").
func (bt *Batcher) decide(now time.Time) (*batch, time.Time) {
	if bt.closing {
		return bt.take(ReleaseClose), time.Time{}
	}
	if !bt.cfg.Enabled {
		return bt.take(ReleaseIdle), time.Time{}
	}
	n, oldest, tightest := bt.candidates()
	if n >= bt.cfg.MaxBatchSize {
		return bt.take(ReleaseFull), time.Time{}
	}
	target := bt.target(now)
	if bt.cfg.MaxQueueDelay <= 0 || float64(n) >= target {
		return bt.take(ReleaseIdle), time.Time{}
	}
	// Wait for the rows expected at the current arrival rate (with no
	// rate yet, as long as the bounds below allow).
	until := now.Add(bt.cfg.MaxQueueDelay)
	if rate := bt.arrivals.rate(now); rate > 0 {
		if d := (target - float64(n)) / rate; d < bt.cfg.MaxQueueDelay.Seconds() {
			until = now.Add(time.Duration(d * float64(time.Second)))
		}
	}
	reason := ReleaseIdle
	if at := oldest.Add(bt.cfg.MaxQueueDelay); !at.After(until) {
		until, reason = at, ReleaseDelay
	}
	est, _ := bt.cost.estimate(int(math.Ceil(target)))
	if at := tightest.Add(-est); !at.After(until) {
		until, reason = at, ReleaseDeadline
	}
	if !until.After(now) {
		return bt.take(reason), time.Time{}
	}
	return nil, until
}

// target returns the batch size worth waiting for: the size n* at which a
// worker, given its share of the arrival rate λ, collects the next batch
// in the time it takes to run this one, n* = λw·t(n*) with t(n) = a + b·n,
// so n* = λw·a / (1 − λw·b). Below it, arrivals would be served faster by
// waiting; at low load n* < 1 and nothing waits. Zero when the cost model
// knows nothing or sees no fixed cost. Called with mu held.
func (bt *Batcher) target(now time.Time) float64 {
	return math.Max(bt.learntTarget(now), float64(min(bt.cfg.PreferredBatchSize, bt.cfg.MaxBatchSize)))
}

// learntTarget is target without Config.PreferredBatchSize.
func (bt *Batcher) learntTarget(now time.Time) float64 {
	if !bt.cost.ok || bt.cost.a <= 0 {
		return 0
	}
	per := bt.arrivals.rate(now) / float64(bt.workers)
	if per <= 0 {
		return 0
	}
	if per*bt.cost.b >= 1 { // saturated: every batch should be full
		return float64(bt.cfg.MaxBatchSize)
	}
	return math.Min(per*bt.cost.a/(1-per*bt.cost.b), float64(bt.cfg.MaxBatchSize))
}

// candidates returns what the next batch would hold if taken now: its
// rows, its oldest member's arrival and its tightest deadline. Called
// with mu held.
func (bt *Batcher) candidates() (rows int, oldest, tightest time.Time) {
	bt.walk(func(c *call) {
		rows += c.rows
		if oldest.IsZero() || c.enqueued.Before(oldest) {
			oldest = c.enqueued
		}
		if tightest.IsZero() || c.req.Deadline.Before(tightest) {
			tightest = c.req.Deadline
		}
	})
	return rows, oldest, tightest
}

// walk calls f on the calls the next batch takes: from the highest
// priority level down, in FIFO order, while they fit in MaxBatchSize and
// share the first call's shape. It stops at the first call that does not
// fit, so nothing is reordered within a level. Called with mu held.
func (bt *Batcher) walk(f func(*call)) int {
	var head []int64
	rows, taken := 0, 0
	for _, q := range bt.queues {
		for _, c := range q {
			if head == nil {
				head = c.shape
			}
			if rows+c.rows > bt.cfg.MaxBatchSize || !sameShape(head, c.shape) {
				return taken
			}
			if !bt.cfg.Enabled && taken == 1 {
				return taken
			}
			rows += c.rows
			taken++
			f(c)
		}
	}
	return taken
}

// take removes the next batch from the queue. Called with mu held.
func (bt *Batcher) take(reason string) *batch {
	b := &batch{reason: reason}
	bt.walk(func(c *call) {
		b.calls = append(b.calls, c)
		b.rows += c.rows
	})
	left := len(b.calls)
	for l, q := range bt.queues {
		k := min(left, len(q))
		left -= k
		clear(q[:k])
		bt.queues[l] = q[k:]
	}
	bt.rows -= b.rows
	bt.requests -= len(b.calls)
	return b
}
