package proxy

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/valyala/bytebufferpool"
	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/batcher"
	"github.com/coalesce-ml/coalesce/codec"
	"github.com/coalesce-ml/coalesce/tensor"
)

// serveInfer is the one inference path every protocol takes: decode the
// body with c for e's model, add the scheduling hints of the headers, run
// the request through the model's batcher, and encode the answer. versioned
// says whether the request named the version (see snapshot.successor).
// Errors are returned for Handler to write.
func (s *Server) serveInfer(ctx *fasthttp.RequestCtx, c codec.Codec, e *entry, versioned bool) error {
	r := codec.AcquireRequest(e.ModelVersion, &s.cfg.Limits)
	defer codec.ReleaseRequest(r)
	if err := c.Decode(r, ctx.PostBody(), &ctx.Request.Header); err != nil {
		return err
	}
	h, err := headerHints(ctx)
	if err != nil {
		return err
	}
	if r.Timeout > 0 { // Triton's schedule_policy parameters win over headers
		h.timeout = r.Timeout
	}
	if r.Priority > 0 {
		h.priority = r.Priority
	}
	out, ran, err := s.infer(arrival(ctx), e, versioned, r.Inputs, h)
	if err != nil {
		return err
	}
	r.Model = ran.ModelVersion // the outputs are that version's
	// A copy for the model's shadow, if it has one (shadow.go).
	s.offerShadow(s.snap.Load(), ran, r.Inputs, out)
	bb := bytebufferpool.Get()
	defer bytebufferpool.Put(bb)
	if bb.B, err = c.Encode(bb.B[:0], r, out, &ctx.Response.Header); err != nil {
		return err
	}
	ctx.SetBody(bb.B)
	return nil
}

// maxMoves bounds how often infer moves a request whose version was retired
// under it to the version that replaced it.
const maxMoves = 4

// hints are what a client may ask of the scheduling of its request.
type hints struct {
	timeout  time.Duration // 0 = the model's default; only shortens it
	priority int           // 0 = the lowest level
}

// infer runs one decoded request on e through its batcher and returns its
// outputs in the model's output order. inputs are in the model's input
// order; arrived is when the request arrived (its deadline counts from
// then). A request whose batcher was retired under it (ErrClosed while the
// server is not draining) moves to the version that replaced it (at most
// maxMoves times); infer returns the entry that ran the request.
func (s *Server) infer(arrived time.Time, e *entry, versioned bool, inputs []*tensor.Tensor, h hints) ([]*tensor.Tensor, *entry, error) {
	rows := 0
	if len(inputs) > 0 {
		rows = inputs[0].BatchSize()
	}
	if rows == 0 {
		return nil, nil, &Error{Status: fasthttp.StatusBadRequest, Msg: "batch of 0 rows; want at least one row (the first dimension of every input)"}
	}
	if max := e.b.Config().MaxBatchSize; rows > max {
		return nil, nil, &Error{Status: fasthttp.StatusBadRequest, Msg: fmt.Sprintf("batch of %d rows is larger than model %s's max_batch_size %d", rows, e.Name, max)}
	}
	timeout := e.timeout
	if h.timeout > 0 && h.timeout < timeout {
		timeout = h.timeout
	}
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
		return nil, nil, modelError{err: err, model: e.Name, version: e.Version, timeout: timeout}
	}
	if len(out) != len(e.Meta.Outputs) {
		return nil, nil, fmt.Errorf("BUG: model %s returned %d outputs; declared %d", e.Name, len(out), len(e.Meta.Outputs))
	}
	for _, t := range out {
		// The encoders walk BYTES data element by element; check its
		// layout once here rather than trusting it in each of them.
		if t.DType == tensor.Bytes {
			if err := t.Validate(); err != nil {
				return nil, nil, fmt.Errorf("model %s version %s: output: %w", e.Name, e.Version, err)
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
