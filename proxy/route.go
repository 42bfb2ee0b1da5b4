package proxy

import (
	"bytes"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/codec"
)

// labelHeader names the version label a KServe V2 or /predict request
// asks for (TF Serving puts it in the path: /v1/models/{m}/labels/{l});
// a V2 infer request may name it as the parameter coalesce-model-label
// instead (codec.LabelParameter), in its JSON body or gRPC message.
const labelHeader = "Coalesce-Model-Label"

// v2Label returns the version label a KServe V2 request asks for: its
// Coalesce-Model-Label header or, for an infer request (action "infer"),
// its body's parameters.coalesce-model-label. Both, naming different
// labels, are a 400 naming both.
func (s *Server) v2Label(ctx *fasthttp.RequestCtx, action []byte) ([]byte, error) {
	header := ctx.Request.Header.Peek(labelHeader)
	if string(action) != "infer" || !ctx.IsPost() {
		return header, nil
	}
	param, err := codec.V2Label(ctx.PostBody(), &ctx.Request.Header, &s.cfg.Limits)
	if err != nil || len(param) == 0 {
		return header, err
	}
	if len(header) > 0 && !bytes.Equal(header, param) {
		return nil, badRequest("header %s %q and parameters.%s %q name different version labels; want one of them, or the same", labelHeader, truncateBytes(header), codec.LabelParameter, truncateBytes(param))
	}
	return param, nil
}

// resolve picks the version a request for model name runs on: version
// when it names one; else the version that label (from the model's
// config.yaml labels) names; else the highest served version. pinned
// reports whether the request chose its version (by number or label): a
// pinned request whose version is retired under it is never moved to
// another version (snapshot.successor). hdr (the HTTP request's headers,
// a gRPC call's metadata, or nil) gives the canary split its sticky
// header.
func (s *Server) resolve(hdr Peeker, sn *snapshot, name, version, label []byte) (e *entry, pinned bool, err error) {
	if len(version) == 0 && len(label) > 0 {
		e, err := sn.label(name, label)
		return e, true, err
	}
	e, err = lookup(sn, name, version)
	if err == nil && len(version) == 0 && len(sn.splits) > 0 {
		e = sn.pickSplit(hdr, e)
	}
	return e, len(version) > 0, err
}

// label resolves model name's version label to the entry serving it. The
// labels are the model's config.yaml labels, as its highest served
// version was loaded with.
func (sn *snapshot) label(name, label []byte) (*entry, error) {
	vs := sn.reg.Versions(unsafe.String(unsafe.SliceData(name), len(name)))
	if len(vs) == 0 {
		return lookup(sn, name, nil) // the model's 404
	}
	v, ok := vs[len(vs)-1].Config.Labels[string(label)]
	if !ok {
		return nil, &Error{Status: fasthttp.StatusNotFound, Msg: "model " + truncateBytes(name) + " has no version labelled " + truncateBytes(label) + "; labels are set in the model's config.yaml (labels: {stable: 3})"}
	}
	return lookup(sn, name, []byte(v))
}

// Labeled is an Exchange whose request may name a version label: the gRPC
// front end's, by its parameters["coalesce-model-label"]
// (codec.GRPCLabel). ModelLabel returns "" when the request names none.
type Labeled interface {
	ModelLabel() (string, error)
}

// Peeker is a request's headers for the canary split's sticky header:
// Peek returns the value of the header key names (case-insensitive), or
// nil. *fasthttp.RequestHeader is one; a gRPC front end's Exchange may be
// one, over its call's metadata.
type Peeker interface {
	Peek(key string) []byte
}

// resolveCall is resolve for a Call of Infer: the label is the one x's
// request names, if x is Labeled; the sticky header is x's, if x is a
// Peeker (else the canary split draws per request).
func (s *Server) resolveCall(sn *snapshot, name, version string, x Exchange) (e *entry, pinned bool, err error) {
	var label string
	if l, ok := x.(Labeled); ok && version == "" {
		if label, err = l.ModelLabel(); err != nil {
			return nil, false, err
		}
	}
	hdr, _ := x.(Peeker)
	return s.resolve(hdr, sn, view(name), view(version), view(label))
}

// view is the bytes of str, without a copy; they must not be modified.
func view(str string) []byte { return unsafe.Slice(unsafe.StringData(str), len(str)) }
