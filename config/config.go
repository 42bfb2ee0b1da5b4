// Package config holds Coalesce's typed configuration and loads it with
// koanf: defaults in code, then a YAML file, then COALESCE_* environment
// variables, then command-line flags, each overriding the one before.
//
// Every key has exactly one spelling, its dotted koanf path ("http.addr"),
// used as the YAML path, the flag name (--http.addr) and, upper-cased with
// dots turned into underscores, the environment variable
// (COALESCE_HTTP_ADDR). Unknown keys and values of the wrong type stop
// loading with an error naming the key and what was expected.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Config is the whole configuration of a Coalesce process. The zero value
// is not valid; start from Default.
type Config struct {
	HTTP     HTTP     `koanf:"http"`
	Admin    Admin    `koanf:"admin"`
	Models   Models   `koanf:"models"`
	Limits   Limits   `koanf:"limits"`
	Batching Batching `koanf:"batching"`
	Log      Log      `koanf:"log"`
	Shutdown Shutdown `koanf:"shutdown"`
}

// HTTP configures the data plane (predict, KServe V2, TF Serving, health).
type HTTP struct {
	Addr           string        `koanf:"addr" help:"data-plane listen address (host:port)"`
	ReadTimeout    time.Duration `koanf:"read_timeout" help:"maximum time to read one request, headers and body"`
	WriteTimeout   time.Duration `koanf:"write_timeout" help:"maximum time to write one response"`
	IdleTimeout    time.Duration `koanf:"idle_timeout" help:"keep-alive connections idle longer than this are closed"`
	RequestTimeout time.Duration `koanf:"request_timeout" help:"default deadline of a request from arrival to answer"`
	// MaxConnections is a soft limit: a new connection beyond it closes
	// the longest-idle keep-alive connection; when none is idle it is
	// admitted into a small reserve (max_connections/16 + 16) to answer
	// one request (GET is served, others get 503) and close.
	MaxConnections int `koanf:"max_connections" help:"open client connections; beyond it the longest-idle keep-alive connection is closed to admit a new one"`
	// MaxInflight bounds the POST requests being handled at once; 0 means
	// no bound beyond max_connections.
	MaxInflight int `koanf:"max_inflight" help:"most POST requests handled at once; more are answered 503 at once (0 = no limit)"`
}

// Admin configures the admin plane (/metrics, /debug/pprof).
type Admin struct {
	Addr  string `koanf:"addr" help:"admin listen address (host:port) for /metrics and pprof"`
	Pprof bool   `koanf:"pprof" help:"serve /debug/pprof/ on the admin address"`
}

// Models configures the model repository.
type Models struct {
	Repository string `koanf:"repository" help:"model repository directory: <name>/config.yaml and <name>/<version>/model.onnx"`
	Default    string `koanf:"default" help:"model served by POST /predict without ?model= (empty: the first model by name)"`
	// Concurrency is how many inference calls one model runs at once;
	// 0 means one per core (GOMAXPROCS).
	Concurrency int `koanf:"concurrency" help:"inference calls one model runs at once (0 = one per core)"`
	// Kernels forces the CPU engine's matrix kernels; "auto" picks the
	// fastest this CPU supports.
	Kernels string `koanf:"kernels" help:"CPU engine kernels: auto, avx512, avx2 or generic"`
	// Control says who changes the served versions after start (Triton's
	// model control modes): "none" nobody, "poll" the repository watcher
	// (and SIGHUP), "explicit" only the repository API.
	Control string `koanf:"control" help:"model control mode: none (load once at start), poll (watch the repository; SIGHUP rescans) or explicit (only the repository API loads and unloads)"`
	// SettleDelay is how long the repository must be quiet after a
	// change before poll mode loads it, so that a file still being
	// copied is not loaded half-written.
	SettleDelay time.Duration `koanf:"settle_delay" help:"poll mode: quiet time after the last change in the repository before it is loaded"`
}

// Limits bound what one request may ask of the server.
type Limits struct {
	MaxBodyBytes      ByteSize `koanf:"max_body_bytes" help:"largest request body, in bytes or with a unit (16MiB); larger gets 413"`
	MaxTensorElements int      `koanf:"max_tensor_elements" help:"largest number of elements in one input tensor"`
	MaxJSONDepth      int      `koanf:"max_json_depth" help:"deepest nesting of JSON arrays and objects in a request"`
	AllowNonFinite    bool     `koanf:"allow_non_finite" help:"accept NaN and ±Inf in inputs (rejected with 400 by default)"`
	// InflightBytes bounds the request body bytes being read and decoded
	// at once; 0 derives it from the memory limit
	// (memlimit.InflightBudget).
	InflightBytes ByteSize `koanf:"inflight_bytes" help:"request body bytes read and decoded at once, in bytes or with a unit; a body that does not fit gets 503 before it is read (0 = a quarter of the memory limit, 16 MiB to 4 GiB; 1 GiB without a limit)"`
}

// Batching holds the defaults of every model's adaptive batcher; a
// model's config.yaml overrides them.
type Batching struct {
	Enabled bool `koanf:"enabled" help:"coalesce concurrent requests into batches (false: every request runs alone)"`
	// MaxBatchSize 0 means the model's max_batch_size, else 64.
	MaxBatchSize int `koanf:"max_batch_size" help:"most rows in one batch (0 = the model's max_batch_size, else 64)"`
	// MaxQueueDelay is the longest a request waits for company; the
	// batcher waits only when its cost model says waiting pays.
	MaxQueueDelay time.Duration `koanf:"max_queue_delay" help:"longest a request may wait for others to join its batch"`
	// PreferredBatchSize 0 means: wait only as the cost model justifies.
	PreferredBatchSize int `koanf:"preferred_batch_size" help:"rows a batch waits for at any load, within max_queue_delay (0 = only what the learnt cost model justifies)"`
	// QueueCapacity 0 means 16 × the batch size.
	QueueCapacity int `koanf:"queue_capacity" help:"queue bound in rows; a full queue answers 503 (0 = 16 x max_batch_size)"`
	// DefaultTimeout 0 means http.request_timeout.
	DefaultTimeout time.Duration `koanf:"default_timeout" help:"request deadline when the client sets none (0 = http.request_timeout)"`
	PriorityLevels int           `koanf:"priority_levels" help:"number of priority levels, 1 = highest"`
}

// Log configures structured logging.
type Log struct {
	Level  string `koanf:"level" help:"log level: debug, info, warn or error"`
	Format string `koanf:"format" help:"log format: json or text"`
}

// Shutdown configures graceful termination on SIGTERM or SIGINT.
type Shutdown struct {
	DrainDelay  time.Duration `koanf:"drain_delay" help:"after a signal, keep serving with readiness 503 this long before closing listeners"`
	GracePeriod time.Duration `koanf:"grace_period" help:"maximum time to finish in-flight requests after the drain delay"`
	// IdleTimeout is how long, after the drain delay, a keep-alive
	// connection may wait for its next request before it is closed.
	IdleTimeout time.Duration `koanf:"idle_timeout" help:"after the drain delay, keep-alive connections idle this long are closed (a request sent before gets its answer with Connection: close)"`
}

// Default returns the built-in defaults, the lowest layer of configuration.
func Default() Config {
	return Config{
		HTTP: HTTP{
			Addr:           ":8080",
			ReadTimeout:    10 * time.Second,
			WriteTimeout:   10 * time.Second,
			IdleTimeout:    60 * time.Second,
			RequestTimeout: 5 * time.Second,
			MaxConnections: 10000,
			MaxInflight:    1024,
		},
		Admin:  Admin{Addr: ":9090"},
		Models: Models{Repository: "models", Kernels: "auto", Control: "none", SettleDelay: 2 * time.Second},
		Limits: Limits{
			MaxBodyBytes:      16 << 20,
			MaxTensorElements: 4 << 20,
			MaxJSONDepth:      16,
		},
		Batching: Batching{Enabled: true, MaxQueueDelay: time.Millisecond, PriorityLevels: 1},
		Log:      Log{Level: "info", Format: "json"},
		Shutdown: Shutdown{DrainDelay: 0, GracePeriod: 25 * time.Second, IdleTimeout: time.Second},
	}
}

// Validate checks every value and returns an error naming the first
// offending key and what was expected.
func (c *Config) Validate() error {
	checks := []struct {
		key string
		err error
	}{
		{"http.addr", checkAddr(c.HTTP.Addr)},
		{"admin.addr", checkAddr(c.Admin.Addr)},
		{"http.read_timeout", positive(c.HTTP.ReadTimeout)},
		{"http.write_timeout", positive(c.HTTP.WriteTimeout)},
		{"http.idle_timeout", positive(c.HTTP.IdleTimeout)},
		{"http.request_timeout", positive(c.HTTP.RequestTimeout)},
		{"http.max_connections", atLeast(c.HTTP.MaxConnections, 1)},
		{"http.max_inflight", atLeast(c.HTTP.MaxInflight, 0)},
		{"models.repository", checkDir(c.Models.Repository)},
		{"models.concurrency", atLeast(c.Models.Concurrency, 0)},
		{"models.kernels", oneOf(c.Models.Kernels, "auto", "avx512", "avx2", "generic")},
		{"models.control", oneOf(c.Models.Control, "none", "poll", "explicit")},
		{"models.settle_delay", positive(c.Models.SettleDelay)},
		{"limits.max_body_bytes", atLeast(int(c.Limits.MaxBodyBytes), 64)},
		{"limits.max_tensor_elements", atLeast(c.Limits.MaxTensorElements, 1)},
		{"limits.max_json_depth", atLeast(c.Limits.MaxJSONDepth, 3)},
		{"limits.inflight_bytes", inflightBytes(int(c.Limits.InflightBytes), int(c.Limits.MaxBodyBytes))},
		{"batching.max_batch_size", atLeast(c.Batching.MaxBatchSize, 0)},
		{"batching.max_queue_delay", atLeast(int(c.Batching.MaxQueueDelay), 0)},
		{"batching.preferred_batch_size", atLeast(c.Batching.PreferredBatchSize, 0)},
		{"batching.queue_capacity", atLeast(c.Batching.QueueCapacity, 0)},
		{"batching.default_timeout", atLeast(int(c.Batching.DefaultTimeout), 0)},
		{"batching.priority_levels", atLeast(c.Batching.PriorityLevels, 1)},
		{"log.level", oneOf(c.Log.Level, "debug", "info", "warn", "error")},
		{"log.format", oneOf(c.Log.Format, "json", "text")},
		{"shutdown.drain_delay", atLeast(int(c.Shutdown.DrainDelay), 0)},
		{"shutdown.grace_period", positive(c.Shutdown.GracePeriod)},
		{"shutdown.idle_timeout", positive(c.Shutdown.IdleTimeout)},
	}
	for _, ch := range checks {
		if ch.err != nil {
			return fmt.Errorf("config: %s: %w", ch.key, ch.err)
		}
	}
	if c.HTTP.Addr == c.Admin.Addr {
		return fmt.Errorf("config: admin.addr: %q is also http.addr; want a different address", c.Admin.Addr)
	}
	return nil
}

// inflightBytes accepts 0 (derived) or a budget that admits at least one
// body of the largest size accepted.
func inflightBytes(v, maxBody int) error {
	if v != 0 && v < maxBody {
		return fmt.Errorf("%d is smaller than limits.max_body_bytes (%d); want 0 (derived from the memory limit) or at least %d", v, maxBody, maxBody)
	}
	return nil
}

func checkAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil || port == "" {
		return fmt.Errorf("%q is not a listen address; want host:port such as :8080 or 127.0.0.1:8080", a)
	}
	_ = host
	return nil
}

func positive(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%v is not positive; want a duration such as 500ms or 5s", d)
	}
	return nil
}

func atLeast(v, min int) error {
	if v < min {
		return fmt.Errorf("%d is too small; want at least %d", v, min)
	}
	return nil
}

func oneOf(v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("%q is not allowed; want one of %v", v, allowed)
}

func checkDir(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			abs, _ := filepath.Abs(p)
			return fmt.Errorf("directory %q does not exist; want the model repository directory", abs)
		}
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%q is not a directory; want the model repository directory", p)
	}
	return nil
}
