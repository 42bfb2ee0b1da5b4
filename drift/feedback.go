package drift

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// feedbackTable holds the predictions of sampled requests by request id,
// at most cap of them: a new id replaces the oldest. It is not safe for
// concurrent use (Handle.mu guards it).
type feedbackTable struct {
	m    map[string]*fbEntry
	ring []string // ids in insertion order, oldest at head when full
	head int
}

type fbEntry struct {
	pred   float64 // the prediction's value (or category bin for strings)
	joined bool    // feedback arrived already
}

func (t *feedbackTable) init(n int) {
	t.m = make(map[string]*fbEntry, n)
	t.ring = make([]string, 0, n)
}

func (t *feedbackTable) put(id string, pred float64) {
	if e := t.m[id]; e != nil {
		*e = fbEntry{pred: pred}
		return
	}
	if len(t.ring) < cap(t.ring) {
		t.ring = append(t.ring, id)
	} else {
		delete(t.m, t.ring[t.head])
		t.ring[t.head] = id
		t.head = (t.head + 1) % len(t.ring)
	}
	t.m[id] = &fbEntry{pred: pred}
}

// Feedback errors.
var (
	// ErrUnknownID is returned for feedback on a request id that was not
	// sampled, or whose prediction left the bounded table.
	ErrUnknownID = errors.New("drift: no sampled prediction with that request id")
	// ErrNoFeedback is returned when the handle keeps no predictions
	// (feedback off, or a profile without outputs).
	ErrNoFeedback = errors.New("drift: feedback is off for this model version")
	// ErrDuplicate is returned for a second feedback on one request id.
	ErrDuplicate = errors.New("drift: feedback for that request id arrived already")
)

// Feedback records truth, the true label (classification) or value
// (regression) of the request with id, against its sampled prediction.
// A numeric prediction's truth is a decimal number, a string
// prediction's the label itself. The joined pair counts in the current
// sub-window of the rolling accuracy (a categorical prediction) or mean
// absolute error (a numeric one).
func (h *Handle) Feedback(id, truth string) error {
	if h == nil || !h.feedbackEnabled || h.pred < 0 {
		return ErrNoFeedback
	}
	ref := &h.refs[h.pred]
	want := math.NaN()
	if ref.str {
		want = float64(ref.f.CategoryBin([]byte(truth)))
	} else {
		v, err := strconv.ParseFloat(truth, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("drift: truth %q: want a finite number for output %q", truth, ref.f.Tensor)
		}
		want = v
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.drain() // a prediction sampled just before may still be in the ring
	e := h.fb.m[id]
	if e == nil {
		h.fbUnmatched.Inc()
		return ErrUnknownID
	}
	if e.joined {
		return ErrDuplicate
	}
	e.joined = true
	h.fbJoined.Inc()
	score := math.Abs(e.pred - want)
	if h.classify {
		score = 0
		if e.pred == want && !(ref.str && int(want) == len(ref.f.Categories)) {
			score = 1
		}
	}
	h.win.fbN[h.win.cur]++
	h.win.fbSum[h.win.cur] += score
	return nil
}
