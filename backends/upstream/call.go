package upstream

import (
	"errors"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/sony/gobreaker/v2"
	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/tensor"
)

// try sends one call to ep, whose breaker admitted it (done), and decodes
// the answer. The call's deadline is the batch's, or the per-try timeout
// if that comes first.
func (b *Backend) try(ep *endpoint, done func(error), body []byte, header, rows int, deadline time.Time) ([]*tensor.Tensor, *Error) {
	ep.outstanding.Add(1)
	defer ep.outstanding.Add(-1)
	ep.met.requests.Inc()
	start := time.Now()
	callDeadline, own := start.Add(b.pol.Client.PerTryTimeout), false
	if !deadline.After(callDeadline) {
		callDeadline, own = deadline, true
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(ep.inferURI)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType(b.proto.contentType)
	if header > 0 {
		req.Header.Set("Inference-Header-Content-Length", strconv.Itoa(header))
	}
	req.SetBodyRaw(body) // not copied: body outlives the call

	var out []*tensor.Tensor
	var e *Error
	err := ep.hc.DoDeadline(req, resp, callDeadline)
	ep.met.latency.UpdateDuration(start)
	switch status := resp.StatusCode(); {
	case err != nil:
		e = transportError(err, own)
	case status >= 200 && status < 300:
		h := 0
		if v := resp.Header.Peek("Inference-Header-Content-Length"); len(v) > 0 {
			if h, err = strconv.Atoi(string(v)); err != nil || h < 0 {
				e = &Error{Kind: kindMalformed, Msg: "Inference-Header-Content-Length " + strconv.Quote(string(v)), err: backends.ErrBadGateway}
				break
			}
		}
		d := b.decoder()
		out, err = b.proto.decode(d, resp.Body(), h, b.meta.Outputs, rows)
		b.decoders.Put(d)
		if err != nil {
			e = &Error{Kind: kindMalformed, Status: status, Msg: err.Error(), err: backends.ErrBadGateway}
		}
	default:
		d := b.decoder()
		e = statusError(status, d.ErrorMessage(resp.Body()))
		b.decoders.Put(d)
	}
	if e != nil {
		e.Endpoint = ep.url
		ep.met.failures[e.Kind].Inc()
	}
	switch {
	case e == nil || e.Kind == kind4xx:
		done(nil) // the replica works; the input or our configuration does not
		ep.healthy.Store(true)
	case e.excluded:
		done(errExcluded)
	default:
		done(errFailed)
	}
	b.outlier(ep, e)
	return out, e
}

// transportError classifies a failed exchange. own says the call's
// deadline was the request's own, so a timeout is ours, not the
// replica's failure.
func transportError(err error, own bool) *Error {
	var de *dialError
	switch {
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return &Error{Kind: kindSaturated, Msg: "every pooled connection to the replica is busy (client.max_conns)", err: backends.ErrUnavailable, excluded: true, retryAfter: time.Second}
	case errors.As(err, &de):
		return &Error{Kind: kindRefused, Msg: err.Error(), err: backends.ErrBadGateway}
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, os.ErrDeadlineExceeded):
		return &Error{Kind: kindTimeout, Msg: "no answer within the deadline", err: backends.ErrUpstreamTimeout, excluded: own}
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return &Error{Kind: kindReset, Msg: "connection closed before the response: " + err.Error(), err: backends.ErrBadGateway}
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return &Error{Kind: kindMalformed, Msg: "response larger than client.max_response_bytes", err: backends.ErrBadGateway}
	}
	return &Error{Kind: kindMalformed, Msg: "broken response: " + err.Error(), err: backends.ErrBadGateway}
}

// statusError classifies an upstream's non-2xx answer with message msg:
// 400, 413 and 422 refuse the request's input (the batcher then retries
// the batch's requests apart, and the bad one gets 400 with msg); other
// 4xx mean the upstream does not serve what we ask (a wrong model name:
// 502); 429 and 5xx are the replica's failures.
func statusError(status int, msg string) *Error {
	switch {
	case status == fasthttp.StatusBadRequest, status == fasthttp.StatusRequestEntityTooLarge, status == fasthttp.StatusUnprocessableEntity:
		return &Error{Kind: kind4xx, Status: status, Msg: msg, err: backends.ErrInvalidInput}
	case status >= 400 && status < 500 && status != fasthttp.StatusTooManyRequests:
		return &Error{Kind: kind4xx, Status: status, Msg: msg, err: backends.ErrBadGateway}
	}
	return &Error{Kind: kind5xx, Status: status, Msg: msg, err: backends.ErrBadGateway}
}

// outlier updates ep's outlier state with a call's outcome e (nil:
// success) and ejects ep after ejection.consecutive_errors gateway
// failures in a row (5xx, timeouts, refused or reset connections,
// malformed answers), as Envoy's consecutive_5xx does: for base_time ×
// the number of its ejections, at most max_time, and only while fewer
// than max_percent of the replicas are ejected and another one serves.
func (b *Backend) outlier(ep *endpoint, e *Error) {
	counts := e != nil && e.Kind != kind4xx && e.Kind != kindSaturated && !e.excluded
	pol := b.pol.Ejection
	b.mu.Lock()
	defer b.mu.Unlock()
	if !counts {
		ep.consecutive = 0
		return
	}
	ep.consecutive++
	now := b.now()
	if pol.ConsecutiveErrors == 0 || ep.consecutive < pol.ConsecutiveErrors || ep.ejectedUntil.After(now) {
		return
	}
	ejected := 0
	for _, o := range b.eps {
		if o.ejectedUntil.After(now) {
			ejected++
		}
	}
	allowed := min(len(b.eps)*pol.MaxPercent/100, len(b.eps)-1)
	if ejected+1 > allowed {
		return // Envoy's max_ejection_percent: the replica keeps serving
	}
	ep.ejections++
	d := min(pol.BaseTime*time.Duration(ep.ejections), pol.MaxTime)
	ep.ejectedUntil = now.Add(d)
	ep.consecutive = 0
	ep.met.ejections.Inc()
	ep.met.ejected.Set(1)
	b.log.Warn("upstream replica ejected", "endpoint", ep.url, "for", d, "ejections", ep.ejections)
}

// ejected reports whether ep is out of the rotation at now.
func (b *Backend) ejected(ep *endpoint, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return ep.ejectedUntil.After(now)
}

// probeLoop probes ep every probe.interval until Close.
func (b *Backend) probeLoop(ep *endpoint) {
	defer b.probing.Done()
	t := time.NewTimer(0) // the first probe at once: readiness waits for it
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		b.probe(ep)
		t.Reset(b.pol.Probe.Interval)
	}
}

// probe asks ep whether it serves the model. A replica whose breaker is
// open is not contacted (no connection attempts while open); when its open
// time is over, the probe is the breaker's half-open trial, so a replica
// that recovers is found without risking a client's request on it.
func (b *Backend) probe(ep *endpoint) {
	if b.ejected(ep, b.now()) {
		ep.met.ejected.Set(1)
	} else {
		ep.met.ejected.Set(0)
	}
	if open, _ := ep.open(time.Now().UnixNano()); open {
		b.setHealthy(ep, false)
		return
	}
	var done func(error)
	if ep.cb.State() == gobreaker.StateHalfOpen {
		d, err := ep.cb.Allow()
		if err != nil {
			return // traffic holds the half-open trial
		}
		done = d
	}
	status, body, err := b.get(ep, b.proto.probePath, b.pol.Probe.Timeout)
	ok := err == nil && b.proto.probeOK(status, body)
	if done != nil {
		if ok {
			done(nil)
		} else {
			done(errFailed)
		}
	}
	b.setHealthy(ep, ok)
}

func (b *Backend) setHealthy(ep *endpoint, ok bool) {
	ep.healthy.Store(ok)
	if ok {
		ep.met.healthy.Set(1)
	} else {
		ep.met.healthy.Set(0)
	}
	if b.Ready() {
		b.met.ready.Set(1)
	} else {
		b.met.ready.Set(0)
	}
}
