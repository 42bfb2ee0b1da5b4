package targets

import (
	"context"
	"net/http"
	"os"
)

// StartCoalesce runs the Coalesce binary bin serving modelsDir:
//
//	bin serve --http.addr A --admin.addr B --models.repository modelsDir --log.level warn extraArgs...
//
// with A and B free 127.0.0.1 ports, and returns once GET /v2/health/ready
// on A answers 200. extraArgs come last, so they override the flags before
// them. The returned Target's MetricsURL is http://B/metrics. The start is
// bounded by ctx and by 60s.
func StartCoalesce(ctx context.Context, bin, modelsDir string, extraArgs ...string) (*Target, error) {
	return StartCoalesceEnv(ctx, bin, modelsDir, nil, extraArgs...)
}

// StartCoalesceEnv is StartCoalesce with extra environment variables
// (NAME=value, e.g. GOMAXPROCS=1) added to this process's environment.
func StartCoalesceEnv(ctx context.Context, bin, modelsDir string, env []string, extraArgs ...string) (*Target, error) {
	var full []string
	if len(env) > 0 {
		full = append(os.Environ(), env...)
	}
	return startRetrying(ctx, func() (spec, error) {
		addrs, err := freeAddrs(2)
		if err != nil {
			return spec{}, err
		}
		args := append([]string{"serve",
			"--http.addr", addrs[0],
			"--admin.addr", addrs[1],
			"--models.repository", modelsDir,
			"--log.level", "warn",
		}, extraArgs...)
		return spec{
			name:       "coalesce",
			env:        full,
			path:       bin,
			args:       args,
			addr:       addrs[0],
			metricsURL: "http://" + addrs[1] + "/metrics",
			ready:      probe(http.MethodGet, "http://"+addrs[0]+"/v2/health/ready", "", nil),
		}, nil
	})
}
