package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/coalesce-ml/coalesce/config"
)

// Loading the configuration: defaults, then the YAML file, then COALESCE_*
// variables, then flags, each overriding the one before. Errors are one
// line naming the key, where it was set and what was expected.
func ExampleLoad() {
	dir, _ := os.MkdirTemp("", "coalesce-example")
	defer os.RemoveAll(dir)
	repo := filepath.Join(dir, "models")
	_ = os.Mkdir(repo, 0o755)
	file := filepath.Join(dir, "coalesce.yaml")
	_ = os.WriteFile(file, []byte("http:\n  addr: 127.0.0.1:8080\n  read_timeout: 2s\nlimits:\n  max_body_bytes: 4MiB\n"), 0o644)

	fs := config.Flags("coalesce")
	if err := fs.Parse([]string{"--config", file, "--models.repository", repo, "--http.addr", "127.0.0.1:9000"}); err != nil {
		fmt.Println(err)
		return
	}
	cfg, err := config.Load(fs, []string{"COALESCE_HTTP_READ_TIMEOUT=3s", "PATH=/bin"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("http.addr:", cfg.HTTP.Addr)                       // the flag wins over the file
	fmt.Println("http.read_timeout:", cfg.HTTP.ReadTimeout)        // the environment wins over the file
	fmt.Println("limits.max_body_bytes:", cfg.Limits.MaxBodyBytes) // from the file, with a unit
	fmt.Println("admin.addr:", cfg.Admin.Addr)                     // the default

	_, err = config.Load(fs, []string{"COALESCE_HTTP_READ_TIMEOUT=soon"})
	fmt.Println(err)
	// Output:
	// http.addr: 127.0.0.1:9000
	// http.read_timeout: 3s
	// limits.max_body_bytes: 4MiB
	// admin.addr: :9090
	// config: http.read_timeout (environment variable COALESCE_HTTP_READ_TIMEOUT): "soon" is not a duration; want a number with a unit, such as 500ms, 5s or 1m
}

// A model's config.yaml overrides the process-wide batching.* defaults;
// EffectiveFor is where the two meet.
func ExampleConfig_EffectiveFor() {
	cfg := config.Default()
	cfg.Batching.MaxQueueDelay = 2 * time.Millisecond

	dir, _ := os.MkdirTemp("", "coalesce-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "config.yaml")
	_ = os.WriteFile(path, []byte("max_batch_size: 16\ndefault_timeout: 250ms\n"), 0o644)
	m, err := config.LoadModel(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	eff := cfg.EffectiveFor(&m)
	fmt.Println("enabled:", eff.Enabled)                // batching.enabled
	fmt.Println("max_batch_size:", eff.MaxBatchSize)    // the model's
	fmt.Println("max_queue_delay:", eff.MaxQueueDelay)  // batching.max_queue_delay
	fmt.Println("default_timeout:", eff.DefaultTimeout) // the model's
	fmt.Println("priority_levels:", eff.PriorityLevels) // batching.priority_levels

	none := config.DefaultModelConfig()
	fmt.Println("without config.yaml, default_timeout:", cfg.EffectiveFor(&none).DefaultTimeout) // http.request_timeout
	// Output:
	// enabled: true
	// max_batch_size: 16
	// max_queue_delay: 2ms
	// default_timeout: 250ms
	// priority_levels: 1
	// without config.yaml, default_timeout: 5s
}
