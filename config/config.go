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
	Cache    Cache    `koanf:"cache"`
	Log      Log      `koanf:"log"`
	Shutdown Shutdown `koanf:"shutdown"`
	// Upstream holds the defaults of upstream model versions (see
	// UpstreamModel); each upstream.yaml may override them.
	Upstream Upstream `koanf:"upstream"`
	Auth     Auth     `koanf:"auth"`
	Rate     Rate     `koanf:"ratelimit"`
	TLS      TLS      `koanf:"tls"`
	GRPC     GRPC     `koanf:"grpc"`
	Drift    Drift    `koanf:"drift"`
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
	// one request (GET is served, others get 503) and close. The gRPC
	// port holds as many connections of its own (grpcserver), closing one
	// more when it is accepted.
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

// Cache holds the defaults of every model's response cache and in-flight
// de-duplication, and the byte budget all models' caches share; a model's
// config.yaml overrides the switches (cache, cache_bytes, cache_ttl,
// dedup).
type Cache struct {
	// Enabled caches every model's responses unless its config.yaml says
	// cache: false.
	Enabled bool `koanf:"enabled" help:"cache every model's responses (a model's config.yaml may say cache: true|false)"`
	// MaxBytes bounds the memory of every model's cache together, in
	// bytes: models with cache_bytes take theirs, the others with the
	// cache on share the rest equally.
	MaxBytes int `koanf:"max_bytes" help:"bytes all models' response caches may hold together (keys, outputs and bookkeeping)"`
	// TTL 0 means entries answer until evicted.
	TTL time.Duration `koanf:"ttl" help:"how long a cached response may answer (0 = until evicted)"`
	// Dedup makes a request identical to one in flight wait for its
	// answer, cache on or off.
	Dedup bool `koanf:"dedup" help:"compute identical concurrent requests once (a model's config.yaml may say dedup: true|false)"`
}

// Drift configures drift detection (package drift) for the model
// versions whose model directory holds a profile.json; the others are not
// sampled.
type Drift struct {
	Enabled bool `koanf:"enabled" help:"sample requests of models with a profile.json and export drift statistics"`
	// SampleRate is the share of requests (cache hits included) whose
	// inputs and outputs are copied to the aggregator.
	SampleRate float64 `koanf:"sample_rate" help:"share of requests sampled for drift, 0 to 1"`
	// Window is the span the statistics cover, in SubWindows sub-windows
	// that expire one at a time.
	Window     time.Duration `koanf:"window" help:"span of the sliding window drift statistics cover"`
	SubWindows int           `koanf:"sub_windows" help:"sub-windows of the window; the oldest expires as a new one starts"`
	MinSamples int           `koanf:"min_samples" help:"rows the window needs before PSI and JS distance are reported"`
	// MaxFeatures bounds the label cardinality: above it, only the
	// features (and outputs) drifting most are exported.
	MaxFeatures int `koanf:"max_features" help:"features (and outputs) exported per model version; above it the highest PSI only"`
	// Slots is the capacity of each version's hand-off ring; a sample
	// that finds it full is dropped (coalesce_drift_dropped_total).
	Slots    int           `koanf:"slots" help:"samples waiting for the aggregator per model version; more are dropped"`
	MaxRows  int           `koanf:"max_rows" help:"rows of one request a sample copies"`
	Interval time.Duration `koanf:"interval" help:"how often drift gauges are recomputed"`
	// Feedback keeps the sampled predictions of requests with an
	// X-Request-Id for POST /admin/feedback/{model}.
	Feedback        bool `koanf:"feedback" help:"keep sampled predictions by X-Request-Id for ground truth posted to /admin/feedback/{model}"`
	FeedbackEntries int  `koanf:"feedback_entries" help:"sampled predictions kept per model version for feedback; the oldest leave first"`
}

// Log configures structured logging.
type Log struct {
	Level  string `koanf:"level" help:"log level: debug, info, warn or error"`
	Format string `koanf:"format" help:"log format: json or text"`
	// AccessSample is the share of data-plane requests written to the
	// access log, from 0 (off, the default) to 1 (every request).
	AccessSample float64 `koanf:"access_sample" help:"share of requests written to the access log, 0 to 1 (0 = off)"`
}

// Shutdown configures graceful termination on SIGTERM or SIGINT.
type Shutdown struct {
	DrainDelay  time.Duration `koanf:"drain_delay" help:"after a signal, keep serving with readiness 503 this long before closing listeners"`
	GracePeriod time.Duration `koanf:"grace_period" help:"maximum time to finish in-flight requests after the drain delay"`
	// IdleTimeout is how long, after the drain delay, a keep-alive
	// connection may wait for its next request before it is closed.
	IdleTimeout time.Duration `koanf:"idle_timeout" help:"after the drain delay, keep-alive connections idle this long are closed (a request sent before gets its answer with Connection: close)"`
}

// Auth configures API keys (package auth). The configuration names the
// key file, never a key: keys stay out of flags, the environment and the
// process's command line.
type Auth struct {
	// KeysFile "" turns authentication off.
	KeysFile string `koanf:"keys_file" help:"API key file (one key per line, or YAML with name, key or sha256, models, tier, admin); empty = no authentication"`
	// AdminPlane requires a key marked admin: true on the admin plane.
	AdminPlane bool `koanf:"admin_plane" help:"require a key with admin: true from auth.keys_file on the admin plane (health stays open)"`
	// ReloadInterval is how often the key file (and the TLS files) are
	// checked for changes; 0 re-reads them only on SIGHUP.
	ReloadInterval time.Duration `koanf:"reload_interval" help:"check the key file and TLS files for changes this often (0 = only on SIGHUP)"`
}

// Bucket is a token bucket: Rate requests per second, Burst at once.
// Rate 0 means no limit.
type Bucket struct {
	Rate  float64 `koanf:"rate" help:"requests per second (0 = no limit)"`
	Burst int     `koanf:"burst" help:"requests allowed at once; at least 1 with a rate"`
}

// Rate configures rate limits (package ratelimit): every bucket a request
// passes must have a token, or it gets 429 before its body is decoded.
type Rate struct {
	// Shadow counts what would be limited without limiting.
	Shadow bool   `koanf:"shadow" help:"count requests over a limit (coalesce_ratelimit_shadow_total) without refusing them"`
	Global Bucket `koanf:"global"`
	Model  Bucket `koanf:"model"`
	// Key is the bucket of each API key whose tier the key file does not
	// define.
	Key Bucket `koanf:"key"`
	// Client is the bucket of each client address when auth is off:
	// meaningful only when clients connect directly (standalone), not
	// behind a proxy that makes every request come from one address.
	Client      Bucket        `koanf:"client"`
	MaxCallers  int           `koanf:"max_callers" help:"keys and client addresses tracked (each); beyond it the least recently seen is forgotten"`
	IdleTimeout time.Duration `koanf:"idle_timeout" help:"forget a key or client address unseen this long (its bucket restarts full)"`
}

// GRPC configures the KServe V2 gRPC front end (package grpcserver): the
// GRPCInferenceService, grpc.health.v1 and server reflection on a port of
// their own. Requests take the data plane's path, limits, keys and TLS;
// the largest message is limits.max_body_bytes.
type GRPC struct {
	// Addr "" leaves the gRPC front end off: a sidecar should not open a
	// port its pod does not expect (8081 is a common application port).
	Addr string `koanf:"addr" help:"gRPC listen address (host:port) of the KServe V2 gRPC API, health and reflection (empty = off; e.g. :8081)"`
	// MaxConcurrentStreams bounds the calls in flight on one connection.
	MaxConcurrentStreams int `koanf:"max_concurrent_streams" help:"most concurrent calls (HTTP/2 streams) on one gRPC connection"`
	// KeepaliveMinTime is keepalive enforcement: a client pinging more
	// often than this is disconnected (GOAWAY too_many_pings).
	KeepaliveMinTime time.Duration `koanf:"keepalive_min_time" help:"clients sending keepalive pings more often than this are disconnected"`
	// KeepaliveTime is how long a connection may be silent before the
	// server pings it to check the client is there.
	KeepaliveTime time.Duration `koanf:"keepalive_time" help:"ping a gRPC connection idle this long; close it when the ping is not answered within 20s"`
	// Reflection serves grpc.reflection.v1 so that grpcurl works without
	// the proto file.
	Reflection bool `koanf:"reflection" help:"serve gRPC server reflection (grpcurl list)"`
}

// TLS configures TLS on the data plane; both files or neither.
type TLS struct {
	CertFile string `koanf:"cert_file" help:"PEM certificate (chain) of the data plane; with tls.key_file turns TLS on, re-read on change"`
	KeyFile  string `koanf:"key_file" help:"PEM private key of tls.cert_file"`
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
		Cache:    Cache{MaxBytes: 64 << 20},
		Log:      Log{Level: "info", Format: "json"},
		Shutdown: Shutdown{DrainDelay: 0, GracePeriod: 25 * time.Second, IdleTimeout: time.Second},
		Upstream: DefaultUpstream(),
		Auth:     Auth{ReloadInterval: 5 * time.Second},
		Rate:     Rate{MaxCallers: 65536, IdleTimeout: 10 * time.Minute},
		GRPC:     GRPC{MaxConcurrentStreams: 256, KeepaliveMinTime: 10 * time.Second, KeepaliveTime: 2 * time.Hour, Reflection: true},
		Drift: Drift{Enabled: true, SampleRate: 0.1, Window: time.Hour, SubWindows: 12, MinSamples: 1000,
			MaxFeatures: 20, Slots: 1024, MaxRows: 1, Interval: 10 * time.Second, Feedback: true, FeedbackEntries: 10000},
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
		{"cache.max_bytes", atLeast(c.Cache.MaxBytes, 0)},
		{"cache.ttl", atLeast(int(c.Cache.TTL), 0)},
		{"log.level", oneOf(c.Log.Level, "debug", "info", "warn", "error")},
		{"log.format", oneOf(c.Log.Format, "json", "text")},
		{"log.access_sample", fraction(c.Log.AccessSample)},
		{"shutdown.drain_delay", atLeast(int(c.Shutdown.DrainDelay), 0)},
		{"shutdown.grace_period", positive(c.Shutdown.GracePeriod)},
		{"shutdown.idle_timeout", positive(c.Shutdown.IdleTimeout)},
		{"auth.keys_file", checkFile(c.Auth.KeysFile)},
		{"auth.admin_plane", requires(c.Auth.AdminPlane, c.Auth.KeysFile, "auth.keys_file")},
		{"auth.reload_interval", atLeast(int(c.Auth.ReloadInterval), 0)},
		{"ratelimit.global", c.Rate.Global.check()},
		{"ratelimit.model", c.Rate.Model.check()},
		{"ratelimit.key", c.Rate.Key.check()},
		{"ratelimit.client", c.Rate.Client.check()},
		{"ratelimit.max_callers", atLeast(c.Rate.MaxCallers, 16)},
		{"ratelimit.idle_timeout", atLeast(int(c.Rate.IdleTimeout), 0)},
		{"grpc.addr", optionalAddr(c.GRPC.Addr)},
		{"grpc.max_concurrent_streams", atLeast(c.GRPC.MaxConcurrentStreams, 1)},
		{"grpc.keepalive_min_time", atLeast(int(c.GRPC.KeepaliveMinTime), 0)},
		{"grpc.keepalive_time", positive(c.GRPC.KeepaliveTime)},
		{"tls.cert_file", checkFile(c.TLS.CertFile)},
		{"tls.key_file", checkFile(c.TLS.KeyFile)},
		{"tls.key_file", requires(c.TLS.CertFile != "", c.TLS.KeyFile, "tls.key_file")},
		{"tls.cert_file", requires(c.TLS.KeyFile != "", c.TLS.CertFile, "tls.cert_file")},
		{"drift.sample_rate", share(c.Drift.SampleRate)},
		{"drift.window", positive(c.Drift.Window)},
		{"drift.sub_windows", between(c.Drift.SubWindows, 1, 1440)},
		{"drift.min_samples", atLeast(c.Drift.MinSamples, 1)},
		{"drift.max_features", atLeast(c.Drift.MaxFeatures, 1)},
		{"drift.slots", between(c.Drift.Slots, 8, 1<<16)},
		{"drift.max_rows", between(c.Drift.MaxRows, 1, 1024)},
		{"drift.interval", positive(c.Drift.Interval)},
		{"drift.feedback_entries", between(c.Drift.FeedbackEntries, 1, 1<<22)},
	}
	for _, ch := range checks {
		if ch.err != nil {
			return fmt.Errorf("config: %s: %w", ch.key, ch.err)
		}
	}
	if err := c.Upstream.Validate("upstream."); err != nil {
		return err
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

func (b Bucket) check() error {
	switch {
	case b.Rate < 0:
		return fmt.Errorf("rate %g is negative; want requests per second, or 0 for no limit", b.Rate)
	case b.Burst < 0 || (b.Rate > 0 && b.Burst < 1):
		return fmt.Errorf("burst %d with rate %g; want a burst of at least 1", b.Burst, b.Rate)
	}
	return nil
}

// checkFile accepts "" (off) or a readable regular file.
func checkFile(p string) error {
	if p == "" {
		return nil
	}
	st, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("%w; want a readable file", err)
	}
	if st.IsDir() {
		return fmt.Errorf("%q is a directory; want a file", p)
	}
	return nil
}

// requires fails when on is set but the value of other is empty.
func requires(on bool, value, other string) error {
	if on && value == "" {
		return fmt.Errorf("needs %s to be set", other)
	}
	return nil
}

// optionalAddr is checkAddr for an address that may be empty (off).
func optionalAddr(a string) error {
	if a == "" {
		return nil
	}
	return checkAddr(a)
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

// share checks a proportion.
func share(v float64) error {
	if !(v >= 0 && v <= 1) {
		return fmt.Errorf("%v is out of range; want 0 to 1", v)
	}
	return nil
}

func atLeast(v, min int) error {
	if v < min {
		return fmt.Errorf("%d is too small; want at least %d", v, min)
	}
	return nil
}

func fraction(v float64) error {
	if !(v >= 0 && v <= 1) { // also rejects NaN
		return fmt.Errorf("%v is not a share; want a number from 0 to 1", v)
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
