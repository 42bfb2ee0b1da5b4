package batcher

import "testing"

// TestQueueCapacityGauge: coalesce_queue_capacity_rows shows the queue
// bound the batcher enforces, the configured one or its default.
func TestQueueCapacityGauge(t *testing.T) {
	f := func(cfg Config, want float64) {
		t.Helper()
		h := newHarness(t, cfg, 1, false)
		if got := h.met.capacity.Get(); got != want || int(got) != h.bt.Config().QueueCapacity {
			t.Errorf("QueueCapacity %d, MaxBatchSize %d: coalesce_queue_capacity_rows = %v; want %v (the bound, %d)",
				cfg.QueueCapacity, cfg.MaxBatchSize, got, want, h.bt.Config().QueueCapacity)
		}
	}
	f(Config{Enabled: true, MaxBatchSize: 8, QueueCapacity: 100}, 100)
	f(Config{Enabled: true, MaxBatchSize: 8}, 16*8)
}
