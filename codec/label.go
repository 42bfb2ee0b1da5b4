package codec

import (
	"bytes"
	"strconv"

	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/proto/inferencepb"
)

// LabelParameter is the KServe V2 request parameter, in a REST body's
// "parameters" object or a gRPC ModelInferRequest's parameters map, that
// names the version label a request runs on: the V2 equivalent of TF
// Serving's /v1/models/{m}/labels/{label}, named as the
// Coalesce-Model-Label header is, in lower case. The decoders ignore it; the router reads it first, with
// V2Label or GRPCLabel, since the version decides how the body decodes.
const LabelParameter = "coalesce-model-label"

// labelKey is what V2Label looks for before it parses: without the
// quotes, since a search led by '"' stops at every string of a JSON body
// (BenchmarkHandler/v2 against the code before the parameter: +4.8 %
// with the quotes, +1.5 % without; medians of 8 interleaved runs).
var labelKey = []byte(LabelParameter)

// V2Label returns the value of parameters.coalesce-model-label of a KServe
// V2 infer body (nil when absent), whose JSON part Inference-Header-Content-
// Length in h delimits as in Decode. A body that does not contain the key
// as written is not parsed, so that requests without it pay one byte scan;
// a body that does is validated, and errors are *Error (BadRequest). The
// returned slice is a view of body unless the value has escapes.
func V2Label(body []byte, h Header, lim *config.Limits) ([]byte, error) {
	if !bytes.Contains(body, labelKey) { // the common case: no header lookup either
		return nil, nil
	}
	jsonPart := body
	if hdr := h.Peek("Inference-Header-Content-Length"); hdr != nil {
		n, err := strconv.Atoi(string(hdr))
		if err != nil || n < 0 || n > len(body) {
			return nil, nil // Decode reports it
		}
		jsonPart = body[:n]
		if !bytes.Contains(jsonPart, labelKey) {
			return nil, nil // only in the binary data
		}
	}
	obj, err := parseJSON(jsonPart, lim)
	if err != nil {
		return nil, err
	}
	var at [1]span
	if lookup(jsonPart, obj, []string{"parameters"}, at[:]); at[0].start < 0 || jsonPart[at[0].start] != '{' {
		return nil, nil // absent, or Decode reports it
	}
	if lookup(jsonPart, at[0].start, []string{LabelParameter}, at[:]); at[0].start < 0 {
		return nil, nil
	}
	i := at[0].start
	if jsonPart[i] != '"' {
		return nil, badRequest("parameters.%s: got %s; want a string, the version label", LabelParameter, typeAt(jsonPart, i))
	}
	raw := rawString(jsonPart, i)
	if bytes.IndexByte(raw, '\\') >= 0 {
		raw = appendUnescaped(nil, raw)
	}
	if len(raw) == 0 {
		return nil, badRequest("parameters.%s: empty; want the version label", LabelParameter)
	}
	return raw, nil
}

// GRPCLabel returns the string_param of m's parameters["coalesce-model-label"]
// ("" when absent); another kind of parameter is a BadRequest *Error.
func GRPCLabel(m *inferencepb.ModelInferRequest) (string, error) {
	p, ok := m.GetParameters()[LabelParameter]
	if !ok {
		return "", nil
	}
	s, ok := p.GetParameterChoice().(*inferencepb.InferParameter_StringParam)
	if !ok || s.StringParam == "" {
		return "", badRequest("parameters[%q]: want string_param, the version label", LabelParameter)
	}
	return s.StringParam, nil
}
