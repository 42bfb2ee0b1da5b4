package drift

import "time"

// window is a sliding window of bin counts: a ring of sub-windows of
// equal length, the oldest of which is cleared as time moves past it.
// Its memory is fixed at creation (sub-windows × counters), whatever the
// traffic. It is not safe for concurrent use (Handle.mu guards it).
type window struct {
	sub    [][]uint64 // per sub-window, every feature's bin counts
	rows   []uint64   // per sub-window, rows counted
	fbN    []uint64   // per sub-window, feedback joined
	fbSum  []float64  // per sub-window, correct answers or absolute errors
	cur    int        // the sub-window being filled
	epoch  int64      // cur's start, in sub-window lengths since 1970
	subLen int64      // nanoseconds
}

func (w *window) init(cfg Config, counters int, now time.Time) {
	n := cfg.SubWindows
	w.sub = make([][]uint64, n)
	all := make([]uint64, n*counters)
	for i := range w.sub {
		w.sub[i] = all[i*counters : (i+1)*counters : (i+1)*counters]
	}
	w.rows = make([]uint64, n)
	w.fbN = make([]uint64, n)
	w.fbSum = make([]float64, n)
	w.subLen = max(int64(cfg.Window)/int64(n), 1)
	w.epoch = now.UnixNano() / w.subLen
	w.cur = int(w.epoch % int64(n))
}

// advance moves the window to now, clearing the sub-windows it passes.
func (w *window) advance(now time.Time) {
	e := now.UnixNano() / w.subLen
	if e <= w.epoch {
		return
	}
	steps := min(e-w.epoch, int64(len(w.sub)))
	for k := int64(1); k <= steps; k++ {
		i := int((w.epoch + k) % int64(len(w.sub)))
		clear(w.sub[i])
		w.rows[i], w.fbN[i], w.fbSum[i] = 0, 0, 0
	}
	w.epoch = e
	w.cur = int(e % int64(len(w.sub)))
}

func (w *window) current() []uint64 { return w.sub[w.cur] }

// total sums the sub-windows' counts into sum and returns the rows.
func (w *window) total(sum []uint64) uint64 {
	clear(sum)
	var rows uint64
	for i, s := range w.sub {
		for j, c := range s {
			sum[j] += c
		}
		rows += w.rows[i]
	}
	return rows
}

// feedback returns the joined feedback in the window and the mean of its
// scores (accuracy or absolute error).
func (w *window) feedback() (uint64, float64) {
	var n uint64
	var s float64
	for i := range w.fbN {
		n += w.fbN[i]
		s += w.fbSum[i]
	}
	if n == 0 {
		return 0, 0
	}
	return n, s / float64(n)
}
