package proxy

import (
	"bytes"
	"slices"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/codec"
)

// KServe V2 / Open Inference Protocol REST endpoints (reference/protocols.md §1).

const protoV2 = codec.ProtoV2

// routeV2 serves one V2 request and returns the model version, when one
// was resolved, for metrics.
func (s *Server) routeV2(ctx *fasthttp.RequestCtx, sn *snapshot, path []byte) (e *entry, err error) {
	switch {
	case bytes.Equal(path, []byte("/v2")) || bytes.Equal(path, []byte("/v2/")):
		err = s.v2ServerMetadata(ctx, sn)
	case bytes.Equal(path, []byte("/v2/health/live")):
		err = s.health(ctx, true)
	case bytes.Equal(path, []byte("/v2/health/ready")):
		err = s.health(ctx, !s.draining.Load())
	case bytes.HasPrefix(path, []byte("/v2/models/")):
		e, err = s.v2Model(ctx, sn, path[len("/v2/models/"):])
	default:
		err = &Error{Status: fasthttp.StatusNotFound, Msg: "no KServe V2 endpoint " + strconv.Quote(truncateBytes(path)) + "; want /v2, /v2/health/{live,ready} or /v2/models/{model}[/versions/{version}][/ready|/infer]"}
	}
	return e, err
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

func (s *Server) v2ServerMetadata(ctx *fasthttp.RequestCtx, sn *snapshot) error {
	if !isGet(ctx) {
		return methodNotAllowed(ctx, "GET")
	}
	b := append([]byte(nil), `{"name":"coalesce","version":`...)
	b = codec.AppendString(b, s.version)
	b = append(b, `,"extensions":["binary_tensor_data","model_repository"]`...)
	// The engine facts of the default model (e.g. the kernels chosen for
	// this CPU) are shown here too; clients ignore fields they don't know.
	if def, err := sn.get(sn.def, ""); err == nil && len(def.Meta.Info) > 0 {
		info := def.Meta.Info
		b = append(b, `,"engine":{`...)
		for i, k := range sortedKeys(info) {
			if i > 0 {
				b = append(b, ',')
			}
			b = codec.AppendString(b, k)
			b = append(b, ':')
			b = codec.AppendString(b, info[k])
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
func (s *Server) v2Model(ctx *fasthttp.RequestCtx, sn *snapshot, rest []byte) (*entry, error) {
	name, rest, _ := bytes.Cut(rest, []byte("/"))
	var version, action []byte
	if bytes.HasPrefix(rest, []byte("versions/")) {
		version, action, _ = bytes.Cut(rest[len("versions/"):], []byte("/"))
		if len(version) == 0 {
			return nil, &Error{Status: fasthttp.StatusNotFound, Msg: "empty version in path; want /v2/models/{model}/versions/{version}"}
		}
	} else {
		action = rest
	}
	if len(name) == 0 {
		return nil, &Error{Status: fasthttp.StatusNotFound, Msg: "empty model name in path; want /v2/models/{model}"}
	}
	label, err := s.v2Label(ctx, action)
	if err != nil {
		return nil, err
	}
	m, pinned, err := s.resolve(&ctx.Request.Header, sn, name, version, label)
	if err != nil {
		return nil, err
	}
	switch string(action) {
	case "":
		return m, v2ModelMetadata(ctx, sn, m)
	case "ready":
		// An upstream version is ready once a replica answered its probe.
		return m, s.health(ctx, !s.draining.Load() && backends.Ready(m.Backend))
	case "infer":
		if !ctx.IsPost() {
			return m, methodNotAllowed(ctx, "POST")
		}
		return s.serveInfer(ctx, codec.V2, m, pinned)
	}
	return m, &Error{Status: fasthttp.StatusNotFound, Msg: "no KServe V2 endpoint " + strconv.Quote(truncateBytes(ctx.Path())) + "; want .../ready or .../infer"}
}

func v2ModelMetadata(ctx *fasthttp.RequestCtx, sn *snapshot, m *entry) error {
	if !isGet(ctx) {
		return methodNotAllowed(ctx, "GET")
	}
	b := append([]byte(nil), `{"name":`...)
	b = codec.AppendString(b, m.Name)
	b = append(b, `,"versions":[`...)
	for i, v := range sn.reg.Versions(m.Name) {
		if i > 0 {
			b = append(b, ',')
		}
		b = codec.AppendString(b, v.Version)
	}
	b = append(b, `],"platform":`...)
	b = codec.AppendString(b, m.Meta.Platform)
	b = append(b, `,"inputs":`...)
	b = appendSpecs(b, m.Meta.Inputs)
	b = append(b, `,"outputs":`...)
	b = appendSpecs(b, m.Meta.Outputs)
	b = append(b, `,"parameters":{"version":`...)
	b = codec.AppendString(b, m.Version)
	b = append(b, `,"max_batch_size":`...)
	b = strconv.AppendInt(b, int64(m.Meta.MaxBatchSize), 10)
	if m.Config.Description != "" {
		b = append(b, `,"description":`...)
		b = codec.AppendString(b, m.Config.Description)
	}
	for _, k := range sortedKeys(m.Meta.Info) {
		b = append(b, ',')
		b = codec.AppendString(b, k)
		b = append(b, ':')
		b = codec.AppendString(b, m.Meta.Info[k])
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
		b = codec.AppendString(b, sp.Name)
		b = append(b, `,"datatype":"`...)
		b = append(b, sp.DType.String()...)
		b = append(b, `","shape":`...)
		b = codec.AppendShape(b, sp.Shape)
		b = append(b, '}')
	}
	return append(b, ']')
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
