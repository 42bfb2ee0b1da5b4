package targets

import (
	"context"
	"net/http"
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
			path:       bin,
			args:       args,
			addr:       addrs[0],
			metricsURL: "http://" + addrs[1] + "/metrics",
			ready:      probe(http.MethodGet, "http://"+addrs[0]+"/v2/health/ready", "", nil),
		}, nil
	})
}
