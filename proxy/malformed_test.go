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

// malformedCase is a request that must fail: with status, an error
// message containing every want, and for a 405 the Allow header.
type malformedCase struct {
	name         string
	method, path string
	headers      []string
	body         string
	status       int
	want         []string // substrings of the error message
	allow        string   // want Allow header (405 only)
	wire         string   // if set, sent verbatim instead (see doWire)
}

// runMalformed sends each case to c and checks its answer. The cases live
// in one file per protocol (predict_test.go, v2_test.go, tfs_test.go);
// routing and HTTP-level cases are here.
func runMalformed(t *testing.T, c *fasthttp.HostClient, tests []malformedCase) {
	t.Helper()
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

// TestMalformedRouting sends requests for unknown paths, models, versions
// and methods, and malformed HTTP, and checks that each gets a 4xx with a
// JSON {"error": ...} body whose message names the problem.
func TestMalformedRouting(t *testing.T) {
	_, c, _ := testServer(t)
	const (
		predict = "/predict"
		v2      = "/v2/models/double/infer"
		tfs     = "/v1/models/double:predict"
	)
	x := func(shape, data string) string { // one V2 input "x" of model double
		return `{"inputs":[{"name":"x","shape":` + shape + `,"datatype":"FP32","data":` + data + `}]}`
	}
	runMalformed(t, c, []malformedCase{
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
	})
}
