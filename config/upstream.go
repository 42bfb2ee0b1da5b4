package config

import (
	"fmt"
	"net/url"
	"os"
	"time"
)

// Upstream holds the defaults of every upstream model version (a version
// directory holding upstream.yaml, served by backends/upstream): how it
// connects, when its breakers open, when replicas are ejected, how it
// retries and probes. Each upstream.yaml may override any of them under
// the same keys.
type Upstream struct {
	Client   UpstreamClient   `koanf:"client"`
	Breaker  UpstreamBreaker  `koanf:"breaker"`
	Ejection UpstreamEjection `koanf:"ejection"`
	Retry    UpstreamRetry    `koanf:"retry"`
	Probe    UpstreamProbe    `koanf:"probe"`
}

// UpstreamClient configures the pooled HTTP client of each replica.
type UpstreamClient struct {
	PerTryTimeout       time.Duration `koanf:"per_try_timeout" help:"upstream: longest one call to one replica may take (the request deadline also bounds it)"`
	ConnectTimeout      time.Duration `koanf:"connect_timeout" help:"upstream: longest a TCP connect to a replica may take"`
	MaxConns            int           `koanf:"max_conns" help:"upstream: connection pool size per replica"`
	MaxIdleConnDuration time.Duration `koanf:"max_idle_conn_duration" help:"upstream: idle keep-alive connections are closed after this (keep it below the upstream's own idle timeout)"`
	MaxResponseBytes    int           `koanf:"max_response_bytes" help:"upstream: largest response body accepted from a replica"`
	// Concurrency is how many batches one model version sends at once,
	// over all replicas; 0 means 4 per replica.
	Concurrency int `koanf:"concurrency" help:"upstream: batches in flight per model version, all replicas together (0 = 4 per replica)"`
}

// UpstreamBreaker configures the circuit breaker of each replica
// (sony/gobreaker): it opens after ConsecutiveFailures failures in a row,
// or when at least MinRequests calls in the last Interval failed at
// FailureRatio or more; it stays open OpenTimeout, then lets
// HalfOpenProbes calls through, which close it if they all succeed.
type UpstreamBreaker struct {
	ConsecutiveFailures int           `koanf:"consecutive_failures" help:"upstream breaker: consecutive failures that open it"`
	FailureRatio        float64       `koanf:"failure_ratio" help:"upstream breaker: failure share over interval that opens it (0 = off)"`
	MinRequests         int           `koanf:"min_requests" help:"upstream breaker: calls in interval before failure_ratio applies"`
	Interval            time.Duration `koanf:"interval" help:"upstream breaker: rolling window of failure_ratio"`
	OpenTimeout         time.Duration `koanf:"open_timeout" help:"upstream breaker: how long it stays open before half-open probes"`
	HalfOpenProbes      int           `koanf:"half_open_probes" help:"upstream breaker: calls let through half-open; all must succeed to close it"`
}

// UpstreamEjection configures outlier ejection as Envoy does it: a replica
// with ConsecutiveErrors 5xx answers or timeouts in a row is taken out of
// the rotation for BaseTime × the number of times it was ejected (at most
// MaxTime), but never more than MaxPercent of the replicas at once, and
// never the last one serving.
type UpstreamEjection struct {
	ConsecutiveErrors int           `koanf:"consecutive_errors" help:"upstream ejection: consecutive 5xx or timeouts that eject a replica (0 = off)"`
	BaseTime          time.Duration `koanf:"base_time" help:"upstream ejection: first ejection time, multiplied by the ejection count"`
	MaxTime           time.Duration `koanf:"max_time" help:"upstream ejection: longest ejection time"`
	MaxPercent        int           `koanf:"max_percent" help:"upstream ejection: most replicas ejected at once, in percent (at least one always serves)"`
}

// UpstreamRetry configures retries of idempotent failures (connection
// refused, reset before any response, an upstream 503) on another
// replica, with jittered exponential back-off, within the request's
// deadline and a budget of BudgetPercent of the calls in flight (at least
// MinRetries at once).
type UpstreamRetry struct {
	MaxRetries    int           `koanf:"max_retries" help:"upstream retry: most retries per call (0 = off)"`
	Backoff       time.Duration `koanf:"backoff" help:"upstream retry: base back-off, doubled per retry, full jitter"`
	MaxBackoff    time.Duration `koanf:"max_backoff" help:"upstream retry: longest back-off"`
	BudgetPercent int           `koanf:"budget_percent" help:"upstream retry: retries in flight at most this share of calls in flight"`
	MinRetries    int           `koanf:"min_retries" help:"upstream retry: retries in flight always allowed, whatever the share"`
}

// UpstreamProbe configures the background health probes of each replica,
// which decide readiness and find recovered replicas.
type UpstreamProbe struct {
	Interval time.Duration `koanf:"interval" help:"upstream probe: time between health probes of each replica"`
	Timeout  time.Duration `koanf:"timeout" help:"upstream probe: longest one probe may take"`
}

// DefaultUpstream returns the built-in upstream defaults.
func DefaultUpstream() Upstream {
	return Upstream{
		Client: UpstreamClient{PerTryTimeout: 2 * time.Second, ConnectTimeout: time.Second, MaxConns: 64,
			MaxIdleConnDuration: 4 * time.Second, MaxResponseBytes: 64 << 20},
		Breaker: UpstreamBreaker{ConsecutiveFailures: 5, FailureRatio: 0.5, MinRequests: 20, Interval: 10 * time.Second,
			OpenTimeout: 5 * time.Second, HalfOpenProbes: 1},
		Ejection: UpstreamEjection{ConsecutiveErrors: 5, BaseTime: 30 * time.Second, MaxTime: 5 * time.Minute, MaxPercent: 50},
		Retry:    UpstreamRetry{MaxRetries: 2, Backoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, BudgetPercent: 20, MinRetries: 3},
		Probe:    UpstreamProbe{Interval: 2 * time.Second, Timeout: time.Second},
	}
}

// Validate checks the upstream settings; prefix is the key path they were
// read under ("upstream." or "" in an upstream.yaml).
func (u *Upstream) Validate(prefix string) error {
	checks := []struct {
		key string
		err error
	}{
		{"client.per_try_timeout", positive(u.Client.PerTryTimeout)},
		{"client.connect_timeout", positive(u.Client.ConnectTimeout)},
		{"client.max_conns", atLeast(u.Client.MaxConns, 1)},
		{"client.max_idle_conn_duration", positive(u.Client.MaxIdleConnDuration)},
		{"client.max_response_bytes", atLeast(u.Client.MaxResponseBytes, 1024)},
		{"client.concurrency", atLeast(u.Client.Concurrency, 0)},
		{"breaker.consecutive_failures", atLeast(u.Breaker.ConsecutiveFailures, 1)},
		{"breaker.failure_ratio", ratio(u.Breaker.FailureRatio)},
		{"breaker.min_requests", atLeast(u.Breaker.MinRequests, 1)},
		{"breaker.interval", positive(u.Breaker.Interval)},
		{"breaker.open_timeout", positive(u.Breaker.OpenTimeout)},
		{"breaker.half_open_probes", atLeast(u.Breaker.HalfOpenProbes, 1)},
		{"ejection.consecutive_errors", atLeast(u.Ejection.ConsecutiveErrors, 0)},
		{"ejection.base_time", positive(u.Ejection.BaseTime)},
		{"ejection.max_time", positive(u.Ejection.MaxTime)},
		{"ejection.max_percent", between(u.Ejection.MaxPercent, 0, 100)},
		{"retry.max_retries", atLeast(u.Retry.MaxRetries, 0)},
		{"retry.backoff", positive(u.Retry.Backoff)},
		{"retry.max_backoff", positive(u.Retry.MaxBackoff)},
		{"retry.budget_percent", between(u.Retry.BudgetPercent, 0, 100)},
		{"retry.min_retries", atLeast(u.Retry.MinRetries, 0)},
		{"probe.interval", positive(u.Probe.Interval)},
		{"probe.timeout", positive(u.Probe.Timeout)},
	}
	for _, ch := range checks {
		if ch.err != nil {
			return fmt.Errorf("config: %s%s: %w", prefix, ch.key, ch.err)
		}
	}
	return nil
}

func ratio(f float64) error {
	if f < 0 || f > 1 || f != f {
		return fmt.Errorf("%v is not a ratio; want 0 (off) to 1", f)
	}
	return nil
}

func between(v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("%d is out of range; want %d to %d", v, lo, hi)
	}
	return nil
}

// Upstream protocols, the values of UpstreamModel.Protocol.
const (
	ProtoKServeV2       = "kserve-v2"        // KServe V2 JSON tensors
	ProtoKServeV2Binary = "kserve-v2-binary" // KServe V2 with binary tensor data
	ProtoTFServing      = "tfserving"        // TF Serving REST, row ("instances") format
	ProtoPredict        = "predict"          // the seed's POST /predict {"features": [...]}, one row per call
)

// UpstreamModel is one upstream model version: the file
// <repository>/<model>/<version>/upstream.yaml. Its keys are those below
// plus any of the upstream.* defaults (client, breaker, ejection, retry,
// probe), which it overrides for this version.
type UpstreamModel struct {
	// Protocol is how the replicas are called: kserve-v2,
	// kserve-v2-binary, tfserving or predict.
	Protocol string `koanf:"protocol"`
	// Endpoints are the replicas' base URLs (http://host:port), all
	// serving the same model.
	Endpoints []string `koanf:"endpoints"`
	// Model and Version name the model on the upstream; an empty Model
	// is the local model name, an empty Version the upstream's default.
	Model   string `koanf:"model"`
	Version string `koanf:"version"`
	// Path replaces the predict protocol's path (default /predict).
	Path string `koanf:"path"`
	// MaxBatchSize is the most rows one upstream call carries; 0 means
	// the model's config.yaml max_batch_size (predict: always 1).
	MaxBatchSize int `koanf:"max_batch_size"`
	// Inputs and Outputs describe the tensors (name, datatype, dims
	// after the batch dimension). When empty they are fetched from the
	// upstream's metadata (kserve-v2, tfserving) at load, which then
	// needs a replica to answer; predict needs them.
	Inputs  []TensorConfig `koanf:"inputs"`
	Outputs []TensorConfig `koanf:"outputs"`

	Client   UpstreamClient   `koanf:"client"`
	Breaker  UpstreamBreaker  `koanf:"breaker"`
	Ejection UpstreamEjection `koanf:"ejection"`
	Retry    UpstreamRetry    `koanf:"retry"`
	Probe    UpstreamProbe    `koanf:"probe"`
}

// Policy returns the client, breaker, ejection, retry and probe settings
// of m.
func (m *UpstreamModel) Policy() Upstream {
	return Upstream{Client: m.Client, Breaker: m.Breaker, Ejection: m.Ejection, Retry: m.Retry, Probe: m.Probe}
}

// LoadUpstreamModel reads an upstream.yaml over the defaults def. An
// unknown key or a bad value is an error naming the key.
func LoadUpstreamModel(path string, def Upstream) (UpstreamModel, error) {
	m := UpstreamModel{Client: def.Client, Breaker: def.Breaker, Ejection: def.Ejection, Retry: def.Retry, Probe: def.Probe}
	if _, err := os.Stat(path); err != nil {
		return m, err
	}
	err := loadYAML(path, &m, m.Validate)
	return m, err
}

// Validate checks the values of m.
func (m *UpstreamModel) Validate() error {
	if err := oneOf(m.Protocol, ProtoKServeV2, ProtoKServeV2Binary, ProtoTFServing, ProtoPredict); err != nil {
		return fmt.Errorf("config: protocol: %w", err)
	}
	if len(m.Endpoints) == 0 {
		return fmt.Errorf("config: endpoints: empty; want the base URLs of the replicas, such as [http://10.0.0.5:8000]")
	}
	for i, e := range m.Endpoints {
		u, err := url.Parse(e)
		if err != nil || u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return fmt.Errorf("config: endpoints[%d]: %q; want http://host:port (https is not supported: run a TLS sidecar)", i, e)
		}
	}
	if m.MaxBatchSize < 0 {
		return fmt.Errorf("config: max_batch_size: %d is negative; want 0 (the model's) or more", m.MaxBatchSize)
	}
	if m.Protocol == ProtoPredict && m.MaxBatchSize > 1 {
		return fmt.Errorf("config: max_batch_size: %d; the predict protocol takes one row per call, want 1 or 0", m.MaxBatchSize)
	}
	if m.Protocol == ProtoPredict && (len(m.Inputs) != 1 || len(m.Outputs) != 1) {
		return fmt.Errorf("config: inputs and outputs: the predict protocol has no metadata; want one input (features) and one output (prediction) with datatype and dims")
	}
	if (len(m.Inputs) == 0) != (len(m.Outputs) == 0) {
		return fmt.Errorf("config: inputs and outputs: set both, or neither to fetch them from the upstream's metadata")
	}
	for _, list := range []struct {
		key   string
		specs []TensorConfig
	}{{"inputs", m.Inputs}, {"outputs", m.Outputs}} {
		for i, sp := range list.specs {
			if sp.Name == "" {
				return fmt.Errorf("config: %s[%d].name: empty; want the tensor's name on the upstream", list.key, i)
			}
			if sp.DataType == "" {
				return fmt.Errorf("config: %s[%d].datatype: empty; want a KServe V2 datatype such as FP32, INT64 or BYTES", list.key, i)
			}
			for _, d := range sp.Dims {
				if d == 0 || d < -1 {
					return fmt.Errorf("config: %s[%d].dims: %v; want the dimensions after the batch dimension, -1 for variable", list.key, i, sp.Dims)
				}
			}
		}
	}
	p := m.Policy()
	return p.Validate("")
}
