package proxy

import (
	"unsafe"

	"github.com/valyala/fasthttp"
)

// labelHeader names the version label a KServe V2 or /predict request
// asks for (TF Serving puts it in the path: /v1/models/{m}/labels/{l}).
const labelHeader = "Coalesce-Model-Label"

// resolve picks the version a request for model name runs on: version
// when it names one; else the version that label (from the model's
// config.yaml labels) names; else the highest served version. pinned
// reports whether the request chose its version (by number or label): a
// pinned request whose version is retired under it is never moved to
// another version (snapshot.successor).
func (s *Server) resolve(ctx *fasthttp.RequestCtx, sn *snapshot, name, version, label []byte) (e *entry, pinned bool, err error) {
	if len(version) == 0 && len(label) > 0 {
		e, err := sn.label(name, label)
		return e, true, err
	}
	e, err = lookup(sn, name, version)
	if err == nil && len(version) == 0 && len(sn.splits) > 0 {
		e = sn.pickSplit(ctx, e)
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
