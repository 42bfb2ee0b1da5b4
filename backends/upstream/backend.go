package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/bytebufferpool"
	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/codec"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

// File is the name of the file that makes a version directory an upstream
// model version: <repository>/<model>/<version>/upstream.yaml, the key of
// Loader in the registry's loader map.
const File = "upstream.yaml"

// Options are what every upstream backend of one process shares.
type Options struct {
	// Defaults are the upstream.* settings of the process configuration,
	// which each upstream.yaml may override.
	Defaults config.Upstream
	// Metrics is the set the per-version series are created on; nil
	// means a private set nobody reads.
	Metrics *metrics.Set
	// Log receives state changes (replica ejected, breaker opened); nil
	// discards them.
	Log *slog.Logger
	// Dial, when set, replaces TCP connects (tests: in-memory
	// listeners); it is given the endpoint's host:port.
	Dial fasthttp.DialFunc
	// Now is the clock of ejection, back-off and readiness; nil means
	// time.Now. (The breakers use gobreaker's own clock, time.Now.)
	Now func() time.Time
}

// Loader returns the loader of upstream.yaml files. The backends it loads
// share o (and one reference count of metric series, so that a new load of
// a version keeps the series the old one is about to drop).
func Loader(o Options) backends.Loader {
	s := &series{set: o.Metrics}
	if s.set == nil {
		s.set = metrics.NewSet()
	}
	return func(path string, lo backends.LoadOptions) (backends.Backend, error) {
		cfg, err := config.LoadUpstreamModel(path, o.Defaults)
		if err != nil {
			return nil, err
		}
		return newBackend(&cfg, lo, o, s)
	}
}

// New returns a backend for the upstream model cfg (validated), loaded as
// model version lo.Model/lo.Version. It does not wait for the replicas
// unless cfg lists no tensors and they must be fetched from the upstream's
// metadata.
func New(cfg *config.UpstreamModel, lo backends.LoadOptions, o Options) (*Backend, error) {
	s := &series{set: o.Metrics}
	if s.set == nil {
		s.set = metrics.NewSet()
	}
	return newBackend(cfg, lo, o, s)
}

// Backend is a model served by remote replicas (see the package doc). It
// is safe for concurrent use; Close stops its probes and closes its
// connections.
type Backend struct {
	cfg     config.UpstreamModel
	pol     config.Upstream
	proto   protocol
	meta    backends.Metadata
	outputs []string // output names asked of the upstream
	eps     []*endpoint
	met     *modelMetrics
	series  *series
	log     *slog.Logger
	now     func() time.Time

	active   atomic.Int64 // calls in flight (the retry budget's base)
	retrying atomic.Int64 // retries in flight
	rr       atomic.Uint64
	decoders sync.Pool // *codec.ClientDecoder
	bodies   bytebufferpool.Pool

	mu sync.Mutex // guards the endpoints' outlier state

	stop    chan struct{} // closed by Close: the probes exit
	probing sync.WaitGroup
	closed  atomic.Bool
}

func newBackend(cfg *config.UpstreamModel, lo backends.LoadOptions, o Options, s *series) (*Backend, error) {
	if len(cfg.Endpoints) > 64 {
		return nil, fmt.Errorf("upstream: %d endpoints; at most 64 are supported", len(cfg.Endpoints))
	}
	model := cfg.Model
	if model == "" {
		model = lo.Model
	}
	b := &Backend{cfg: *cfg, pol: cfg.Policy(), proto: newProtocol(cfg, model), series: s, log: o.Log, now: o.Now, stop: make(chan struct{})}
	if b.log == nil {
		b.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if b.now == nil {
		b.now = time.Now
	}
	var epm []*endpointMetrics
	b.met, epm = newMetrics(s, lo.Model, lo.Version, cfg.Endpoints)
	for i, raw := range cfg.Endpoints {
		ep, err := newEndpoint(i, raw, &b.pol, o.Dial, epm[i])
		if err != nil {
			s.release(b.met.names)
			return nil, fmt.Errorf("upstream: endpoints[%d]: %w", i, err)
		}
		ep.inferURI = "http://" + ep.addr + b.proto.inferPath
		b.eps = append(b.eps, ep)
	}
	if err := b.describe(cfg, lo); err != nil {
		b.closeClients()
		s.release(b.met.names)
		return nil, err
	}
	for _, ep := range b.eps {
		b.probing.Add(1)
		go b.probeLoop(ep)
	}
	return b, nil
}

// describe fills b.meta from the configured tensors, or from the first
// replica whose metadata answers.
func (b *Backend) describe(cfg *config.UpstreamModel, lo backends.LoadOptions) error {
	b.meta = backends.Metadata{
		Platform:     "upstream_" + cfg.Protocol,
		MaxBatchSize: cfg.MaxBatchSize,
		Concurrency:  cfg.Client.Concurrency,
		Info:         map[string]string{"upstream": strings.Join(cfg.Endpoints, " "), "upstream_protocol": cfg.Protocol},
	}
	if b.meta.MaxBatchSize == 0 {
		b.meta.MaxBatchSize = lo.MaxBatchSize
	}
	if cfg.Protocol == config.ProtoPredict {
		b.meta.MaxBatchSize = 1
	}
	if b.meta.Concurrency == 0 {
		b.meta.Concurrency = 4 * len(b.eps)
	}
	if len(cfg.Inputs) > 0 {
		var err error
		if b.meta.Inputs, err = specsOf(cfg.Inputs, "inputs"); err != nil {
			return err
		}
		if b.meta.Outputs, err = specsOf(cfg.Outputs, "outputs"); err != nil {
			return err
		}
	} else if err := b.fetchMetadata(); err != nil {
		return err
	}
	for _, sp := range b.meta.Outputs {
		b.outputs = append(b.outputs, sp.Name)
	}
	return nil
}

// fetchMetadata asks each replica in turn for the model's metadata.
func (b *Backend) fetchMetadata() error {
	var errs []error
	for _, ep := range b.eps {
		status, body, err := b.get(ep, b.proto.metaPath, b.pol.Probe.Timeout)
		if err == nil && status != fasthttp.StatusOK {
			err = fmt.Errorf("answered %d: %s", status, codec.TruncateBytes(body))
		}
		if err == nil {
			d := b.decoder()
			b.meta.Inputs, b.meta.Outputs, err = b.proto.metadata(d, body)
			b.decoders.Put(d)
			if err == nil {
				ep.healthy.Store(true)
				return nil
			}
		}
		errs = append(errs, fmt.Errorf("%s%s: %w", ep.url, b.proto.metaPath, err))
	}
	return fmt.Errorf("upstream: no inputs and outputs configured and no replica answered its metadata (%w); list them in %s to start without the upstream", errors.Join(errs...), File)
}

// get sends a GET for path with a timeout and returns the status and a
// copy of the body.
func (b *Backend) get(ep *endpoint, path string, timeout time.Duration) (int, []byte, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + ep.addr + path)
	req.Header.SetMethod(fasthttp.MethodGet)
	if err := ep.hc.DoTimeout(req, resp, timeout); err != nil {
		return 0, nil, err
	}
	return resp.StatusCode(), append([]byte(nil), resp.Body()...), nil
}

func (b *Backend) decoder() *codec.ClientDecoder {
	if d, ok := b.decoders.Get().(*codec.ClientDecoder); ok {
		return d
	}
	return new(codec.ClientDecoder)
}

// Metadata implements backends.Backend.
func (b *Backend) Metadata() *backends.Metadata { return &b.meta }

// Remote implements backends.Remote: calls wait on the network.
func (*Backend) Remote() {}

// Ready implements backends.Readier: a replica has answered its latest
// probe (or call).
func (b *Backend) Ready() bool {
	for _, ep := range b.eps {
		if ep.healthy.Load() {
			return true
		}
	}
	return false
}

// Admit implements backends.Gate: with every replica's breaker open, a
// request is refused at once (503 with Retry-After = the shortest
// remaining open time) instead of being queued for a call that would not
// be sent.
func (b *Backend) Admit() error {
	now := time.Now().UnixNano()
	var wait time.Duration
	for _, ep := range b.eps {
		open, left := ep.open(now)
		if !open {
			return nil
		}
		if wait == 0 || left < wait {
			wait = left
		}
	}
	b.met.rejected.Inc()
	return &Error{Kind: "open", Msg: "every replica's circuit breaker is open", err: backends.ErrUnavailable, retryAfter: wait}
}

// Close stops the probes, closes idle connections and removes the
// version's metric series. Calls in flight finish.
func (b *Backend) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	close(b.stop)
	b.probing.Wait()
	b.closeClients()
	b.series.release(b.met.names)
	return nil
}

func (b *Backend) closeClients() {
	for _, ep := range b.eps {
		ep.hc.CloseIdleConnections()
	}
}

// Error is a failed upstream call. It wraps backends.ErrInvalidInput (the
// upstream refused the request's input: 400), ErrBadGateway (502),
// ErrUpstreamTimeout (504) or ErrUnavailable (503, with RetryAfter).
type Error struct {
	Endpoint string // the replica's URL; empty when none was called
	Kind     string // refused, reset, timeout, 5xx, 4xx, malformed, saturated or open
	Status   int    // the upstream's HTTP status, 0 if it sent none
	Msg      string
	err      error
	// retryAfter: for ErrUnavailable, when a breaker half-opens.
	retryAfter time.Duration
	// excluded: not the replica's failure (our own deadline expired,
	// or no pooled connection was free); the breaker does not count it.
	excluded bool
}

func (e *Error) Error() string {
	var sb strings.Builder
	sb.WriteString("upstream")
	if e.Endpoint != "" {
		sb.WriteString(" " + e.Endpoint)
	}
	if e.Status != 0 {
		sb.WriteString(" answered " + strconv.Itoa(e.Status))
	}
	sb.WriteString(": " + e.Msg)
	return sb.String()
}

func (e *Error) Unwrap() error { return e.err }

// RetryAfter implements backends.RetryAfter.
func (e *Error) RetryAfter() time.Duration { return e.retryAfter }

// retryable reports whether a call that failed so may be sent again: only
// failures that leave the upstream's state as it was, as far as we can
// know (RFC 9110 §9.2.2): nothing was sent (refused, no free
// connection), the connection closed before any response byte, or the
// upstream said 503 or 429 (it did not process the request).
func (e *Error) retryable() bool {
	switch e.Kind {
	case kindRefused, kindReset, kindSaturated:
		return true
	case kind5xx:
		return e.Status == fasthttp.StatusServiceUnavailable || e.Status == fasthttp.StatusTooManyRequests
	}
	return false
}

// Infer implements backends.Backend: one upstream call for the batch,
// retried as the policy allows, within ctx's deadline.
func (b *Backend) Infer(ctx context.Context, inputs []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if len(inputs) != len(b.meta.Inputs) || len(inputs) == 0 {
		return nil, fmt.Errorf("upstream: %d inputs; the model takes %d: %w", len(inputs), len(b.meta.Inputs), backends.ErrInvalidInput)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = b.now().Add(b.pol.Client.PerTryTimeout)
	}
	rows := inputs[0].BatchSize()
	b.met.batchRows.Update(float64(rows))
	bb := b.bodies.Get()
	defer b.bodies.Put(bb)
	var header int
	bb.B, header = b.proto.encode(bb.B[:0], inputs, b.outputs)

	b.active.Add(1)
	defer b.active.Add(-1)
	var tried uint64 // endpoints already called, by index
	var last *Error
	for attempt := 0; ; attempt++ {
		ep, done, err := b.pick(tried)
		if err != nil {
			if attempt > 0 {
				b.retrying.Add(-1)
			}
			if last != nil {
				return nil, last // the retry found no replica: the real failure
			}
			return nil, err
		}
		tried |= 1 << ep.idx
		out, e := b.try(ep, done, bb.B, header, rows, deadline)
		if attempt > 0 {
			b.retrying.Add(-1)
		}
		if e == nil {
			return out, nil
		}
		last = e
		if !e.retryable() || attempt >= b.pol.Retry.MaxRetries || !b.backoff(attempt, deadline) {
			return nil, e
		}
	}
}

// backoff waits before retry attempt+1 if the deadline leaves room for it
// and the retry budget allows one more retry in flight; it takes the
// budget slot (released by Infer after the retry) and reports whether to
// retry. Full jitter: a random wait in [0, min(max, base·2^attempt)).
func (b *Backend) backoff(attempt int, deadline time.Time) bool {
	r := b.pol.Retry
	ceil := min(r.MaxBackoff, r.Backoff<<min(attempt, 16))
	wait := time.Duration(rand.Int64N(int64(ceil) + 1))
	// A retry that cannot get a useful share of the deadline is not worth
	// sending: leave it at least the back-off again.
	if b.now().Add(2 * wait).Add(time.Millisecond).After(deadline) {
		return false
	}
	if !b.takeRetry() {
		b.met.noBudget.Inc()
		return false
	}
	b.met.retries.Inc()
	if wait > 0 {
		t := time.NewTimer(wait)
		<-t.C
	}
	return true
}

// takeRetry takes a slot of the retry budget: retries in flight stay at
// most BudgetPercent of the calls in flight, or MinRetries, whichever is
// more (Envoy's retry budget).
func (b *Backend) takeRetry() bool {
	limit := max(int64(b.pol.Retry.MinRetries), b.active.Load()*int64(b.pol.Retry.BudgetPercent)/100)
	for {
		n := b.retrying.Load()
		if n >= limit {
			return false
		}
		if b.retrying.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// pick returns the replica for the next call: among those not ejected
// and whose breaker lets a call through, the one with the fewest calls in
// flight, preferring replicas not tried yet. Its breaker has admitted the
// call: the caller must report the outcome to done exactly once (try
// does).
func (b *Backend) pick(tried uint64) (*endpoint, func(error), error) {
	now := b.now()
	wall := time.Now().UnixNano()
	var skip uint64 // replicas whose breaker refused just now
	for range b.eps {
		var best *endpoint
		bestTried := true
		start := int(b.rr.Add(1) % uint64(len(b.eps))) // ties go round
		b.mu.Lock()
		for i := range b.eps {
			ep := b.eps[(start+i)%len(b.eps)]
			if skip&(1<<ep.idx) != 0 || ep.ejectedUntil.After(now) {
				continue
			}
			if open, _ := ep.open(wall); open {
				continue
			}
			wasTried := tried&(1<<ep.idx) != 0
			if best == nil || (bestTried && !wasTried) || (bestTried == wasTried && ep.outstanding.Load() < best.outstanding.Load()) {
				best, bestTried = ep, wasTried
			}
		}
		b.mu.Unlock()
		if best == nil {
			break
		}
		done, err := best.cb.Allow()
		if err != nil { // opened meanwhile, or half-open with its probes out
			skip |= 1 << best.idx
			continue
		}
		return best, done, nil
	}
	return nil, nil, b.unavailable(wall)
}

// unavailable is the error when no replica can be called: every breaker
// open (Retry-After: the shortest remaining open time), or half-open with
// its probes out, or the rest ejected.
func (b *Backend) unavailable(wall int64) error {
	var wait time.Duration
	for _, ep := range b.eps {
		if open, left := ep.open(wall); open && (wait == 0 || left < wait) {
			wait = left
		}
	}
	if wait == 0 {
		wait = time.Second
	}
	return &Error{Kind: "open", Msg: "no replica can be called (circuit breakers open)", err: backends.ErrUnavailable, retryAfter: wait}
}
