package proxy

import (
	"bytes"
	"errors"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/codec"
	"github.com/coalesce-ml/coalesce/lifecycle"
)

// Repository is what the admin plane's repository API drives: the model
// manager (lifecycle.Manager).
type Repository interface {
	// Index returns every model version known, with its state and reason.
	Index() []lifecycle.Status
	// Load loads model name from the repository; Unload stops serving it.
	Load(name string) error
	Unload(name string) error
}

// SetRepository makes r answer the repository API (KServe V2's model
// repository extension) and the states of TF Serving's status endpoint.
// Call it before the server serves; without it every served version is
// READY and load and unload are refused.
func (s *Server) SetRepository(r Repository) { s.repo = r }

// index returns the states the repository API reports.
func (s *Server) index() []lifecycle.Status {
	if s.repo != nil {
		return s.repo.Index()
	}
	var out []lifecycle.Status
	for _, mv := range s.Models() {
		out = append(out, lifecycle.Status{Name: mv.Name, Version: mv.Version, State: lifecycle.Ready})
	}
	return out
}

// serveRepository answers the repository API on the admin plane (rest is
// the path after /v2/repository/):
//
//	POST index                   [{"name","version","state","reason"}], {"ready": true} keeps READY ones
//	POST models/{m}/load         200 when loaded; 400 with the reason when it failed
//	POST models/{m}/unload       200 when unloaded
func (s *Server) serveRepository(ctx *fasthttp.RequestCtx, rest []byte) error {
	if !ctx.IsPost() {
		return methodNotAllowed(ctx, "POST")
	}
	if bytes.Equal(rest, []byte("index")) {
		readyOnly := bytes.Contains(bytes.ReplaceAll(ctx.PostBody(), []byte(" "), nil), []byte(`"ready":true`))
		b := append([]byte(nil), '[')
		n := 0
		for _, st := range s.index() {
			if st.Version == "" && readyOnly || readyOnly && st.State != lifecycle.Ready {
				continue
			}
			if n++; n > 1 {
				b = append(b, ',')
			}
			b = append(b, `{"name":`...)
			b = codec.AppendString(b, st.Name)
			b = append(b, `,"version":`...)
			b = codec.AppendString(b, st.Version)
			b = append(b, `,"state":`...)
			b = codec.AppendString(b, string(st.State))
			b = append(b, `,"reason":`...)
			b = codec.AppendString(b, st.Reason)
			b = append(b, '}')
		}
		ctx.SetContentType("application/json")
		ctx.SetBody(append(b, ']'))
		return nil
	}
	name, action, ok := bytes.Cut(bytes.TrimPrefix(rest, []byte("models/")), []byte("/"))
	if !bytes.HasPrefix(rest, []byte("models/")) || !ok || len(name) == 0 || (string(action) != "load" && string(action) != "unload") {
		return &Error{Status: fasthttp.StatusNotFound, Msg: "no repository endpoint " + strconv.Quote(truncateBytes(ctx.Path())) + "; want POST /v2/repository/index or /v2/repository/models/{model}/load|unload"}
	}
	if s.repo == nil {
		return &Error{Status: fasthttp.StatusForbidden, Msg: "model control is off; start with models.control: explicit to load and unload"}
	}
	var err error
	if string(action) == "load" {
		err = s.repo.Load(string(name))
	} else {
		err = s.repo.Unload(string(name))
	}
	switch {
	case err == nil:
		ctx.SetContentType("application/json")
		ctx.SetBodyString("{}")
		return nil
	case errors.Is(err, lifecycle.ErrControl):
		return &Error{Status: fasthttp.StatusForbidden, Msg: err.Error() + "; load and unload need models.control: explicit"}
	case errors.Is(err, lifecycle.ErrNotFound):
		return &Error{Status: fasthttp.StatusNotFound, Msg: err.Error()}
	}
	return &Error{Status: fasthttp.StatusBadRequest, Msg: err.Error()}
}

// tfsStates maps the repository's states to TF Serving's.
var tfsStates = map[lifecycle.State]string{lifecycle.Loading: "LOADING", lifecycle.Ready: "AVAILABLE", lifecycle.Unloading: "UNLOADING", lifecycle.Unavailable: "END"}

// appendTFSStatus appends TF Serving's model_version_status entries of
// model name (only version when not empty) from the repository's states.
func (s *Server) appendTFSStatus(b []byte, name string, version []byte) []byte {
	n := 0
	for _, st := range s.index() {
		if st.Name != name || st.Version == "" || len(version) > 0 && st.Version != string(version) {
			continue
		}
		if n++; n > 1 {
			b = append(b, ',')
		}
		b = append(b, `{"version":`...)
		b = codec.AppendString(b, st.Version)
		if st.State == lifecycle.Ready && !s.versionReady(name, st.Version) {
			// An upstream no replica of which has answered its probe.
			b = append(b, `,"state":"LOADING","status":{"error_code":"UNAVAILABLE","error_message":"no upstream replica has answered its health probe yet"}}`...)
			continue
		}
		b = append(b, `,"state":"`...)
		b = append(b, tfsStates[st.State]...)
		code, msg := "OK", ""
		if st.State != lifecycle.Ready && st.Reason != "" && st.Reason != "unloaded" {
			code, msg = "UNKNOWN", st.Reason
		}
		b = append(b, `","status":{"error_code":"`...)
		b = append(b, code...)
		b = append(b, `","error_message":`...)
		b = codec.AppendString(b, msg)
		b = append(b, `}}`...)
	}
	return b
}

// versionReady reports whether the served version of name can answer
// (backends.Ready: an upstream model needs a replica that answered its
// probe); a version not served is not.
func (s *Server) versionReady(name, version string) bool {
	e, err := s.snap.Load().get(name, version)
	return err == nil && backends.Ready(e.Backend)
}
