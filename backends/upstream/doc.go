// Package upstream is the backend kind whose model runs on remote model
// servers: Coalesce in front of existing KServe V2 (Triton, MLServer,
// another Coalesce), TF Serving or Flask-style /predict servers, batching,
// retrying and failing fast.
//
// A model version is an upstream when its version directory holds
// upstream.yaml (File) instead of a model file; Loader loads it. The file
// names the protocol (kserve-v2, kserve-v2-binary, tfserving, predict),
// the replicas' base URLs, the remote model name and version, the batch
// limit and the tensors (or they are fetched from the replicas' metadata
// at load), and may override any of the process's upstream.* defaults:
// pooled client, breaker, ejection, retry and probe settings.
//
// Guarantees:
//
//   - One call per batch goes to the replica with the fewest calls in
//     flight among those not ejected and whose circuit breaker
//     (sony/gobreaker, one per replica) admits it, over pooled keep-alive
//     connections (fasthttp.HostClient), with the batch's deadline or the
//     per-try timeout, whichever comes first.
//   - A breaker opens after consecutive failures or a failure ratio over a
//     rolling window; the request's own deadline expiring and local
//     saturation (no free pooled connection) are not failures, and neither
//     is an upstream 4xx. With every breaker open, Admit refuses requests
//     before they are queued (503, Retry-After = the shortest remaining
//     open time) and nothing connects to the replicas until the open time
//     is over; the next probe is then the half-open trial.
//   - A replica with consecutive gateway failures is ejected for a time
//     that grows with each ejection, never more than the configured share
//     of replicas, and never the last one.
//   - Only failures that leave the upstream's state unchanged are retried
//     (connection refused, closed before any response byte, 503/429), on
//     another replica when there is one, after a jittered back-off, within
//     the deadline and a retry budget (retries in flight at most a share of
//     calls in flight, or a minimum).
//   - An upstream 400/413/422 wraps backends.ErrInvalidInput, so the
//     batcher retries the batch's requests apart and only the bad one
//     fails, with the upstream's message. 5xx, refused and reset map to
//     backends.ErrBadGateway (502), timeouts to ErrUpstreamTimeout (504),
//     no callable replica to ErrUnavailable (503).
//   - Start-up never waits for a replica when the tensors are configured;
//     the version is Ready once a replica answers its background probe.
//
// Metrics per model version and replica are created with the backend and
// removed by Close (see newMetrics for the names).
package upstream
