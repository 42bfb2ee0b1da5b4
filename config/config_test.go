package config

import (
	"os"
	"path/filepath"
	"reflect"
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
// sets every key, each with a comment, and with the built-in default.
func TestExampleConfigDocumentsEveryKey(t *testing.T) {
	path := filepath.Join("..", "configs", "coalesce.yaml")
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
	c := Default()
	if err := Decode(k, &c); err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Models.Default = "digits-mlp" // the one deliberate difference
	if !reflect.DeepEqual(c, want) {
		t.Errorf("configs/coalesce.yaml = %+v; want the defaults %+v", c, want)
	}
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
