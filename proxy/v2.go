package proxy

import (
	"bytes"
	"slices"
	"strconv"

	"github.com/valyala/bytebufferpool"
	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/backends"
)

// KServe V2 / Open Inference Protocol REST endpoints (reference/protocols.md §1).

const protoV2 = "v2"

// routeV2 serves one V2 request and returns the model name, when one was
// resolved, for metrics.
func (s *Server) routeV2(ctx *fasthttp.RequestCtx, path []byte) (model string, err error) {
	switch {
	case bytes.Equal(path, []byte("/v2")) || bytes.Equal(path, []byte("/v2/")):
		err = s.v2ServerMetadata(ctx)
	case bytes.Equal(path, []byte("/v2/health/live")):
		err = s.health(ctx, true)
	case bytes.Equal(path, []byte("/v2/health/ready")):
		err = s.health(ctx, !s.draining.Load())
	case bytes.HasPrefix(path, []byte("/v2/models/")):
		model, err = s.v2Model(ctx, path[len("/v2/models/"):])
	default:
		err = &Error{Status: fasthttp.StatusNotFound, Msg: "no KServe V2 endpoint " + strconv.Quote(string(path)) + "; want /v2, /v2/health/{live,ready} or /v2/models/{model}[/versions/{version}][/ready|/infer]"}
	}
	return model, err
}

// health answers a health or readiness probe with the status code alone
// (the V2 spec asks for an empty body).
func (s *Server) health(ctx *fasthttp.RequestCtx, ok bool) error {
	if !isGet(ctx) {
		return methodNotAllowed(ctx, "GET")
	}
	if !ok {
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.Response.Header.Set("Retry-After", "1")
	}
	return nil
}

func (s *Server) v2ServerMetadata(ctx *fasthttp.RequestCtx) error {
	if !isGet(ctx) {
		return methodNotAllowed(ctx, "GET")
	}
	b := append([]byte(nil), `{"name":"coalesce","version":`...)
	b = appendString(b, s.cfg.Version)
	b = append(b, `,"extensions":["binary_tensor_data"]`...)
	// The engine facts of the default model (e.g. the kernels chosen for
	// this CPU) are shown here too; clients ignore fields they don't know.
	if info := s.defModel.Meta.Info; len(info) > 0 {
		b = append(b, `,"engine":{`...)
		for i, k := range sortedKeys(info) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, info[k])
		}
		b = append(b, '}')
	}
	b = append(b, '}')
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
	return nil
}

// v2Model routes /v2/models/{m}[/versions/{v}][/ready|/infer] (rest is
// the path after /v2/models/) and returns the model name for metrics when
// the model exists.
func (s *Server) v2Model(ctx *fasthttp.RequestCtx, rest []byte) (string, error) {
	name, rest, _ := bytes.Cut(rest, []byte("/"))
	var version, action []byte
	if bytes.HasPrefix(rest, []byte("versions/")) {
		version, action, _ = bytes.Cut(rest[len("versions/"):], []byte("/"))
		if len(version) == 0 {
			return "", &Error{Status: fasthttp.StatusNotFound, Msg: "empty version in path; want /v2/models/{model}/versions/{version}"}
		}
	} else {
		action = rest
	}
	if len(name) == 0 {
		return "", &Error{Status: fasthttp.StatusNotFound, Msg: "empty model name in path; want /v2/models/{model}"}
	}
	m, err := s.lookup(name, version)
	if err != nil {
		return "", err
	}
	switch string(action) {
	case "":
		return m.Name, s.v2ModelMetadata(ctx, m)
	case "ready":
		return m.Name, s.health(ctx, !s.draining.Load())
	case "infer":
		if !ctx.IsPost() {
			return m.Name, methodNotAllowed(ctx, "POST")
		}
		return m.Name, s.v2Infer(ctx, m)
	}
	return m.Name, &Error{Status: fasthttp.StatusNotFound, Msg: "no KServe V2 endpoint " + strconv.Quote(string(ctx.Path())) + "; want .../ready or .../infer"}
}

func (s *Server) v2ModelMetadata(ctx *fasthttp.RequestCtx, m *backends.ModelVersion) error {
	if !isGet(ctx) {
		return methodNotAllowed(ctx, "GET")
	}
	b := append([]byte(nil), `{"name":`...)
	b = appendString(b, m.Name)
	b = append(b, `,"versions":[`...)
	for i, v := range s.reg.Versions(m.Name) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, v.Version)
	}
	b = append(b, `],"platform":`...)
	b = appendString(b, m.Meta.Platform)
	b = append(b, `,"inputs":`...)
	b = appendSpecs(b, m.Meta.Inputs)
	b = append(b, `,"outputs":`...)
	b = appendSpecs(b, m.Meta.Outputs)
	b = append(b, `,"parameters":{"version":`...)
	b = appendString(b, m.Version)
	b = append(b, `,"max_batch_size":`...)
	b = strconv.AppendInt(b, int64(m.Meta.MaxBatchSize), 10)
	if m.Config.Description != "" {
		b = append(b, `,"description":`...)
		b = appendString(b, m.Config.Description)
	}
	for _, k := range sortedKeys(m.Meta.Info) {
		b = append(b, ',')
		b = appendString(b, k)
		b = append(b, ':')
		b = appendString(b, m.Meta.Info[k])
	}
	b = append(b, `}}`...)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
	return nil
}

func appendSpecs(b []byte, specs []backends.TensorSpec) []byte {
	b = append(b, '[')
	for i, sp := range specs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendString(b, sp.Name)
		b = append(b, `,"datatype":"`...)
		b = append(b, sp.DType.String()...)
		b = append(b, `","shape":`...)
		b = appendShape(b, sp.Shape)
		b = append(b, '}')
	}
	return append(b, ']')
}

// v2Infer handles POST .../infer with JSON or binary tensors.
func (s *Server) v2Infer(ctx *fasthttp.RequestCtx, m *backends.ModelVersion) error {
	p := s.parsers.Get()
	defer s.parsers.Put(p)
	hdr := ctx.Request.Header.Peek("Inference-Header-Content-Length")
	req, err := decodeV2(p, ctx.PostBody(), hdr, m, &s.cfg.Limits)
	if err != nil {
		return err
	}
	h, err := headerHints(ctx)
	if err != nil {
		return err
	}
	if req.timeout > 0 { // Triton's schedule_policy parameters win over headers
		h.timeout = req.timeout
	}
	if req.priority > 0 {
		h.priority = req.priority
	}
	out, err := s.infer(arrival(ctx), m, req.inputs, h)
	if err != nil {
		return err
	}
	bb := bytebufferpool.Get()
	var jsonLen int
	bb.B, jsonLen = encodeV2(bb.B[:0], m, req, out)
	if jsonLen >= 0 {
		ctx.Response.Header.Set("Inference-Header-Content-Length", strconv.Itoa(jsonLen))
		ctx.SetContentType("application/octet-stream")
	} else {
		ctx.SetContentType("application/json")
	}
	ctx.SetBody(bb.B)
	bytebufferpool.Put(bb)
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
