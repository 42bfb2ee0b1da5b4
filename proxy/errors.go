package proxy

import (
	"context"
	"errors"
	"fmt"

	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/backends"
)

// Error is a request failure with the HTTP status it maps to. Decoders
// return *Error for client mistakes; everything else goes through
// StatusOf.
type Error struct {
	Status int
	Msg    string
	allow  string // for 405: the Allow header, which RFC 9110 §15.5.6 requires
}

func (e *Error) Error() string { return e.Msg }

// badRequest returns a 400 error; the message names the field and what was
// expected.
// Shapes ([]int64) are written as JSON arrays, [1,4], as clients wrote them.
func badRequest(format string, args ...any) *Error {
	for i, a := range args {
		if shape, ok := a.([]int64); ok {
			args[i] = fmtShape(shape)
		}
	}
	return &Error{Status: fasthttp.StatusBadRequest, Msg: fmt.Sprintf(format, args...)}
}

// StatusOf maps an error to its HTTP status code. It is the one place
// where error kinds become status codes.
func StatusOf(err error) int {
	var pe *Error
	switch {
	case errors.As(err, &pe):
		return pe.Status
	case errors.Is(err, backends.ErrModelNotFound), errors.Is(err, backends.ErrVersionNotFound):
		return fasthttp.StatusNotFound
	case errors.Is(err, backends.ErrInvalidInput):
		return fasthttp.StatusBadRequest
	case errors.Is(err, context.DeadlineExceeded):
		return fasthttp.StatusGatewayTimeout
	}
	return fasthttp.StatusInternalServerError
}

// writeError answers with {"error": msg} and the status err maps to.
// Internal errors keep their message: it is ours, not the client's data.
func writeError(ctx *fasthttp.RequestCtx, err error) int {
	status := StatusOf(err)
	ctx.Response.Reset()
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	// The reset above drops headers set before the error, so Allow
	// travels in the error.
	var pe *Error
	if errors.As(err, &pe) && pe.allow != "" {
		ctx.Response.Header.Set("Allow", pe.allow)
	}
	if status == fasthttp.StatusServiceUnavailable {
		ctx.Response.Header.Set("Retry-After", "1")
	}
	msg := err.Error()
	b := make([]byte, 0, len(msg)+16)
	b = append(b, `{"error":`...)
	b = appendString(b, msg)
	b = append(b, '}')
	ctx.SetBody(b)
	return status
}
