package proxy

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// le32 returns the little-endian FP32 bytes of v, the KServe V2 binary
// tensor layout.
func le32(v ...float32) string {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return string(b)
}

// le32bits returns the little-endian bytes of raw FP32 bit patterns, for
// NaN payloads that float32 arithmetic would not preserve.
func le32bits(v ...uint32) string {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, x)
	}
	return string(b)
}

// hdrLen returns the Inference-Header-Content-Length header pair for a
// JSON header of the binary tensor extension.
func hdrLen(jsonHeader string) []string {
	return []string{"Inference-Header-Content-Length", strconv.Itoa(len(jsonHeader))}
}

// rows returns n rows of width zeros as a JSON array of arrays.
func rows(n, width int) string {
	row := "[" + strings.TrimSuffix(strings.Repeat("0,", width), ",") + "]"
	return "[" + strings.TrimSuffix(strings.Repeat(row+",", n), ",") + "]"
}

// doWire writes wire, one or more raw HTTP/1.1 request bytes, in a single
// write on a new connection and reads one response. It reaches
// fasthttp's ErrorHandler with requests a client would not send, and
// with bodies the server rejects by their Content-Length: a HostClient
// would report its failed write instead of the response, because the
// server answers and closes before the body is sent.
func doWire(t testing.TB, c *fasthttp.HostClient, wire string) result {
	t.Helper()
	conn, err := c.Dial(c.Addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(wire)); err != nil {
		t.Fatalf("write: %v", err)
	}
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(conn)); err != nil {
		t.Fatalf("reading response: %v", err)
	}
	r := result{status: resp.StatusCode(), body: string(resp.Body()), header: map[string]string{}}
	for _, h := range []string{"Content-Type", "Allow", "Connection"} {
		if v := resp.Header.Peek(h); v != nil {
			r.header[h] = string(v)
		}
	}
	return r
}

// post returns the wire form of a JSON POST.
func post(path, body string) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", path, len(body), body)
}

// TestMalformedRequests sends malformed requests over every protocol and
// checks that each gets a 4xx with a JSON {"error": ...} body whose
// message names the problem.
func TestMalformedRequests(t *testing.T) {
	_, c, _ := testServer(t)

	const (
		predict = "/predict"
		v2      = "/v2/models/double/infer"
		v2multi = "/v2/models/multi/infer"
		tfs     = "/v1/models/double:predict"
		tfMulti = "/v1/models/multi:predict"
	)
	x := func(shape, data string) string { // one V2 input "x" of model double
		return `{"inputs":[{"name":"x","shape":` + shape + `,"datatype":"FP32","data":` + data + `}]}`
	}
	ab := func(a, b string) string { // the two V2 inputs of model multi
		return `{"inputs":[` + a + `,` + b + `]}`
	}
	const aOK = `{"name":"a","shape":[1,2],"datatype":"FP32","data":[1,2]}`
	const bOK = `{"name":"b","shape":[1,2],"datatype":"INT32","data":[1,2]}`
	const binX = `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]}`
	binXSize := func(size int) string {
		return `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":` + strconv.Itoa(size) + `}}]}`
	}
	const (
		v2strs  = "/v2/models/strs/infer"
		tfsStrs = "/v1/models/strs:predict"
		strs    = "/predict?model=strs"
	)
	sv := func(shape, datatype, data string) string { // one V2 input "s" of model strs
		return `{"inputs":[{"name":"s","shape":` + shape + `,"datatype":"` + datatype + `","data":` + data + `}]}`
	}
	binS := func(size int) string { // a binary BYTES input "s" [1,2] of model strs
		return `{"inputs":[{"name":"s","shape":[1,2],"datatype":"BYTES","parameters":{"binary_data_size":` + strconv.Itoa(size) + `}}]}`
	}
	deep := strings.Repeat("[", 9) + "1" + strings.Repeat("]", 9)
	huge := `{"features":[` + strings.Repeat("0,", 40000) + `0]}`

	tests := []struct {
		name         string
		method, path string
		headers      []string
		body         string
		status       int
		want         []string // substrings of the error message
		allow        string   // want Allow header (405 only)
		wire         string   // if set, sent verbatim instead (see doWire)
	}{
		// Routing.
		{name: "unknown path", method: "GET", path: "/nope", status: 404, want: []string{`no endpoint "/nope"`, "/v2"}},
		{name: "unknown v2 path", method: "GET", path: "/v2/bogus", status: 404, want: []string{`"/v2/bogus"`, "/v2/models/{model}"}},
		{name: "unknown v2 model action", method: "POST", path: "/v2/models/double/explain", body: "{}", status: 404, want: []string{"explain", ".../infer"}},
		{name: "v2 GET on infer", method: "GET", path: v2, status: 405, want: []string{"method GET", "want POST"}, allow: "POST"},
		{name: "v2 POST on health ready", method: "POST", path: "/v2/health/ready", body: "{}", status: 405, want: []string{"method POST", "want GET"}, allow: "GET"},
		{name: "v2 POST on server metadata", method: "POST", path: "/v2", body: "{}", status: 405, want: []string{"method POST", "want GET"}, allow: "GET"},
		{name: "predict GET", method: "GET", path: predict, status: 405, want: []string{"method GET", "want POST"}, allow: "POST"},
		{name: "tfs PUT on predict", method: "PUT", path: tfs, body: `{"instances":[[1,2,3,4]]}`, status: 405, want: []string{"method PUT", "want POST"}, allow: "POST"},
		{name: "tfs DELETE on status", method: "DELETE", path: "/v1/models/double", status: 405, want: []string{"method DELETE", "want GET"}, allow: "GET"},
		{name: "v2 unknown model", method: "POST", path: "/v2/models/nope/infer", body: x("[1,4]", "[1,2,3,4]"), status: 404, want: []string{`"nope"`, "not found"}},
		{name: "v2 unknown version", method: "POST", path: "/v2/models/double/versions/9/infer", body: x("[1,4]", "[1,2,3,4]"), status: 404, want: []string{`"double"`, `version "9"`}},
		{name: "tfs unknown model", method: "POST", path: "/v1/models/nope:predict", body: `{"instances":[[1,2,3,4]]}`, status: 404, want: []string{`"nope"`, "not found"}},
		{name: "tfs unknown version", method: "POST", path: "/v1/models/double/versions/9:predict", body: `{"instances":[[1,2,3,4]]}`, status: 404, want: []string{`"double"`, `version "9"`}},
		{name: "predict unknown model", method: "POST", path: "/predict?model=nope", body: `{"features":[1,2,3,4]}`, status: 404, want: []string{`"nope"`, "not found"}},
		{name: "predict unknown version", method: "POST", path: "/predict?version=9", body: `{"features":[1,2,3,4]}`, status: 404, want: []string{`"double"`, `version "9"`}},
		{name: "tfs unknown label", method: "POST", path: "/v1/models/double/labels/nope:predict", body: `{"instances":[[1,2,3,4]]}`, status: 404, want: []string{"no version labelled nope", "labels: {stable: 3}"}},
		{name: "tfs classify", method: "POST", path: "/v1/models/double:classify", body: `{"examples":[]}`, status: 400, want: []string{"classify is not supported", "want :predict"}},
		{name: "tfs unknown verb", method: "POST", path: "/v1/models/double:explode", body: "{}", status: 404, want: []string{":explode", "want :predict"}},
		{name: "http malformed request line", method: "?", path: "?", wire: "HELLO\r\n\r\n", status: 400, want: []string{"malformed HTTP request"}},
		{name: "http bad Content-Length", method: "POST", path: predict, wire: "POST /predict HTTP/1.1\r\nHost: test\r\nContent-Length: ten\r\n\r\n", status: 400, want: []string{"malformed HTTP request"}},
		{name: "http headers too large", method: "GET", path: "/v2", wire: "GET /v2 HTTP/1.1\r\nHost: test\r\nX-Big: " + strings.Repeat("a", 8192) + "\r\n\r\n", status: 431, want: []string{"headers are too large"}},
		{name: "v2 empty model name", method: "GET", path: "/v2/models/", status: 404, want: []string{"empty model name"}},
		{name: "v2 empty version", method: "GET", path: "/v2/models/double/versions/", status: 404, want: []string{"empty version"}},
		{name: "tfs empty model name", method: "POST", path: "/v1/models/:predict", body: "{}", status: 404, want: []string{"empty model name"}},
		{name: "tfs empty version", method: "POST", path: "/v1/models/double/versions/:predict", body: "{}", status: 404, want: []string{"empty version"}},
		{name: "tfs unknown subpath", method: "GET", path: "/v1/models/double/signatures", status: 404, want: []string{`"/v1/models/double/signatures"`, "metadata"}},

		// Seed protocol: POST /predict {"features": [...]}.
		{name: "predict empty body", method: "POST", path: predict, body: "", status: 400, want: []string{"body is empty", "JSON object"}},
		{name: "predict not JSON", method: "POST", path: predict, body: `{"features": [1,2,`, status: 400, want: []string{"not valid JSON"}},
		{name: "predict JSON array", method: "POST", path: predict, body: `[1,2,3,4]`, status: 400, want: []string{"JSON array", "want a JSON object"}},
		{name: "predict JSON string", method: "POST", path: predict, body: `"features"`, status: 400, want: []string{"JSON string", "want a JSON object"}},
		{name: "predict too deep", method: "POST", path: predict, body: `{"features":` + deep + `}`, status: 400, want: []string{"deeper than 8", "max_json_depth"}},
		{name: "predict missing features", method: "POST", path: predict, body: `{"feature":[1,2,3,4]}`, status: 400, want: []string{"features: missing"}},
		{name: "predict features a string", method: "POST", path: predict, body: `{"features":"1,2,3,4"}`, status: 400, want: []string{"features: got string", "want an array"}},
		{name: "predict too few values", method: "POST", path: predict, body: `{"features":[1,2,3]}`, status: 400, want: []string{"features", "shape [1,3]", "want [-1,4]"}},
		{name: "predict too many values", method: "POST", path: predict, body: `{"features":[1,2,3,4,5]}`, status: 400, want: []string{"features", "shape [1,5]", "want [-1,4]"}},
		{name: "predict empty features", method: "POST", path: predict, body: `{"features":[]}`, status: 400, want: []string{"features", "want [-1,4]"}},
		{name: "predict ragged rows", method: "POST", path: predict, body: `{"features":[[1,2,3,4],[1,2,3]]}`, status: 400, want: []string{"features[1]", "has 3 elements; want 4"}},
		{name: "predict too many dimensions", method: "POST", path: predict, body: `{"features":[[[1,2,3,4]]]}`, status: 400, want: []string{"features: has 3 dimensions", "want 1"}},
		{name: "predict string value", method: "POST", path: predict, body: `{"features":[1,"2",3,4]}`, status: 400, want: []string{"features: element 1 is string", "want a number"}},
		{name: "predict boolean value", method: "POST", path: predict, body: `{"features":[true,0,0,0]}`, status: 400, want: []string{"element 0 is a boolean", "FP32"}},
		{name: "predict NaN", method: "POST", path: predict, body: `{"features":[0,NaN,0,0]}`, status: 400, want: []string{"element 1 is NaN", "finite"}},
		{name: "predict FP32 overflow", method: "POST", path: predict, body: `{"features":[1e39,0,0,0]}`, status: 400, want: []string{"element 0", "FP32", "finite"}},
		{name: "predict batch over max_batch_size", method: "POST", path: predict, body: `{"features":` + rows(9, 4) + `}`, status: 400, want: []string{"9 rows", "max_batch_size 8"}},
		{name: "predict too many elements", method: "POST", path: predict, body: `{"features":` + rows(251, 4) + `}`, status: 413, want: []string{"features", "max_tensor_elements"}},
		{name: "predict multi-input model", method: "POST", path: "/predict?model=multi", body: `{"features":[1,2]}`, status: 400, want: []string{"model multi has 2 inputs", "KServe V2 or TF Serving"}},
		{name: "body over max_body_bytes", method: "POST", path: predict, wire: post(predict, huge), status: 413, want: []string{"larger than the limit of 65536 bytes", "max_body_bytes"}},

		// KServe V2 JSON.
		{name: "v2 empty body", method: "POST", path: v2, body: "", status: 400, want: []string{"body is empty"}},
		{name: "v2 not JSON", method: "POST", path: v2, body: `{"inputs":[}`, status: 400, want: []string{"not valid JSON"}},
		{name: "v2 JSON array", method: "POST", path: v2, body: `[{"name":"x"}]`, status: 400, want: []string{"JSON array", "want a JSON object"}},
		{name: "v2 too deep", method: "POST", path: v2, body: x("[1,4]", deep), status: 400, want: []string{"deeper than 8", "max_json_depth"}},
		{name: "v2 missing inputs", method: "POST", path: v2, body: `{"id":"1"}`, status: 400, want: []string{"inputs: missing", "want an array"}},
		{name: "v2 inputs an object", method: "POST", path: v2, body: `{"inputs":{"name":"x"}}`, status: 400, want: []string{"inputs: got object", "want an array"}},
		{name: "v2 inputs empty", method: "POST", path: v2, body: `{"inputs":[]}`, status: 400, want: []string{"inputs: empty"}},
		{name: "v2 input not an object", method: "POST", path: v2, body: `{"inputs":[[1,2,3,4]]}`, status: 400, want: []string{"inputs[0]: got array", "want an object"}},
		{name: "v2 input name missing", method: "POST", path: v2, body: `{"inputs":[{"shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`, status: 400, want: []string{"inputs[0].name: missing"}},
		{name: "v2 input name a number", method: "POST", path: v2, body: `{"inputs":[{"name":1,"shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`, status: 400, want: []string{"inputs[0].name: got number", "want a string"}},
		{name: "v2 datatype missing", method: "POST", path: v2, body: `{"inputs":[{"name":"x","shape":[1,4],"data":[1,2,3,4]}]}`, status: 400, want: []string{"inputs[0].datatype: missing"}},
		{name: "v2 datatype unknown", method: "POST", path: v2, body: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FLOAT32","data":[1,2,3,4]}]}`, status: 400, want: []string{`inputs[0].datatype: "FLOAT32" is not a datatype`, "FP32"}},
		{name: "v2 datatype lowercase", method: "POST", path: v2, body: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"fp32","data":[1,2,3,4]}]}`, status: 400, want: []string{`"fp32" is not a datatype`, "FP32"}},
		{name: "v2 datatype BYTES", method: "POST", path: v2, body: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"BYTES","data":["a","b","c","d"]}]}`, status: 400, want: []string{"inputs[0].datatype: BYTES", `input "x" of model double is FP32`, "want datatype FP32"}},
		{name: "v2 shape missing", method: "POST", path: v2, body: `{"inputs":[{"name":"x","datatype":"FP32","data":[1,2,3,4]}]}`, status: 400, want: []string{"inputs[0].shape: missing"}},
		{name: "v2 shape not an array", method: "POST", path: v2, body: x(`"1,4"`, "[1,2,3,4]"), status: 400, want: []string{"inputs[0].shape: got string", "want an array"}},
		{name: "v2 shape negative", method: "POST", path: v2, body: x("[-1,4]", "[1,2,3,4]"), status: 400, want: []string{"inputs[0].shape[0]: -1", "non-negative integer"}},
		{name: "v2 shape fractional", method: "POST", path: v2, body: x("[1,4.5]", "[1,2,3,4]"), status: 400, want: []string{"inputs[0].shape[1]: 4.5", "non-negative integer"}},
		{name: "v2 shape too many dims", method: "POST", path: v2, body: x("[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]", "[1]"), status: 400, want: []string{"17 dimensions", "at most 16"}},
		{name: "v2 data missing", method: "POST", path: v2, body: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32"}]}`, status: 400, want: []string{"inputs[0].data: missing"}},
		{name: "v2 data not an array", method: "POST", path: v2, body: x("[1,4]", "5"), status: 400, want: []string{"inputs[0].data: got number", "want an array of 4 values"}},
		{name: "v2 too few values", method: "POST", path: v2, body: x("[1,4]", "[1,2,3]"), status: 400, want: []string{"inputs[0].data: has 3 values", "want 4"}},
		{name: "v2 too many values", method: "POST", path: v2, body: x("[1,4]", "[1,2,3,4,5]"), status: 400, want: []string{"inputs[0].data", "more than the 4 values"}},
		{name: "v2 string value", method: "POST", path: v2, body: x("[1,4]", `[1,2,"3",4]`), status: 400, want: []string{"inputs[0].data: element 2 is string", "want a number"}},
		{name: "v2 null value", method: "POST", path: v2, body: x("[1,4]", `[null,2,3,4]`), status: 400, want: []string{"element 0 is null"}},
		{name: "v2 boolean in FP32", method: "POST", path: v2, body: x("[1,4]", `[1,false,3,4]`), status: 400, want: []string{"element 1 is a boolean", "FP32"}},
		{name: "v2 NaN", method: "POST", path: v2, body: x("[1,4]", `[1,2,NaN,4]`), status: 400, want: []string{"element 2 is NaN", "finite"}},
		{name: "v2 inf", method: "POST", path: v2, body: x("[1,4]", `[inf,2,3,4]`), status: 400, want: []string{"element 0 is +Inf", "finite"}},
		{name: "v2 -Inf", method: "POST", path: v2, body: x("[1,4]", `[1,-Inf,3,4]`), status: 400, want: []string{"element 1 is -Inf", "finite"}},
		{name: "v2 FP32 overflow", method: "POST", path: v2, body: x("[1,4]", `[1,2,3,-1e39]`), status: 400, want: []string{"element 3", "FP32", "finite"}},
		{name: "v2 FP64 overflows FP32 input", method: "POST", path: v2, body: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP64","data":[1e300,0,0,0]}]}`, status: 400, want: []string{`input "x"`, "FP32"}},
		{name: "v2 id a number", method: "POST", path: v2, body: `{"id":42,"inputs":[]}`, status: 400, want: []string{"id: got number", "want a string"}},
		{name: "v2 parameters not an object", method: "POST", path: v2, body: `{"parameters":[1],"inputs":[]}`, status: 400, want: []string{"parameters: got array", "want an object"}},
		{name: "v2 binary_data_output not bool", method: "POST", path: v2, body: `{"parameters":{"binary_data_output":"yes"},"inputs":[]}`, status: 400, want: []string{"parameters.binary_data_output: got string", "want true or false"}},
		{name: "v2 INT32 overflow as INT32", method: "POST", path: v2multi, body: ab(aOK, `{"name":"b","shape":[1,2],"datatype":"INT32","data":[3e9,1]}`), status: 400, want: []string{"inputs[1].data: element 0 is 3e9", "INT32"}},
		{name: "v2 INT32 overflow as INT64", method: "POST", path: v2multi, body: ab(aOK, `{"name":"b","shape":[1,2],"datatype":"INT64","data":[1,3000000000]}`), status: 400, want: []string{`input "b"`, "3000000000", "INT32"}},
		{name: "v2 INT32 overflow as FP64", method: "POST", path: v2multi, body: ab(aOK, `{"name":"b","shape":[1,2],"datatype":"FP64","data":[-3e9,1]}`), status: 400, want: []string{`input "b"`, "INT32"}},
		{name: "v2 unknown input", method: "POST", path: v2, body: `{"inputs":[{"name":"z","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`, status: 400, want: []string{`no input "z"`, `"x" FP32 [-1,4]`}},
		{name: "v2 missing input", method: "POST", path: v2multi, body: `{"inputs":[` + aOK + `]}`, status: 400, want: []string{`input "b" of model multi is missing`}},
		{name: "v2 duplicate input", method: "POST", path: v2multi, body: `{"inputs":[` + aOK + `,` + bOK + `,` + aOK + `]}`, status: 400, want: []string{"inputs[2].name", `"a" appears twice`}},
		{name: "v2 outputs not an array", method: "POST", path: v2, body: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":{"name":"y"}}`, status: 400, want: []string{"outputs: got object", "want an array"}},
		{name: "v2 unknown output", method: "POST", path: v2, body: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"z"}]}`, status: 400, want: []string{"outputs[0].name", `no output "z"`, `"y", "cls"`}},
		{name: "v2 duplicate output", method: "POST", path: v2, body: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"y"},{"name":"cls"},{"name":"y"}]}`, status: 400, want: []string{"outputs[2].name", `"y" is requested twice`}},
		{name: "v2 output binary_data not bool", method: "POST", path: v2, body: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"y","parameters":{"binary_data":1}}]}`, status: 400, want: []string{"outputs[0].parameters.binary_data: got number", "want true or false"}},
		{name: "v2 batch over max_batch_size", method: "POST", path: v2, body: x("[9,4]", rows(9, 4)), status: 400, want: []string{"9 rows", "max_batch_size 8"}},
		{name: "v2 wrong inner dimension", method: "POST", path: v2, body: x("[1,3]", "[1,2,3]"), status: 400, want: []string{`input "x" has shape [1,3]`, "want [-1,4]"}},
		{name: "v2 empty batch", method: "POST", path: v2, body: x("[0,4]", "[]"), status: 400, want: []string{"batch of 0 rows", "at least one row"}},
		{name: "v2 wrong rank", method: "POST", path: v2, body: x("[4]", "[1,2,3,4]"), status: 400, want: []string{`input "x" has shape [4]`, "want 2 dimensions"}},
		{name: "v2 different batch sizes", method: "POST", path: v2multi, body: ab(aOK, `{"name":"b","shape":[2,2],"datatype":"INT32","data":[1,2,3,4]}`), status: 400, want: []string{`input "b" has batch size 2`, "other inputs have 1"}},
		{name: "v2 too many elements", method: "POST", path: v2, body: x("[300,4]", "[]"), status: 413, want: []string{"inputs[0].shape", "[300,4]", "max_tensor_elements"}},
		{name: "v2 shape product overflows", method: "POST", path: v2, body: x("[4294967296,4294967296]", "[]"), status: 413, want: []string{"inputs[0].shape", "max_tensor_elements"}},

		// KServe V2 binary tensor extension.
		{name: "bin header not a number", method: "POST", path: v2, headers: []string{"Inference-Header-Content-Length", "abc"}, body: binX + le32(1, 2, 3, 4), status: 400, want: []string{`Inference-Header-Content-Length is "abc"`, "non-negative integer"}},
		{name: "bin header negative", method: "POST", path: v2, headers: []string{"Inference-Header-Content-Length", "-5"}, body: binX + le32(1, 2, 3, 4), status: 400, want: []string{`Inference-Header-Content-Length is "-5"`, "non-negative integer"}},
		{name: "bin header larger than body", method: "POST", path: v2, headers: []string{"Inference-Header-Content-Length", "1000"}, body: binX + le32(1, 2, 3, 4), status: 400, want: []string{"Inference-Header-Content-Length is 1000", "only " + strconv.Itoa(len(binX)+16) + " bytes"}},
		{name: "bin header cuts the JSON", method: "POST", path: v2, headers: []string{"Inference-Header-Content-Length", "20"}, body: binX + le32(1, 2, 3, 4), status: 400, want: []string{"not valid JSON"}},
		{name: "bin size does not match shape", method: "POST", path: v2, headers: hdrLen(binXSize(12)), body: binXSize(12) + le32(1, 2, 3), status: 400, want: []string{"inputs[0].parameters.binary_data_size: 12 bytes", "want 16"}},
		{name: "bin size negative", method: "POST", path: v2, headers: hdrLen(binXSize(-16)), body: binXSize(-16) + le32(1, 2, 3, 4), status: 400, want: []string{"binary_data_size: -16", "non-negative integer"}},
		{name: "bin blob too short", method: "POST", path: v2, headers: hdrLen(binX), body: binX + le32(1, 2), status: 400, want: []string{"binary_data_size: 16 bytes", "only 8 bytes"}},
		{name: "bin size without header", method: "POST", path: v2, body: binX, status: 400, want: []string{"binary_data_size", "only 0 bytes"}},
		{name: "bin leftover bytes", method: "POST", path: v2, headers: hdrLen(binX), body: binX + le32(1, 2, 3, 4, 5), status: 400, want: []string{"4 bytes of binary data beyond", "binary_data_size"}},
		{name: "bin trailing bytes without binary inputs", method: "POST", path: v2, headers: hdrLen(x("[1,4]", "[1,2,3,4]")), body: x("[1,4]", "[1,2,3,4]") + "junk", status: 400, want: []string{"4 bytes of binary data beyond"}},
		{name: "bin size and data", method: "POST", path: v2, headers: hdrLen(`{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4],"parameters":{"binary_data_size":16}}]}`),
			body: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4],"parameters":{"binary_data_size":16}}]}` + le32(1, 2, 3, 4), status: 400, want: []string{"inputs[0]: has both data and parameters.binary_data_size"}},
		{name: "bin input parameters not an object", method: "POST", path: v2, body: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4],"parameters":7}]}`, status: 400, want: []string{"inputs[0].parameters: got number", "want an object"}},
		{name: "bin NaN bits", method: "POST", path: v2, headers: hdrLen(binX), body: binX + le32(1, 2, 3) + le32bits(0x7fc00001), status: 400, want: []string{"inputs[0]: element 3 is NaN", "finite"}},
		{name: "bin +Inf bits", method: "POST", path: v2, headers: hdrLen(binX), body: binX + le32bits(0x7f800000) + le32(2, 3, 4), status: 400, want: []string{"inputs[0]: element 0 is +Inf", "finite"}},
		{name: "raw wrong length", method: "POST", path: v2, headers: []string{"Inference-Header-Content-Length", "0"}, body: le32(1, 2, 3), status: 400, want: []string{"raw binary request: body has 12 bytes", "want 16"}},
		{name: "raw empty body", method: "POST", path: v2, headers: []string{"Inference-Header-Content-Length", "0"}, body: "", status: 400, want: []string{"body has 0 bytes", "want 16"}},
		{name: "raw to multi-input model", method: "POST", path: v2multi, headers: []string{"Inference-Header-Content-Length", "0"}, body: le32(1, 2) + le32bits(1, 2), status: 400, want: []string{"raw binary request", "model multi with 2 inputs", "exactly one input"}},
		{name: "raw NaN", method: "POST", path: v2, headers: []string{"Inference-Header-Content-Length", "0"}, body: le32(1, float32(math.NaN()), 3, 4), status: 400, want: []string{"raw input: element 1 is NaN", "finite"}},

		// BYTES (strings) tensors: the strs model, s BYTES [-1,2].
		{name: "v2 numeric datatype for a BYTES input", method: "POST", path: v2strs, body: sv("[1,2]", "FP32", "[1,2]"), status: 400, want: []string{"inputs[0].datatype: FP32", `input "s" of model strs is BYTES`, "want datatype BYTES"}},
		{name: "v2 BYTES numbers", method: "POST", path: v2strs, body: sv("[1,2]", "BYTES", `[1,"b"]`), status: 400, want: []string{"inputs[0].data: element 0 is number", "want a string for datatype BYTES"}},
		{name: "v2 BYTES null", method: "POST", path: v2strs, body: sv("[1,2]", "BYTES", `["a",null]`), status: 400, want: []string{"inputs[0].data: element 1 is null", "want a string"}},
		{name: "v2 BYTES b64 object", method: "POST", path: v2strs, body: sv("[1,2]", "BYTES", `[{"b64":"YQ=="},"b"]`), status: 400, want: []string{"inputs[0].data: element 0 is object", "want a string for datatype BYTES"}},
		{name: "v2 BYTES too few strings", method: "POST", path: v2strs, body: sv("[1,2]", "BYTES", `["a"]`), status: 400, want: []string{"inputs[0].data: has 1 values", "want 2 for shape [1,2]"}},
		{name: "v2 BYTES too many strings", method: "POST", path: v2strs, body: sv("[1,2]", "BYTES", `["a","b","c"]`), status: 400, want: []string{"inputs[0].data", "more than the 2 values"}},
		{name: "v2 BYTES data a string", method: "POST", path: v2strs, body: sv("[1,2]", "BYTES", `"ab"`), status: 400, want: []string{"inputs[0].data: got string", "want an array of 2 values"}},
		{name: "v2 BYTES wrong shape", method: "POST", path: v2strs, body: sv("[1,3]", "BYTES", `["a","b","c"]`), status: 400, want: []string{`input "s" has shape [1,3]`, "want [-1,2]"}},
		{name: "v2 BYTES too many elements", method: "POST", path: v2strs, body: sv("[501,2]", "BYTES", `[]`), status: 413, want: []string{"inputs[0].shape", "max_tensor_elements"}},
		{name: "v2 BYTES too deep", method: "POST", path: v2strs, body: sv("[1,2]", "BYTES", strings.Repeat("[", 8)+`"a","b"`+strings.Repeat("]", 8)), status: 400, want: []string{"deeper than 8", "max_json_depth"}},
		{name: "bin BYTES length past the end", method: "POST", path: v2strs, headers: hdrLen(binS(10)), body: binS(10) + strBlob("a") + "\x09\x00\x00\x00x", status: 400,
			want: []string{"inputs[0]: BYTES binary data: element 1: length 9 runs past the end", "want 2 elements, each a 4-byte little-endian length"}},
		{name: "bin BYTES truncated length", method: "POST", path: v2strs, headers: hdrLen(binS(7)), body: binS(7) + strBlob("a") + "\x01\x00", status: 400, want: []string{"inputs[0]: BYTES binary data: element 1: 2 bytes left", "4-byte length"}},
		{name: "bin BYTES too many elements", method: "POST", path: v2strs, headers: hdrLen(binS(15)), body: binS(15) + strBlob("a", "b", "c"), status: 400, want: []string{"inputs[0]: BYTES binary data of 15 bytes holds 3 elements", "want 2 for shape [1,2]"}},
		{name: "bin BYTES too few elements", method: "POST", path: v2strs, headers: hdrLen(binS(5)), body: binS(5) + strBlob("a"), status: 400, want: []string{"holds 1 elements", "want 2"}},
		{name: "bin BYTES blob too short", method: "POST", path: v2strs, headers: hdrLen(binS(40)), body: binS(40) + strBlob("a", "b"), status: 400, want: []string{"binary_data_size: 40 bytes", "only 10 bytes"}},
		{name: "bin BYTES leftover bytes", method: "POST", path: v2strs, headers: hdrLen(binS(10)), body: binS(10) + strBlob("a", "b") + "zz", status: 400, want: []string{"2 bytes of binary data beyond"}},
		{name: "raw BYTES wrong count", method: "POST", path: v2strs, headers: []string{"Inference-Header-Content-Length", "0"}, body: strBlob("a"), status: 400, want: []string{"raw binary request: BYTES binary data of 5 bytes holds 1 elements", "want 2"}},
		{name: "raw BYTES broken layout", method: "POST", path: v2strs, headers: []string{"Inference-Header-Content-Length", "0"}, body: "\xff\xff\xff\xffab", status: 400, want: []string{"raw binary request: BYTES binary data", "runs past the end"}},
		{name: "tfs number for a BYTES input", method: "POST", path: tfsStrs, body: `{"instances":[[1,"b"]]}`, status: 400, want: []string{"instances: element 0 is number", "want a string for datatype BYTES"}},
		{name: "tfs boolean for a BYTES input", method: "POST", path: tfsStrs, body: `{"instances":[{"s":["a",true]}]}`, status: 400, want: []string{"instances[0].s: element 1 is true", "want a string"}},
		{name: "tfs columnar unknown input with strings", method: "POST", path: tfsStrs, body: `{"inputs":{"s":[["a","b"]],"t":[["c"]]}}`, status: 400, want: []string{`inputs.t: model strs has no input "t"`, `"s" BYTES [-1,2]`}},
		{name: "tfs columnar number for a BYTES input", method: "POST", path: tfsStrs, body: `{"inputs":{"s":[["a",2]]}}`, status: 400, want: []string{"inputs.s: element 1 is number", "want a string for datatype BYTES"}},
		{name: "tfs bad b64", method: "POST", path: tfsStrs, body: `{"instances":[[{"b64":"!!!"},"b"]]}`, status: 400, want: []string{"instances: element 0: b64 is not base64", "standard base64"}},
		{name: "tfs b64 not a string", method: "POST", path: tfsStrs, body: `{"instances":[[{"b64":7},"b"]]}`, status: 400, want: []string{"instances: element 0 is object", "want a string for datatype BYTES"}},
		{name: "tfs object with other keys for a BYTES input", method: "POST", path: tfsStrs, body: `{"instances":[{"s":[{"b64":"YQ==","x":1},"b"]}]}`, status: 400, want: []string{"instances[0].s: element 0 is object", "want a string"}},
		{name: "tfs BYTES wrong shape", method: "POST", path: tfsStrs, body: `{"instances":[["a","b","c"]]}`, status: 400, want: []string{`instances: input "s" has shape [1,3]`, "want [-1,2]"}},
		{name: "tfs BYTES too many elements", method: "POST", path: tfsStrs, body: `{"instances":` + strings.ReplaceAll(rows(501, 2), "0", `""`) + `}`, status: 413, want: []string{"instances", "max_tensor_elements"}},
		{name: "predict number for a BYTES input", method: "POST", path: strs, body: `{"features":[1,"b"]}`, status: 400, want: []string{"features: element 0 is number", "want a string for datatype BYTES"}},
		{name: "predict string for a BYTES input row", method: "POST", path: strs, body: `{"features":"ab"}`, status: 400, want: []string{"features: got string", "want an array of strings"}},
		{name: "predict BYTES ragged rows", method: "POST", path: strs, body: `{"features":[["a","b"],["c"]]}`, status: 400, want: []string{"features[1]", "has 1 elements; want 2"}},
		{name: "predict BYTES wrong row length", method: "POST", path: strs, body: `{"features":["a","b","c"]}`, status: 400, want: []string{`features: input "s" has shape [1,3]`, "want [-1,2]"}},
		{name: "predict BYTES nested too far", method: "POST", path: strs, body: `{"features":[["a",["b"]]]}`, status: 400, want: []string{"features[0][1]", "want a scalar"}},
		{name: "predict BYTES over max_batch_size", method: "POST", path: strs, body: `{"features":` + strings.ReplaceAll(rows(9, 2), "0", `"x"`) + `}`, status: 400, want: []string{"9 rows", "max_batch_size 8"}},
		{name: "predict BYTES too deep", method: "POST", path: strs, body: `{"features":` + strings.Repeat("[", 9) + `"a"` + strings.Repeat("]", 9) + `}`, status: 400, want: []string{"deeper than 8", "max_json_depth"}},

		// TF Serving predict.
		{name: "tfs empty body", method: "POST", path: tfs, body: "", status: 400, want: []string{"body is empty"}},
		{name: "tfs not JSON", method: "POST", path: tfs, body: `{"instances": [[1,2,3,4]]`, status: 400, want: []string{"not valid JSON"}},
		{name: "tfs JSON array", method: "POST", path: tfs, body: `[[1,2,3,4]]`, status: 400, want: []string{"JSON array", "want a JSON object"}},
		{name: "tfs too deep", method: "POST", path: tfs, body: `{"instances":` + deep + `}`, status: 400, want: []string{"deeper than 8", "max_json_depth"}},
		{name: "tfs both instances and inputs", method: "POST", path: tfs, body: `{"instances":[[1,2,3,4]],"inputs":[[1,2,3,4]]}`, status: 400, want: []string{"both instances and inputs", "exactly one"}},
		{name: "tfs neither instances nor inputs", method: "POST", path: tfs, body: `{"signature_name":"serving_default"}`, status: 400, want: []string{"neither instances nor inputs"}},
		{name: "tfs unknown signature", method: "POST", path: tfs, body: `{"signature_name":"classify_x","instances":[[1,2,3,4]]}`, status: 400, want: []string{`signature_name: "classify_x"`, "serving_default"}},
		{name: "tfs signature a number", method: "POST", path: tfs, body: `{"signature_name":1,"instances":[[1,2,3,4]]}`, status: 400, want: []string{"signature_name: got number", "want a string"}},
		{name: "tfs instances empty", method: "POST", path: tfs, body: `{"instances":[]}`, status: 400, want: []string{"instances: empty", "at least one row"}},
		{name: "tfs instances an object", method: "POST", path: tfs, body: `{"instances":{"x":[1,2,3,4]}}`, status: 400, want: []string{"instances: got object", "want an array"}},
		{name: "tfs ragged instances", method: "POST", path: tfs, body: `{"instances":[[1,2,3,4],[1,2,3]]}`, status: 400, want: []string{"instances[1]: has 3 elements; want 4", "rectangular"}},
		{name: "tfs ragged nested instances", method: "POST", path: tfs, body: `{"instances":[[1,2,3,4],[1,2,3,[4]]]}`, status: 400, want: []string{"instances[1][3]", "want a scalar"}},
		{name: "tfs wrong inner dimension", method: "POST", path: tfs, body: `{"instances":[[1,2,3]]}`, status: 400, want: []string{`instances: input "x" has shape [1,3]`, "want [-1,4]"}},
		{name: "tfs string value", method: "POST", path: tfs, body: `{"instances":[[1,2,3,"4"]]}`, status: 400, want: []string{"instances: element 3 is string", "want a number"}},
		{name: "tfs b64 value", method: "POST", path: tfs, body: `{"instances":[{"x":{"b64":"AAAA"}}]}`, status: 400, want: []string{"instances[0].x", "object", "want a number"}},
		{name: "tfs -Inf", method: "POST", path: tfs, body: `{"instances":[[1,2,3,-Inf]]}`, status: 400, want: []string{"element 3 is -Inf", "finite"}},
		// fastjson reads inf and nan but not TF Serving's Infinity token, so
		// that one fails as JSON; it must still be a 400.
		{name: "tfs Infinity token", method: "POST", path: tfs, body: `{"instances":[[1,2,3,Infinity]]}`, status: 400, want: []string{"not valid JSON"}},
		{name: "tfs batch over max_batch_size", method: "POST", path: tfs, body: `{"instances":` + rows(9, 4) + `}`, status: 400, want: []string{"9 rows", "max_batch_size 8"}},
		{name: "tfs too many elements", method: "POST", path: tfs, body: `{"instances":` + rows(251, 4) + `}`, status: 413, want: []string{"instances", "max_tensor_elements"}},
		{name: "tfs plain instances to multi-input model", method: "POST", path: tfMulti, body: `{"instances":[[1,2]]}`, status: 400, want: []string{"rows are plain values", "model multi has 2 inputs"}},
		{name: "tfs instance objects missing key in row 0", method: "POST", path: tfMulti, body: `{"instances":[{"a":[1,2]}]}`, status: 400, want: []string{`instances[0]: input "b" is missing`}},
		{name: "tfs instance objects missing key in row 1", method: "POST", path: tfMulti, body: `{"instances":[{"a":[1,2],"b":[1,2]},{"a":[1,2]}]}`, status: 400, want: []string{`instances[1]: input "b" is missing`}},
		{name: "tfs instance objects extra key", method: "POST", path: tfMulti, body: `{"instances":[{"a":[1,2],"b":[1,2],"c":[1]}]}`, status: 400, want: []string{"instances[0]", `no input "c"`}},
		{name: "tfs instance objects duplicate key", method: "POST", path: tfMulti, body: `{"instances":[{"a":[1,2],"b":[1,2],"a":[3,4]}]}`, status: 400, want: []string{"instances[0]", `"a" appears twice`}},
		{name: "tfs instance object then array", method: "POST", path: tfMulti, body: `{"instances":[{"a":[1,2],"b":[1,2]},[1,2]]}`, status: 400, want: []string{"instances[1]: got array", "want an object"}},
		{name: "tfs INT32 overflow", method: "POST", path: tfMulti, body: `{"instances":[{"a":[1,2],"b":[3000000000,1]}]}`, status: 400, want: []string{"instances[0].b: element 0 is 3000000000", "INT32"}},
		{name: "tfs fractional INT32", method: "POST", path: tfMulti, body: `{"instances":[{"a":[1,2],"b":[1.5,1]}]}`, status: 400, want: []string{"instances[0].b: element 0 is 1.5", "want an integer"}},
		{name: "tfs columnar one tensor to multi-input model", method: "POST", path: tfMulti, body: `{"inputs":[[1,2]]}`, status: 400, want: []string{"inputs: got one tensor", "model multi has 2 inputs"}},
		{name: "tfs columnar unknown input", method: "POST", path: tfMulti, body: `{"inputs":{"a":[[1,2]],"b":[[1,2]],"c":[[1,2]]}}`, status: 400, want: []string{`no input "c"`}},
		{name: "tfs columnar missing input", method: "POST", path: tfMulti, body: `{"inputs":{"a":[[1,2]]}}`, status: 400, want: []string{`inputs: input "b" of model multi is missing`}},
		{name: "tfs columnar duplicate input", method: "POST", path: tfMulti, body: `{"inputs":{"a":[[1,2]],"b":[[1,2]],"a":[[3,4]]}}`, status: 400, want: []string{`"a" appears twice`}},
		{name: "tfs columnar different batch sizes", method: "POST", path: tfMulti, body: `{"inputs":{"a":[[1,2]],"b":[[1,2],[3,4]]}}`, status: 400, want: []string{`input "b" has batch size 2`, "other inputs have 1"}},
		{name: "tfs columnar ragged", method: "POST", path: tfMulti, body: `{"inputs":{"a":[[1,2],[3]],"b":[[1,2],[3,4]]}}`, status: 400, want: []string{"inputs.a[1]: has 1 elements; want 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r result
			if tt.wire != "" {
				r = doWire(t, c, tt.wire)
			} else {
				r = do(t, c, tt.method, tt.path, []byte(tt.body), tt.headers...)
			}
			if r.status != tt.status {
				t.Errorf("%s %s status = %d; want %d (body %s)", tt.method, tt.path, r.status, tt.status, r.body)
			}
			msg := errorMessage(t, r)
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error = %q; want it to contain %q", msg, w)
				}
			}
			if got, want := r.header["Allow"], tt.allow; got != want {
				t.Errorf("Allow = %q; want %q", got, want)
			}
		})
	}
}
