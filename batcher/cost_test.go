package batcher

import (
	"math"
	"testing"
	"time"
)

func TestCostModelFit(t *testing.T) {
	var c costModel
	if _, ok := c.estimate(4); ok {
		t.Fatal("estimate before any batch: ok; want unknown")
	}
	// t(n) = 2ms + 0.5ms·n, observed exactly.
	for i := 0; i < 3*costWindow; i++ {
		n := 1 + i%16
		c.observe(n, 2*time.Millisecond+time.Duration(n)*500*time.Microsecond)
	}
	if math.Abs(c.a-0.002) > 1e-9 || math.Abs(c.b-0.0005) > 1e-9 {
		t.Errorf("fit a=%v b=%v; want 0.002 and 0.0005", c.a, c.b)
	}
	if d, _ := c.estimate(10); d != 7*time.Millisecond {
		t.Errorf("estimate(10) = %v; want 7ms", d)
	}
	// One batch size only: the fixed cost cannot be told apart, so none is
	// assumed (waiting must be justified by evidence).
	var one costModel
	for i := 0; i < 20; i++ {
		one.observe(4, 4*time.Millisecond)
	}
	if one.a != 0 || math.Abs(one.b-0.001) > 1e-12 {
		t.Errorf("single-size fit a=%v b=%v; want 0 and 0.001", one.a, one.b)
	}
}

func TestRateMeter(t *testing.T) {
	var m rateMeter
	now := time.Unix(0, 0)
	if r := m.rate(now); r != 0 {
		t.Errorf("rate with no arrivals = %v; want 0", r)
	}
	for i := 0; i < 200; i++ {
		now = now.Add(time.Millisecond)
		m.arrive(now, 2) // 2 rows a millisecond
	}
	if r := m.rate(now); math.Abs(r-2000) > 1 {
		t.Errorf("rate = %v rows/s; want 2000", r)
	}
	// Silence lowers the estimate: 10ms without an arrival.
	if r := m.rate(now.Add(10 * time.Millisecond)); math.Abs(r-100) > 1 {
		t.Errorf("rate after 10ms of silence = %v; want 100", r)
	}
}
