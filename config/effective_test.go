package config

import (
	"testing"
	"time"
)

func TestEffectiveFor(t *testing.T) {
	off := false
	cfg := Default()
	cfg.HTTP.RequestTimeout = 5 * time.Second
	cfg.Batching = Batching{Enabled: true, MaxBatchSize: 32, MaxQueueDelay: time.Millisecond, QueueCapacity: 100, PriorityLevels: 1}
	e := cfg.EffectiveFor(&ModelConfig{})
	if !e.Enabled || e.MaxBatchSize != 32 || e.MaxQueueDelay != time.Millisecond || e.QueueCapacity != 100 || e.PriorityLevels != 1 || e.DefaultTimeout != 5*time.Second {
		t.Errorf("defaults: %+v; want batching.* with http.request_timeout", e)
	}
	cfg.Batching.DefaultTimeout = 2 * time.Second
	cfg.Batching.PreferredBatchSize = 2
	if e = cfg.EffectiveFor(&ModelConfig{}); e.PreferredBatchSize != 2 || e.DefaultTimeout != 2*time.Second {
		t.Errorf("batching.preferred_batch_size, default_timeout: %+v; want 2 and 2s", e)
	}
	e = cfg.EffectiveFor(&ModelConfig{Batching: &off, MaxBatchSize: 8, MaxQueueDelay: 3 * time.Millisecond, PreferredBatchSize: 4, QueueCapacity: 9, DefaultTimeout: time.Second, PriorityLevels: 4})
	if e.Enabled || e.MaxBatchSize != 8 || e.MaxQueueDelay != 3*time.Millisecond || e.PreferredBatchSize != 4 || e.QueueCapacity != 9 || e.PriorityLevels != 4 || e.DefaultTimeout != time.Second {
		t.Errorf("model overrides: %+v", e)
	}
	if e.Cache || e.Dedup || e.CacheBytes != 0 || e.CacheTTL != 0 {
		t.Errorf("cache defaults: %+v; want off", e)
	}
	on := true
	cfg.Cache = Cache{Enabled: true, MaxBytes: 1 << 20, TTL: time.Minute, Dedup: true}
	if e = cfg.EffectiveFor(&ModelConfig{}); !e.Cache || !e.Dedup || e.CacheTTL != time.Minute {
		t.Errorf("cache.*: %+v; want on, dedup, 1m", e)
	}
	if e = cfg.EffectiveFor(&ModelConfig{Cache: &off, Dedup: &off, CacheTTL: time.Second}); e.Cache || e.Dedup || e.CacheTTL != time.Second {
		t.Errorf("model cache overrides: %+v; want off, no dedup, 1s", e)
	}
	cfg.Cache = Cache{MaxBytes: 1 << 20}
	if e = cfg.EffectiveFor(&ModelConfig{CacheBytes: 4096}); !e.Cache || e.CacheBytes != 4096 {
		t.Errorf("cache_bytes: %+v; want the cache on with 4096 bytes", e)
	}
	if e = cfg.EffectiveFor(&ModelConfig{Cache: &on}); !e.Cache || e.CacheBytes != 0 {
		t.Errorf("cache: true: %+v; want on with a share", e)
	}
}
