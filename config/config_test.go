package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// setup makes a temp dir with a model repository "models" and returns it
// and a function that loads the config from the given YAML (written to
// c.yaml unless empty), environment and flags.
func setup(t *testing.T) (string, func(yml string, env []string, args ...string) (*Config, error)) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "models"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	return dir, func(yml string, env []string, args ...string) (*Config, error) {
		if yml != "" {
			if err := os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(yml), 0o644); err != nil {
				t.Fatal(err)
			}
			args = append([]string{"--config", "c.yaml"}, args...)
		}
		fs := Flags("test")
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		return Load(fs, env)
	}
}

func TestPrecedence(t *testing.T) {
	_, load := setup(t)
	const yml = "http:\n  addr: 127.0.0.1:1001\n  read_timeout: 3s\nlimits:\n  max_json_depth: 7\n  max_body_bytes: 1000\n"
	tests := []struct {
		name string
		env  []string
		args []string
		want func(c *Config) bool
	}{
		{"file over defaults", nil, nil, func(c *Config) bool {
			return c.HTTP.Addr == "127.0.0.1:1001" && c.HTTP.ReadTimeout == 3*time.Second && c.Limits.MaxJSONDepth == 7 && c.Admin.Addr == ":9090"
		}},
		{"env over file", []string{"COALESCE_HTTP_ADDR=127.0.0.1:1002", "COALESCE_LIMITS_MAX_JSON_DEPTH=9", "COALESCE_ADMIN_PPROF=true", "PATH=/bin"}, nil, func(c *Config) bool {
			return c.HTTP.Addr == "127.0.0.1:1002" && c.Limits.MaxJSONDepth == 9 && c.Admin.Pprof && c.HTTP.ReadTimeout == 3*time.Second
		}},
		{"flags over env", []string{"COALESCE_HTTP_ADDR=127.0.0.1:1002"}, []string{"--http.addr", "127.0.0.1:1003", "--http.read_timeout=250ms"}, func(c *Config) bool {
			return c.HTTP.Addr == "127.0.0.1:1003" && c.HTTP.ReadTimeout == 250*time.Millisecond && c.Limits.MaxBodyBytes == 1000
		}},
		{"unset flags keep file values", nil, []string{"--admin.addr", "127.0.0.1:1004"}, func(c *Config) bool {
			return c.HTTP.Addr == "127.0.0.1:1001" && c.Admin.Addr == "127.0.0.1:1004" && c.Limits.MaxJSONDepth == 7
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(yml, tt.env, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.want(c) {
				t.Errorf("got %+v", *c)
			}
		})
	}
}

func TestDefaultsWithoutFile(t *testing.T) {
	_, load := setup(t)
	c, err := load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := Default(); !reflect.DeepEqual(*c, want) {
		t.Errorf("Load() = %+v; want the defaults %+v", *c, want)
	}
}

func TestNamedFileMissing(t *testing.T) {
	_, load := setup(t)
	_, err := load("", nil, "--config", "nope.yaml")
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("Load(--config nope.yaml) = %v; want an error naming the file", err)
	}
}

func TestValidationErrors(t *testing.T) {
	_, load := setup(t)
	tests := []struct {
		name string
		yml  string
		env  []string
		args []string
		want []string // substrings of the one-line error
	}{
		{"unknown key", "http:\n  adr: :1\n", nil, nil, []string{`unknown key "http.adr"`, "addr"}},
		{"unknown section", "htp:\n  addr: :1\n", nil, nil, []string{`unknown key "htp.addr"`, "http"}},
		{"malformed duration in file", "http:\n  read_timeout: 5x\n", nil, nil, []string{"http.read_timeout", `"5x" is not a duration`}},
		{"duration without unit", "http:\n  read_timeout: 5\n", nil, nil, []string{"http.read_timeout", "no unit"}},
		{"malformed duration in env", "", []string{"COALESCE_SHUTDOWN_GRACE_PERIOD=soon"}, nil, []string{"shutdown.grace_period", "not a duration"}},
		{"malformed duration flag", "", nil, []string{"--http.idle_timeout", "x"}, []string{"http.idle_timeout"}},
		{"not an integer", "limits:\n  max_body_bytes: lots\n", nil, nil, []string{"limits.max_body_bytes", "not an integer"}},
		{"not a boolean", "", []string{"COALESCE_ADMIN_PPROF=maybe"}, nil, []string{"admin.pprof", "true or false"}},
		{"unknown env var", "", []string{"COALESCE_HTTP_ADR=:1"}, nil, []string{"COALESCE_HTTP_ADR", "not a configuration key"}},
		{"bad address", "", nil, []string{"--http.addr", "8080"}, []string{"http.addr", "host:port"}},
		{"same addresses", "", nil, []string{"--http.addr", ":7000", "--admin.addr", ":7000"}, []string{"admin.addr", "also http.addr"}},
		{"zero timeout", "", nil, []string{"--http.request_timeout", "0s"}, []string{"http.request_timeout", "not positive"}},
		{"missing repository", "", nil, []string{"--models.repository", "nowhere"}, []string{"models.repository", "does not exist"}},
		{"bad log level", "log:\n  level: loud\n", nil, nil, []string{"log.level", "debug"}},
		{"tiny body limit", "", []string{"COALESCE_LIMITS_MAX_BODY_BYTES=1"}, nil, []string{"limits.max_body_bytes", "at least"}},
		{"negative concurrency", "", nil, []string{"--models.concurrency", "-1"}, []string{"models.concurrency"}},
		{"env value names its variable", "", []string{"COALESCE_HTTP_READ_TIMEOUT=fast"}, nil, []string{"http.read_timeout", "COALESCE_HTTP_READ_TIMEOUT", `"fast" is not a duration`}},
		{"file value names its file", "http:\n  idle_timeout: 1x\n", nil, nil, []string{"http.idle_timeout", "file c.yaml"}},
		{"empty value", "http:\n  read_timeout:\n", nil, nil, []string{"http.read_timeout", "empty"}},
		{"section given a value", "limits: 3\n", nil, nil, []string{"limits", "not a mapping", "max_body_bytes"}},
		{"fraction for an integer", "limits:\n  max_json_depth: 7.5\n", nil, nil, []string{"limits.max_json_depth", "not a whole number"}},
		{"list for an integer", "limits:\n  max_json_depth: [7]\n", nil, nil, []string{"limits.max_json_depth", "not an integer"}},
		{"size with a bad unit", "", []string{"COALESCE_LIMITS_MAX_BODY_BYTES=16MiBs"}, nil, []string{"limits.max_body_bytes", "COALESCE_LIMITS_MAX_BODY_BYTES", "16MiB"}},
		{"size flag", "", nil, []string{"--limits.max_body_bytes", "lots"}, []string{"limits.max_body_bytes", "not an integer"}},
		{"negative size", "limits:\n  max_body_bytes: -1\n", nil, nil, []string{"limits.max_body_bytes", "not a whole number of bytes"}},
		{"service-link lookalike", "", []string{"COALESCE_PORT=9000"}, nil, []string{"COALESCE_PORT", "not a configuration key"}},
		{"port key that does not exist", "", []string{"COALESCE_HTTP_PORT=9000"}, nil, []string{"COALESCE_HTTP_PORT", "not a configuration key"}},
		{"budget below one body", "limits:\n  max_body_bytes: 1000000\n  inflight_bytes: 999999\n", nil, nil, []string{"limits.inflight_bytes", "smaller than limits.max_body_bytes"}},
		{"missing key file", "", nil, []string{"--auth.keys_file", "/nonexistent/keys"}, []string{"auth.keys_file", "want a readable file"}},
		{"admin key without a key file", "", nil, []string{"--auth.admin_plane"}, []string{"auth.admin_plane", "needs auth.keys_file"}},
		{"rate without burst", "ratelimit:\n  global: {rate: 10}\n", nil, nil, []string{"ratelimit.global", "burst of at least 1"}},
		{"negative rate", "", []string{"COALESCE_RATELIMIT_MODEL_RATE=-1"}, nil, []string{"ratelimit.model", "negative"}},
		{"tls cert without key", "", nil, []string{"--tls.cert_file", "c.yaml"}, []string{"tls.key_file", "needs tls.key_file"}},
		{"zero drain idle", "", nil, []string{"--shutdown.idle_timeout", "0s"}, []string{"shutdown.idle_timeout", "not positive"}},
		{"negative cache budget", "", nil, []string{"--cache.max_bytes", "-1"}, []string{"cache.max_bytes", "at least 0"}},
		{"negative cache ttl", "cache:\n  ttl: -1s\n", nil, nil, []string{"cache.ttl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(tt.yml, tt.env, tt.args...)
			if err == nil {
				t.Fatalf("Load() = nil error; want one containing %q", tt.want)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans several lines: %q", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

// TestExampleConfigDocumentsEveryKey checks that configs/coalesce.yaml
// sets every key, each with a comment, and that loading it gives exactly
// the built-in defaults: coalesce reads it from the working directory
// when present, so a value there that differs from the code would change
// what a user who never asked for the file gets.
func TestExampleConfigDocumentsEveryKey(t *testing.T) {
	path, err := filepath.Abs(filepath.Join("..", "configs", "coalesce.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k := koanf.New(".")
	if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	for _, key := range Keys() {
		if !k.Exists(key) {
			t.Errorf("configs/coalesce.yaml does not set %s", key)
			continue
		}
		leaf := key[strings.LastIndexByte(key, '.')+1:] + ":"
		for i, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(l), leaf) && (i == 0 || !strings.HasPrefix(strings.TrimSpace(lines[i-1]), "#")) {
				t.Errorf("configs/coalesce.yaml: %s has no comment above it", key)
			}
		}
	}
	_, load := setup(t)
	c, err := load("", nil, "--config", path)
	if err != nil {
		t.Fatal(err)
	}
	if want := Default(); !reflect.DeepEqual(*c, want) {
		t.Errorf("Load(--config configs/coalesce.yaml) = %+v; want exactly the defaults %+v", *c, want)
	}
}

func TestSizes(t *testing.T) {
	_, load := setup(t)
	f := func(yml string, env []string, args []string, want ByteSize) {
		t.Helper()
		c, err := load(yml, env, args...)
		if err != nil {
			t.Fatalf("Load(%q, %q, %q): %v", yml, env, args, err)
		}
		if c.Limits.MaxBodyBytes != want {
			t.Errorf("Load(%q, %q, %q): max_body_bytes = %d; want %d", yml, env, args, c.Limits.MaxBodyBytes, want)
		}
	}
	f("limits:\n  max_body_bytes: 4096\n", nil, nil, 4096)
	f("limits:\n  max_body_bytes: 4MB\n", nil, nil, 4_000_000)
	f("limits:\n  max_body_bytes: 4 KiB\n", nil, nil, 4096)
	f("", []string{"COALESCE_LIMITS_MAX_BODY_BYTES=2GiB"}, nil, 2<<30)
	f("", []string{"COALESCE_LIMITS_MAX_BODY_BYTES=1000"}, nil, 1000)
	f("", nil, []string{"--limits.max_body_bytes", "1kB"}, 1000)
	f("", nil, []string{"--limits.max_body_bytes=100B"}, 100)
	for b, want := range map[ByteSize]string{16 << 20: "16MiB", 1000: "1000", 3 << 10: "3KiB", 0: "0", 1 << 30: "1GiB"} {
		if got := b.String(); got != want {
			t.Errorf("ByteSize(%d).String() = %q; want %q", int(b), got, want)
		}
		if back, err := ParseByteSize(want); err != nil || back != b {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", want, back, err, b)
		}
	}
}

// TestKubernetesServiceLinks checks that the variables Kubernetes injects
// for a Service named coalesce (or coalesce-something) in the pod's
// namespace do not stop start-up, while the configuration still applies.
func TestKubernetesServiceLinks(t *testing.T) {
	_, load := setup(t)
	env := []string{
		"COALESCE_PORT=tcp://10.96.12.34:8080",
		"COALESCE_PORT_8080_TCP=tcp://10.96.12.34:8080",
		"COALESCE_PORT_8080_TCP_PROTO=tcp",
		"COALESCE_PORT_8080_TCP_PORT=8080",
		"COALESCE_PORT_8080_TCP_ADDR=10.96.12.34",
		"COALESCE_PORT_9090_UDP_ADDR=fd00::1",
		"COALESCE_SERVICE_HOST=10.96.12.34",
		"COALESCE_SERVICE_PORT=8080",
		"COALESCE_SERVICE_PORT_HTTP=8080",
		"COALESCE_SERVICE_PORT_ADMIN_METRICS=9090",
		"COALESCE_ADMIN_SERVICE_HOST=10.96.0.7", // a Service named coalesce-admin
		"COALESCE_ADMIN_PORT=tcp://10.96.0.7:9090",
		"COALESCE_HTTP_ADDR=127.0.0.1:1005",
	}
	c, err := load("", env)
	if err != nil {
		t.Fatalf("Load(service links) = %v; want them ignored", err)
	}
	if c.HTTP.Addr != "127.0.0.1:1005" {
		t.Errorf("http.addr = %q; want COALESCE_HTTP_ADDR still applied", c.HTTP.Addr)
	}
	// The names with values of another shape are not service links.
	for _, v := range []string{"COALESCE_PORT=8080", "COALESCE_SERVICE_HOST=coalesce", "COALESCE_PORT_8080_TCP_PROTO=http", "COALESCE_SERVICE_PORT=http", "COALESCE_PORT_8080_TCP=tcp://10.96.12.34"} {
		name, _, _ := strings.Cut(v, "=")
		if _, err := load("", []string{v}); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Load(%s) = %v; want an error naming %s", v, err, name)
		}
	}
}

// TestYAMLErrorLines checks that a YAML syntax error names the line it is
// on. go.yaml.in/yaml/v3 reports parser errors one line early (and none on
// the first line); scanner errors it reports right.
func TestYAMLErrorLines(t *testing.T) {
	_, load := setup(t)
	f := func(yml string, line int, problem string) {
		t.Helper()
		_, err := load(yml, nil)
		want := "c.yaml: yaml: line " + strconv.Itoa(line) + ": "
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), problem) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Load(%q) = %v; want one line containing %q and %q", yml, err, want, problem)
		}
	}
	f("http:\n  addr: \":1\"\n  read_timeout: 5s\n   write_timeout: 3s\n", 4, "mapping values are not allowed")
	f("http:\n  addr: \":1\"\n\tread_timeout: 5s\n", 3, "cannot start any token")
	f("http:\n  addr: [\":1\"\nlog:\n  level: info\n", 2, "did not find expected ',' or ']'")
	f("log:\n  level: info\nhttp:\n  addr: \":1\"\n - x\n", 5, "did not find expected key")
	f("log:\n  level: info\nhttp:\n  - \":1\"\n  read_timeout: 5s\n", 5, "did not find expected '-' indicator")
	f("[1, 2\n", 1, "did not find expected ',' or ']'")
	f("log:\n  level: info\nlog:\n  format: json\n", 3, `mapping key "log" already defined at line 1`)
	_, err := LoadModel(writeTemp(t, "max_batch_size: 1\npredict:\n  labels: [a, b\n"))
	if err == nil || !strings.Contains(err.Error(), "line 3: ") {
		t.Errorf("LoadModel(unclosed list on line 3) = %v; want line 3", err)
	}
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFlagsCoverEveryKey(t *testing.T) {
	fs := Flags("test")
	for _, key := range Keys() {
		f := fs.Lookup(key)
		if f == nil {
			t.Errorf("no flag --%s", key)
			continue
		}
		if !strings.Contains(f.Usage, EnvName(key)) {
			t.Errorf("--%s usage %q does not name %s", key, f.Usage, EnvName(key))
		}
	}
}

func TestLoadModel(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	m, err := LoadModel(write("max_batch_size: 16\npredict:\n  output: label\n  labels: [a, b]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.MaxBatchSize != 16 || m.Predict.Output != "label" || m.Predict.Transform != "none" || !reflect.DeepEqual(m.Predict.Labels, []string{"a", "b"}) {
		t.Errorf("LoadModel() = %+v", m)
	}
	m, err = LoadModel(write("batching: false\nmax_queue_delay: 3ms\npreferred_batch_size: 8\nqueue_capacity: 10\ndefault_timeout: 2s\npriority_levels: 3\n"))
	if err != nil || m.Batching == nil || *m.Batching || m.MaxQueueDelay != 3*time.Millisecond || m.PreferredBatchSize != 8 || m.QueueCapacity != 10 || m.DefaultTimeout != 2*time.Second || m.PriorityLevels != 3 {
		t.Errorf("LoadModel(batching overrides) = %+v, %v", m, err)
	}
	m, err = LoadModel(write("inputs:\n  - name: x\n    datatype: FP64\n    dims: [30]\noutputs:\n  - name: label\n  - name: margin\n"))
	if err != nil {
		t.Fatal(err)
	}
	wantIO := []TensorConfig{{Name: "x", DataType: "FP64", Dims: []int64{30}}}
	if !reflect.DeepEqual(m.Inputs, wantIO) || !reflect.DeepEqual(m.Outputs, []TensorConfig{{Name: "label"}, {Name: "margin"}}) {
		t.Errorf("LoadModel(inputs/outputs) = %+v %+v", m.Inputs, m.Outputs)
	}
	m, err = LoadModel(write("cache: true\ncache_bytes: 1048576\ncache_ttl: 5m\ndedup: false\n"))
	if err != nil || m.Cache == nil || !*m.Cache || m.CacheBytes != 1<<20 || m.CacheTTL != 5*time.Minute || m.Dedup == nil || *m.Dedup {
		t.Errorf("LoadModel(cache keys) = %+v, %v", m, err)
	}
	if m, err := LoadModel(filepath.Join(dir, "absent.yaml")); err != nil || m.Predict.Transform != "none" || m.Batching != nil {
		t.Errorf("LoadModel(absent) = %+v, %v; want the defaults", m, err)
	}
	for _, bad := range []struct{ yml, want string }{
		{"max_batch_sise: 3\n", `unknown key "max_batch_sise"`},
		{"max_batch_size: -1\n", "max_batch_size"},
		{"predict:\n  transform: softmax\n", "predict.transform"},
		{"predict:\n  labels: [1, [2]]\n", "predict.labels"},
		{"batching: maybe\n", "batching"},
		{"max_queue_delay: -1s\n", "max_queue_delay"},
		{"inputs:\n  - name: x\n    dtype: FP32\n", `unknown key "dtype"`},
		{"inputs:\n  - name: x\n    datatype: INT8\n", "inputs[0].datatype"},
		{"inputs:\n  - name: x\n    dims: [0]\n", "inputs[0].dims"},
		{"inputs:\n  - name: x\n    dims: [a]\n", "inputs"},
		{"inputs:\n  - datatype: FP32\n", "inputs[0].name"},
		{"inputs: [a]\n", "not a mapping"},
		{"inputs:\n  - name: a\n  - name: b\n", "one input"},
		{"outputs:\n  - name: label\n    dims: [2]\n", "outputs[0]"},
		{"inputs: x\n", "inputs: \"x\" is not a list; want a list of mappings of name, datatype, dims"},
		{"inputs:\n  - name: x\n    dims: 30\n", "inputs[0].dims: 30 is not a list; want a list of whole numbers"},
		{"predict:\n  labels: {a: 1}\n", "predict.labels: map[a:1] is not a list; want a list of strings"},
		{"max_batch_size: 1.5\n", "max_batch_size: 1.5 is not a whole number"},
		{"description:\n", "description: value is empty"},
		{"cache_bytes: -1\n", "cache_bytes"},
		{"cache_ttl: -1s\n", "cache_ttl"},
		{"cache: false\ncache_bytes: 10\n", "cache_bytes: 10 while cache is false"},
		{"dedup: often\n", "dedup"},
	} {
		if _, err := LoadModel(write(bad.yml)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("LoadModel(%q) = %v; want an error containing %q", bad.yml, err, bad.want)
		}
	}
}
