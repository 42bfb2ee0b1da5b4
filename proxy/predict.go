package proxy

import (
	"github.com/coalesce-ml/coalesce/codec"
	"github.com/valyala/fasthttp"
)

// The seed document's protocol: POST /predict {"features": [...]} returns
// {"prediction": [...]}, one element per row. A features array of one
// row's shape predicts one row; an array of rows predicts each.
// ?model={name} (and optionally &version={v}, or &label={l} or the
// Coalesce-Model-Label header) picks a model other than the default. What "prediction" holds is set per model in config.yaml
// (predict.output, predict.transform, predict.labels).

const protoPredict = codec.ProtoPredict

// predict serves POST /predict: the default model, or ?model={name} (and
// optionally &version={v}).
func (s *Server) predict(ctx *fasthttp.RequestCtx, sn *snapshot) (*entry, error) {
	if !ctx.IsPost() {
		return nil, methodNotAllowed(ctx, "POST")
	}
	args := ctx.QueryArgs()
	name, version := args.Peek("model"), args.Peek("version")
	if len(name) == 0 {
		name = view(sn.def) // only read
	}
	label := args.Peek("label")
	if len(label) == 0 {
		label = ctx.Request.Header.Peek(labelHeader)
	}
	e, pinned, err := s.resolve(&ctx.Request.Header, sn, name, version, label)
	if err != nil {
		return nil, err
	}
	return s.serveInfer(ctx, codec.Predict, e, pinned)
}
