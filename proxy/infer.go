package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/valyala/bytebufferpool"
	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/batcher"
	"github.com/coalesce-ml/coalesce/cache"
	"github.com/coalesce-ml/coalesce/codec"
	"github.com/coalesce-ml/coalesce/tensor"
)

// serveInfer is the one inference path every protocol takes: decode the
// body with c for e's model, add the scheduling hints of the headers, run
// the request through the model's batcher, and encode the answer. versioned
// says whether the request named the version (see snapshot.successor).
// It returns the entry that answered (e, or the version a request moved
// to when e was retired under it; the one it failed on, for errors), which
// the request's metrics count under. Errors are returned for Handler to
// write.
func (s *Server) serveInfer(ctx *fasthttp.RequestCtx, c codec.Codec, e *entry, versioned bool) (*entry, error) {
	if err := s.admitModel(ctx, e.Name); err != nil { // 403, 429 (guard.go)
		return e, err
	}
	r := codec.AcquireRequest(e.ModelVersion, &s.cfg.Limits)
	defer codec.ReleaseRequest(r)
	if err := c.Decode(r, ctx.PostBody(), &ctx.Request.Header); err != nil {
		return e, err
	}
	h, err := headerHints(ctx)
	if err != nil {
		return e, err
	}
	if r.Timeout > 0 { // Triton's schedule_policy parameters win over headers
		h.timeout = r.Timeout
	}
	if r.Priority > 0 {
		h.priority = r.Priority
	}
	if e.cache != nil {
		h.cache = cacheControl(ctx.Request.Header.Peek("Cache-Control"))
	}
	out, ran, st, err := s.inferCached(arrival(ctx), e, versioned, r.Inputs, h)
	if err != nil {
		return ran, err
	}
	r.Model = ran.ModelVersion // the outputs are that version's
	if d := ran.drift; d.Sampling() {
		// Copies what it keeps and never blocks (drift.go).
		// The request's id as the client receives it in X-Request-Id
		// (its own, or the one generated for it: requestID is
		// idempotent), so that feedback can name it.
		d.Sample(r.Inputs, out, requestID(ctx))
	}
	// A copy for the model's shadow, if it has one (shadow.go).
	s.offerShadow(s.snap.Load(), ran, r.Inputs, out)
	bb := bytebufferpool.Get()
	defer bytebufferpool.Put(bb)
	if bb.B, err = c.Encode(bb.B[:0], r, out, &ctx.Response.Header); err != nil {
		return ran, err
	}
	ctx.SetBody(bb.B)
	if e.cache != nil {
		ctx.Response.Header.SetCanonical(coalesceCache, cacheStatus[st])
	}
	return ran, nil
}

// The Coalesce-Cache response header, in canonical form (SetCanonical
// skips normalizing the name on every response), and its values by
// cache.Status.
var (
	coalesceCache = []byte("Coalesce-Cache")
	cacheStatus   = [...][]byte{cache.Miss: []byte("miss"), cache.Hit: []byte("hit"), cache.Shared: []byte("shared")}
)

// inferCached is infer behind e's cache: a repeated input is answered
// from it (cache.Hit), a request identical to one in flight waits for
// that one (cache.Shared), anything else runs (cache.Miss) and, when it
// succeeds, is stored. Without a cache on e, or when the client's
// Cache-Control forbids it, it is infer. Like infer, it returns the entry
// that ran the request, or the one it failed on, even with an error.
func (s *Server) inferCached(arrived time.Time, e *entry, versioned bool, inputs []*tensor.Tensor, h hints) ([]*tensor.Tensor, *entry, cache.Status, error) {
	if e.cache == nil || h.cache == ccNoStore {
		out, ran, err := s.infer(arrived, e, versioned, inputs, h)
		return out, ran, cache.Miss, err
	}
	k := cache.AcquireKey()
	defer cache.ReleaseKey(k)
	k.Set(e.Name, e.Version, e.gen, inputs)
	if h.cache == ccNoCache {
		// RFC 9111 §5.2.1.4: no stored answer without revalidation;
		// the fresh one may be stored.
		out, ran, err := s.infer(arrived, e, versioned, inputs, h)
		if err == nil && ran == e {
			e.cache.Put(k, out)
		}
		return out, ran, cache.Miss, err
	}
	ran := e
	out, st, err := e.cache.Do(k, arrived.Add(timeoutOf(e, h)), func() ([]*tensor.Tensor, error) {
		out, r, err := s.infer(arrived, e, versioned, inputs, h)
		if r != e {
			ran = r // it moved to the version that replaced e
			if err == nil {
				// Neither e's answer to store nor one e's waiters may
				// take as e's.
				return out, errMoved{out}
			}
		}
		return out, err
	})
	if err != nil {
		var moved errMoved
		switch {
		case errors.As(err, &moved):
			return moved.out, ran, st, nil
		case errors.Is(err, cache.ErrExpired):
			// A waiter's own deadline passed; the request it waited
			// for goes on.
			return nil, e, st, modelError{err: batcher.ErrExpired, model: e.Name, version: e.Version, timeout: timeoutOf(e, h)}
		}
	}
	return out, ran, st, err
}

// errMoved carries the answer of a request that ran on the successor of
// its entry through the entry's cache, which neither stores it nor hands
// it to the waiters (they start over, see leaderOwn).
type errMoved struct{ out []*tensor.Tensor }

func (errMoved) Error() string { return "the request ran on the version that replaced its own" }

// leaderOwn reports whether a failed request's error is its own, so
// that the identical requests waiting for it start over rather than
// share it: its deadline passed, or it moved to another version.
func leaderOwn(err error) bool {
	return errors.Is(err, batcher.ErrExpired) || errors.Is(err, batcher.ErrOverloaded) ||
		errors.Is(err, context.DeadlineExceeded) || errors.As(err, new(errMoved))
}

// timeoutOf is a request's deadline from arrival on e: the model's, or
// the client's when shorter.
func timeoutOf(e *entry, h hints) time.Duration {
	if h.timeout > 0 && h.timeout < e.timeout {
		return h.timeout
	}
	return e.timeout
}

// Cache-Control request directives (RFC 9111 §5.2.1), as far as the
// cache is concerned.
const (
	ccDefault = iota // use the cache
	ccNoCache        // no-cache: compute afresh, store the answer
	ccNoStore        // no-store: compute afresh, store nothing
)

// cacheControl reads a Cache-Control request header: a comma-separated
// list of case-insensitive directives, some with an argument.
func cacheControl(v []byte) int {
	cc := ccDefault
	for len(v) > 0 {
		var d []byte
		d, v, _ = bytes.Cut(v, []byte(","))
		if i := bytes.IndexByte(d, '='); i >= 0 {
			d = d[:i]
		}
		d = bytes.TrimSpace(d)
		switch {
		case bytes.EqualFold(d, []byte("no-store")):
			return ccNoStore
		case bytes.EqualFold(d, []byte("no-cache")):
			cc = ccNoCache
		}
	}
	return cc
}

// maxMoves bounds how often infer moves a request whose version was retired
// under it to the version that replaced it.
const maxMoves = 4

// hints are what a client may ask of the scheduling of its request.
type hints struct {
	timeout  time.Duration // 0 = the model's default; only shortens it
	priority int           // 0 = the lowest level
	cache    int           // ccDefault, ccNoCache or ccNoStore
}

// infer runs one decoded request on e through its batcher and returns its
// outputs in the model's output order. inputs are in the model's input
// order; arrived is when the request arrived (its deadline counts from
// then). A request whose batcher was retired under it (ErrClosed while the
// server is not draining) moves to the version that replaced it (at most
// maxMoves times); infer returns the entry that ran the request, or the
// one it failed on.
func (s *Server) infer(arrived time.Time, e *entry, versioned bool, inputs []*tensor.Tensor, h hints) ([]*tensor.Tensor, *entry, error) {
	rows := 0
	if len(inputs) > 0 {
		rows = inputs[0].BatchSize()
	}
	if rows == 0 {
		return nil, e, &Error{Status: fasthttp.StatusBadRequest, Msg: "batch of 0 rows; want at least one row (the first dimension of every input)"}
	}
	if max := e.b.Config().MaxBatchSize; rows > max {
		return nil, e, &Error{Status: fasthttp.StatusBadRequest, Msg: fmt.Sprintf("batch of %d rows is larger than model %s's max_batch_size %d", rows, e.Name, max)}
	}
	timeout := timeoutOf(e, h)
	req := batcher.Request{Inputs: inputs, Deadline: arrived.Add(timeout), Priority: h.priority}
	out, err := e.b.Submit(req)
	// Reloads that follow each other closely can retire the successor
	// too before the request reaches it: each move goes to a newer
	// version, so a few suffice.
	for moves := 0; moves < maxMoves && errors.Is(err, batcher.ErrClosed) && !s.draining.Load(); moves++ {
		next := s.snap.Load().successor(e, versioned)
		if next == nil || rows > next.b.Config().MaxBatchSize {
			break
		}
		e = next
		out, err = e.b.Submit(req)
	}
	if err != nil {
		return nil, e, modelError{err: err, model: e.Name, version: e.Version, timeout: timeout}
	}
	if len(out) != len(e.Meta.Outputs) {
		return nil, e, fmt.Errorf("BUG: model %s returned %d outputs; declared %d", e.Name, len(out), len(e.Meta.Outputs))
	}
	for _, t := range out {
		// The encoders walk BYTES data element by element; check its
		// layout once here rather than trusting it in each of them.
		if t.DType == tensor.Bytes {
			if err := t.Validate(); err != nil {
				return nil, e, fmt.Errorf("model %s version %s: output: %w", e.Name, e.Version, err)
			}
		}
	}
	return out, e, nil
}

// headerHints reads the Coalesce-Timeout (a duration such as 250ms, or
// milliseconds) and Coalesce-Priority headers.
func headerHints(ctx *fasthttp.RequestCtx) (hints, error) {
	var h hints
	if v := ctx.Request.Header.Peek("Coalesce-Timeout"); len(v) > 0 {
		d, err := time.ParseDuration(string(v))
		if err != nil {
			ms, err2 := strconv.ParseUint(string(v), 10, 32)
			if err2 != nil {
				return h, badRequest("header Coalesce-Timeout: %q; want a duration such as 250ms or 2s, or milliseconds", truncateBytes(v))
			}
			d = time.Duration(ms) * time.Millisecond
		}
		if d <= 0 {
			return h, badRequest("header Coalesce-Timeout: %q; want a positive duration", truncateBytes(v))
		}
		h.timeout = d
	}
	if v := ctx.Request.Header.Peek("Coalesce-Priority"); len(v) > 0 {
		p, err := strconv.ParseUint(string(v), 10, 16)
		if err != nil {
			return h, badRequest("header Coalesce-Priority: %q; want a priority level, 1 = highest (0 = the default)", truncateBytes(v))
		}
		h.priority = int(p)
	}
	return h, nil
}
