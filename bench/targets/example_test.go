package targets_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/coalesce-ml/coalesce/bench/targets"
)

// A run's server-side figures: scrape before and after, take the delta,
// summarise.
func ExampleSummary() {
	before, _ := targets.Parse(strings.NewReader(`
coalesce_requests_total{model="digits-mlp",protocol="predict",code="200"} 1000
coalesce_inference_calls_total{model="digits-mlp"} 1000
coalesce_inference_rows_total{model="digits-mlp"} 1000
`))
	after, _ := targets.Parse(strings.NewReader(`
coalesce_requests_total{model="digits-mlp",protocol="predict",code="200"} 5000
coalesce_inference_calls_total{model="digits-mlp"} 1500
coalesce_inference_rows_total{model="digits-mlp"} 5000
coalesce_batch_size_bucket{model="digits-mlp",le="4"} 250
coalesce_batch_size_bucket{model="digits-mlp",le="16"} 500
coalesce_batch_size_bucket{model="digits-mlp",le="+Inf"} 500
`))
	s := targets.Summary(targets.Delta(before, after))
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("%s %.4g\n", k, s[k])
	}
	// Output:
	// batch_size_p50 4
	// batch_size_p99 15.76
	// inference_calls 500
	// inference_rows 4000
	// mean_batch_size 8
	// requests 4000
}

// Measuring one server: start it, take CPU and metrics around the load,
// stop it.
func ExampleStartCoalesce() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tg, err := targets.StartCoalesce(ctx, "bin/coalesce", "models")
	if err != nil {
		log.Fatal(err) // names the problem and ends with the server's log tail
	}
	defer tg.Stop()
	cpu0, _ := targets.CPUSeconds(tg.PID)
	m0, _ := targets.Scrape(ctx, tg.MetricsURL)

	// ... send load to http://tg.Addr/predict ...

	cpu1, _ := targets.CPUSeconds(tg.PID)
	m1, _ := targets.Scrape(ctx, tg.MetricsURL)
	fmt.Println("server CPU seconds:", cpu1-cpu0)
	fmt.Println("server view:", targets.Summary(targets.Delta(m0, m1)))
	if err := tg.Stop(); err != nil {
		log.Print(err)
	}
}

// The Python peers are optional: a missing package is a skip with a
// reason, not a failure.
func ExamplePreparePython() {
	ctx := context.Background()
	py, err := targets.PreparePython(ctx, "../shared/peers", os.TempDir())
	var skip *targets.SkippedError
	switch {
	case errors.As(err, &skip):
		fmt.Println("flask and gunicorn skipped:", skip.Reason)
		return
	case err != nil:
		log.Fatal(err)
	}
	tg, err := py.StartGunicorn(ctx, "mlp_digits", 2)
	if err != nil {
		log.Fatal(err)
	}
	defer tg.Stop()
	body, _ := py.Body("mlp_digits")
	fmt.Println("POST", body, "to http://"+tg.Addr+"/predict")
}
