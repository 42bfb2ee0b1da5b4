package config

import (
	"fmt"
	"os"
	"time"

	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// ModelConfig is the per-model configuration read from
// <repository>/<name>/config.yaml. Every key is optional.
type ModelConfig struct {
	Description string `koanf:"description" help:"one line shown in metadata"`
	// MaxBatchSize is the largest number of rows one inference call
	// takes; 0 means no limit.
	MaxBatchSize int `koanf:"max_batch_size" help:"largest number of rows per inference call (0 = no limit)"`
	// Batching overrides batching.enabled for this model; nil keeps it.
	Batching *bool `koanf:"batching" help:"batch this model's requests (unset: batching.enabled)"`
	// The batcher settings below override the batching.* defaults when
	// non-zero.
	MaxQueueDelay      time.Duration `koanf:"max_queue_delay" help:"longest a request waits for others to join its batch"`
	PreferredBatchSize int           `koanf:"preferred_batch_size" help:"rows a batch waits for at any load, within max_queue_delay"`
	QueueCapacity      int           `koanf:"queue_capacity" help:"queue bound in rows"`
	DefaultTimeout     time.Duration `koanf:"default_timeout" help:"request deadline when the client sets none"`
	PriorityLevels     int           `koanf:"priority_levels" help:"number of priority levels"`
	// Cache overrides cache.enabled for this model; nil keeps it.
	Cache *bool `koanf:"cache" help:"cache this model's responses (unset: cache.enabled, or on when cache_bytes is set)"`
	// CacheBytes, when positive, is this model's own share of
	// cache.max_bytes and switches its cache on.
	CacheBytes int `koanf:"cache_bytes" help:"this model's cache budget in bytes, out of cache.max_bytes (0 = an equal share of what the others leave)"`
	// CacheTTL overrides cache.ttl when positive.
	CacheTTL time.Duration `koanf:"cache_ttl" help:"how long a cached response may answer (0 = cache.ttl)"`
	// Dedup overrides cache.dedup for this model; nil keeps it.
	Dedup   *bool   `koanf:"dedup" help:"compute identical concurrent requests once (unset: cache.dedup)"`
	Predict Predict `koanf:"predict"`
	// Inputs and Outputs describe the tensors of a model whose file does
	// not (XGBoost model.json, LightGBM model.txt); ONNX models declare
	// their own and must leave them empty.
	Inputs  []TensorConfig `koanf:"inputs" help:"native tree models: the input (name, datatype FP32|FP64, dims [features])"`
	Outputs []TensorConfig `koanf:"outputs" help:"native tree models: outputs served, in order (label, probabilities, margin; regressors: prediction, margin)"`
	// VersionPolicy, Labels, Canary and Shadow are the model's lifecycle
	// settings (lifecycle.go).
	VersionPolicy VersionPolicy     `koanf:"version_policy"`
	Labels        map[string]string `koanf:"labels" help:"version labels: name -> version (stable: 3)"`
	Canary        Canary            `koanf:"canary"`
	Shadow        Shadow            `koanf:"shadow"`
}

// TensorConfig names one input or output of a native model.
type TensorConfig struct {
	Name     string  `koanf:"name"`
	DataType string  `koanf:"datatype"`
	Dims     []int64 `koanf:"dims"`
}

// Predict says how the seed's POST /predict answers for a model.
type Predict struct {
	// Input names the model input that "features" fills; empty means the
	// model's only input.
	Input string `koanf:"input" help:"model input that /predict's features fill (empty: the only input)"`
	// Output names the model output that feeds "prediction"; empty means
	// the first output.
	Output string `koanf:"output" help:"model output that feeds /predict's prediction (empty: the first output)"`
	// Transform is applied per row to Output: "none" returns the row as
	// it is (a scalar when the row has one value), "argmax" the index of
	// its largest value.
	Transform string `koanf:"transform" help:"none or argmax"`
	// Labels, when set, replace class indices by these names.
	Labels []string `koanf:"labels" help:"class names by index"`
}

// DefaultModelConfig returns the defaults of a model configuration.
func DefaultModelConfig() ModelConfig {
	return ModelConfig{Predict: Predict{Transform: "none"}, VersionPolicy: VersionPolicy{Latest: 1}, Shadow: Shadow{Queue: 64, Interval: 10 * time.Millisecond},
		Canary: Canary{Rollback: Rollback{Window: time.Minute, MinRequests: 100}}}
}

// LoadModel reads a model's config.yaml. A missing file gives the
// defaults; an unknown key or a bad value is an error naming the key.
func LoadModel(path string) (ModelConfig, error) {
	m := DefaultModelConfig()
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return m, nil
	}
	err := loadYAML(path, &m, m.Validate)
	return m, err
}

// loadYAML decodes the YAML file at path over dst (which holds the
// defaults) with the one decoder, then runs validate; errors name the
// file.
func loadYAML(path string, dst any, validate func() error) error {
	k := koanf.New(".")
	if err := k.Load(file.Provider(path), yamlParser{}); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := decode(k, dst, nil); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := validate(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Validate checks the values of m.
func (m *ModelConfig) Validate() error {
	if m.MaxBatchSize < 0 {
		return fmt.Errorf("config: max_batch_size: %d is negative; want 0 (no limit) or more", m.MaxBatchSize)
	}
	for _, c := range []struct {
		key string
		v   int64
	}{{"max_queue_delay", int64(m.MaxQueueDelay)}, {"preferred_batch_size", int64(m.PreferredBatchSize)}, {"queue_capacity", int64(m.QueueCapacity)},
		{"default_timeout", int64(m.DefaultTimeout)}, {"priority_levels", int64(m.PriorityLevels)},
		{"cache_bytes", int64(m.CacheBytes)}, {"cache_ttl", int64(m.CacheTTL)}} {
		if c.v < 0 {
			return fmt.Errorf("config: %s: %d is negative; want 0 (the default) or more", c.key, c.v)
		}
	}
	if m.Cache != nil && !*m.Cache && m.CacheBytes > 0 {
		return fmt.Errorf("config: cache_bytes: %d while cache is false; want cache: true, or no cache_bytes", m.CacheBytes)
	}
	if len(m.Inputs) > 1 {
		return fmt.Errorf("config: inputs: %d entries; native tree models have one input", len(m.Inputs))
	}
	for i, in := range m.Inputs {
		if in.Name == "" {
			return fmt.Errorf("config: inputs[%d].name: empty; want the input's name", i)
		}
		if in.DataType != "" && in.DataType != "FP32" && in.DataType != "FP64" {
			return fmt.Errorf("config: inputs[%d].datatype: %q; want FP32 or FP64", i, in.DataType)
		}
		if len(in.Dims) > 1 || (len(in.Dims) == 1 && in.Dims[0] <= 0) {
			return fmt.Errorf("config: inputs[%d].dims: %v; want [features] (rows are the batch dimension)", i, in.Dims)
		}
	}
	for i, out := range m.Outputs {
		if out.Name == "" {
			return fmt.Errorf("config: outputs[%d].name: empty; want one of label, probabilities, margin, prediction", i)
		}
		if out.DataType != "" || len(out.Dims) != 0 {
			return fmt.Errorf("config: outputs[%d] (%s): datatype and dims are fixed by the model; set only name", i, out.Name)
		}
	}
	if err := oneOf(m.Predict.Transform, "none", "argmax"); err != nil {
		return fmt.Errorf("config: predict.transform: %w", err)
	}
	return m.validateLifecycle()
}

// Effective is a model's batching settings after its config.yaml has been
// laid over the process-wide batching.* defaults: the one place where the
// two are merged.
type Effective struct {
	// Batching holds the merged batching.* values; DefaultTimeout is the
	// request deadline from arrival (batching.default_timeout, else
	// http.request_timeout, overridden by the model's default_timeout).
	Batching
	// Cache is whether the model's responses are cached: cache.enabled,
	// overridden by the model's cache, on when it sets cache_bytes.
	Cache bool
	// CacheBytes is the model's own budget; 0 means a share of what
	// the models with their own budgets leave of cache.max_bytes.
	CacheBytes int
	// CacheTTL is cache.ttl, overridden by the model's cache_ttl.
	CacheTTL time.Duration
	// Dedup is cache.dedup, overridden by the model's dedup.
	Dedup bool
}

// EffectiveFor returns model m's effective settings under c.
func (c *Config) EffectiveFor(m *ModelConfig) Effective {
	b := c.Batching
	if m.Batching != nil {
		b.Enabled = *m.Batching
	}
	if m.MaxBatchSize > 0 {
		b.MaxBatchSize = m.MaxBatchSize
	}
	if m.MaxQueueDelay > 0 {
		b.MaxQueueDelay = m.MaxQueueDelay
	}
	if m.PreferredBatchSize > 0 {
		b.PreferredBatchSize = m.PreferredBatchSize
	}
	if m.QueueCapacity > 0 {
		b.QueueCapacity = m.QueueCapacity
	}
	if m.PriorityLevels > 0 {
		b.PriorityLevels = m.PriorityLevels
	}
	if b.DefaultTimeout <= 0 {
		b.DefaultTimeout = c.HTTP.RequestTimeout
	}
	if m.DefaultTimeout > 0 {
		b.DefaultTimeout = m.DefaultTimeout
	}
	e := Effective{Batching: b, Cache: c.Cache.Enabled, CacheTTL: c.Cache.TTL, Dedup: c.Cache.Dedup}
	if m.CacheBytes > 0 {
		e.Cache, e.CacheBytes = true, m.CacheBytes
	}
	if m.Cache != nil {
		e.Cache = *m.Cache
	}
	if m.CacheTTL > 0 {
		e.CacheTTL = m.CacheTTL
	}
	if m.Dedup != nil {
		e.Dedup = *m.Dedup
	}
	return e
}
