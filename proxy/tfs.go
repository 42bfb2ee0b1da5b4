package proxy

import (
	"bytes"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/codec"
)

// TensorFlow Serving REST endpoints (reference/protocols.md §2):
// GET /v1/models/{m}[/versions/{v}|/labels/{l}], GET .../metadata,
// POST ...:predict.

const protoTFS = codec.ProtoTFS

// routeTFS serves rest, the path after /v1/models/, and returns the model
// version, when one was resolved, for metrics.
func (s *Server) routeTFS(ctx *fasthttp.RequestCtx, sn *snapshot, rest []byte) (*entry, error) {
	path, verb, hasVerb := bytes.Cut(rest, []byte(":"))
	name, tail, _ := bytes.Cut(path, []byte("/"))
	var version, label []byte
	switch {
	case bytes.HasPrefix(tail, []byte("versions/")):
		version, tail, _ = bytes.Cut(tail[len("versions/"):], []byte("/"))
		if len(version) == 0 {
			return nil, &Error{Status: fasthttp.StatusNotFound, Msg: "empty version in path; want /v1/models/{model}/versions/{version}"}
		}
	case bytes.HasPrefix(tail, []byte("labels/")):
		label, tail, _ = bytes.Cut(tail[len("labels/"):], []byte("/"))
		if len(label) == 0 {
			return nil, &Error{Status: fasthttp.StatusNotFound, Msg: "empty label in path; want /v1/models/{model}/labels/{label}"}
		}
	}
	if len(name) == 0 {
		return nil, &Error{Status: fasthttp.StatusNotFound, Msg: "empty model name in path; want /v1/models/{model}"}
	}
	m, pinned, err := s.resolve(&ctx.Request.Header, sn, name, version, label)
	if err != nil {
		return nil, err
	}
	if len(label) > 0 {
		version = []byte(m.Version) // the status of the labelled version
	}
	switch {
	case hasVerb && string(verb) == "predict" && len(tail) == 0:
		if !ctx.IsPost() {
			return m, methodNotAllowed(ctx, "POST")
		}
		return s.serveInfer(ctx, codec.TFS, m, pinned)
	case hasVerb && (string(verb) == "classify" || string(verb) == "regress") && len(tail) == 0:
		return m, badRequest("%s is not supported for model %s (no tf.Example signature); want :predict", verb, m.Name)
	case hasVerb:
		return m, &Error{Status: fasthttp.StatusNotFound, Msg: "unknown method :" + truncateBytes(verb) + "; want :predict"}
	case len(tail) == 0:
		if !isGet(ctx) {
			return m, methodNotAllowed(ctx, "GET")
		}
		return m, s.tfsStatus(ctx, m.Name, version)
	case string(tail) == "metadata":
		if !isGet(ctx) {
			return m, methodNotAllowed(ctx, "GET")
		}
		return m, tfsMetadata(ctx, m)
	}
	return m, &Error{Status: fasthttp.StatusNotFound, Msg: "no TF Serving endpoint " + strconv.Quote(truncateBytes(ctx.Path())) + "; want /v1/models/{model}[/versions/{version}|/labels/{label}][/metadata|:predict]"}
}

func (s *Server) tfsStatus(ctx *fasthttp.RequestCtx, name string, version []byte) error {
	b := append([]byte(nil), `{"model_version_status":[`...)
	b = s.appendTFSStatus(b, name, version)
	b = append(b, "]}"...)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
	return nil
}

func tfsMetadata(ctx *fasthttp.RequestCtx, m *entry) error {
	b := append([]byte(nil), `{"model_spec":{"name":`...)
	b = codec.AppendString(b, m.Name)
	b = append(b, `,"signature_name":"","version":`...)
	b = codec.AppendString(b, m.Version)
	b = append(b, `},"metadata":{"signature_def":{"signature_def":{"serving_default":{"inputs":`...)
	b = appendTFSpecs(b, m.Meta.Inputs)
	b = append(b, `,"outputs":`...)
	b = appendTFSpecs(b, m.Meta.Outputs)
	b = append(b, `,"method_name":"tensorflow/serving/predict"}}}}}`...)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
	return nil
}

func appendTFSpecs(b []byte, specs []backends.TensorSpec) []byte {
	b = append(b, '{')
	for i, sp := range specs {
		if i > 0 {
			b = append(b, ',')
		}
		b = codec.AppendString(b, sp.Name)
		b = append(b, `:{"dtype":"`...)
		b = append(b, sp.DType.TFName()...)
		b = append(b, `","tensor_shape":{"dim":[`...)
		for j, d := range sp.Shape {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"size":"`...)
			b = strconv.AppendInt(b, d, 10)
			b = append(b, `","name":""}`...)
		}
		b = append(b, `],"unknown_rank":false},"name":`...)
		b = codec.AppendString(b, sp.Name)
		b = append(b, '}')
	}
	return append(b, '}')
}
