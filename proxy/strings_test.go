package proxy

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coalesce-ml/coalesce/internal/fakemodel"
	"github.com/coalesce-ml/coalesce/tensor"
)

// strBlob returns strings in the V2 binary BYTES layout.
func strBlob(v ...string) string {
	var b []byte
	for _, s := range v {
		b = tensor.AppendString(b, []byte(s))
	}
	return string(b)
}

// TestStringAndMapEndpoints sends BYTES tensors and reads map outputs
// through every JSON protocol, with exact expected bodies.
func TestStringAndMapEndpoints(t *testing.T) {
	_, c, _ := testServer(t)
	tests := []endpointCase{
		// BYTES in and out: the strs model.
		{"predict one row of strings", "POST", "/predict?model=strs", `{"features":["ab","c"]}`, 200, `{"prediction":["ab+c"]}`},
		{"predict rows, escapes and unicode", "POST", "/predict?model=strs", `{"features":[["a\"b","\u00e9\\"],["x\n","\ud83d\ude00"]]}`, 200,
			`{"prediction":["a\"b+é\\","x\n+😀"]}`},
		{"v2 BYTES flat data", "POST", "/v2/models/strs/infer", `{"id":"s1","inputs":[{"name":"s","shape":[2,2],"datatype":"BYTES","data":["a","bc","","d"]}]}`, 200,
			`{"model_name":"strs","model_version":"1","id":"s1","outputs":[{"name":"echo","datatype":"BYTES","shape":[2,2],"data":["a","bc","","d"]},{"name":"label","datatype":"BYTES","shape":[2],"data":["a+bc","+d"]},{"name":"len","datatype":"INT64","shape":[2],"data":[3,1]}]}`},
		{"v2 BYTES nested data, requested output", "POST", "/v2/models/strs/infer", `{"inputs":[{"name":"s","shape":[2,2],"datatype":"BYTES","data":[["a","b"],["c","\t"]]}],"outputs":[{"name":"label"}]}`, 200,
			`{"model_name":"strs","model_version":"1","outputs":[{"name":"label","datatype":"BYTES","shape":[2],"data":["a+b","c+\t"]}]}`},
		{"tfs instances of strings", "POST", "/v1/models/strs:predict", `{"instances":[["a","b"],["c","d"]]}`, 200,
			`{"predictions":[{"echo":["a","b"],"label":"a+b","len":2},{"echo":["c","d"],"label":"c+d","len":2}]}`},
		{"tfs instance objects of strings", "POST", "/v1/models/strs:predict", `{"instances":[{"s":["a","b"]}]}`, 200,
			`{"predictions":[{"echo":["a","b"],"label":"a+b","len":2}]}`},
		{"tfs columnar strings", "POST", "/v1/models/strs:predict", `{"inputs":[["a","b"]]}`, 200,
			`{"outputs":{"echo":[["a","b"]],"label":["a+b"],"len":[2]}}`},
		{"tfs named columnar strings", "POST", "/v1/models/strs:predict", `{"inputs":{"s":[["a","b"]]}}`, 200,
			`{"outputs":{"echo":[["a","b"]],"label":["a+b"],"len":[2]}}`},
		{"tfs b64 strings", "POST", "/v1/models/strs:predict", `{"instances":[[{"b64":"aGk="},{"b64":"aGk"}]]}`, 200,
			`{"predictions":[{"echo":["hi","hi"],"label":"hi+hi","len":4}]}`},
		// Invalid UTF-8 and control bytes in an output still make valid
		// JSON: U+FFFD for the bad byte, \u0000 for the NUL.
		{"tfs b64 binary string", "POST", "/v1/models/strs:predict", `{"instances":[{"s":[{"b64":"/wA="},"z"]}]}`, 200,
			`{"predictions":[{"echo":["\ufffd\u0000","z"],"label":"\ufffd\u0000+z","len":3}]}`},
		{"v2 BYTES metadata", "GET", "/v2/models/strs", "", 200,
			`{"name":"strs","versions":["1"],"platform":"fake","inputs":[{"name":"s","datatype":"BYTES","shape":[-1,2]}],"outputs":[{"name":"echo","datatype":"BYTES","shape":[-1,2]},{"name":"label","datatype":"BYTES","shape":[-1]},{"name":"len","datatype":"INT64","shape":[-1]}],"parameters":{"version":"1","max_batch_size":8}}`},

		// Missing values: null (JSON) or NaN (binary) only for an input
		// that takes them.
		{"predict null is missing", "POST", "/predict?model=missing", `{"features":[[1,null],[null,null],[2,3]]}`, 200, `{"prediction":[1,2,0]}`},
		{"v2 null is missing", "POST", "/v2/models/missing/infer", `{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[null,5]}]}`, 200,
			`{"model_name":"missing","model_version":"1","outputs":[{"name":"nans","datatype":"INT64","shape":[1],"data":[1]}]}`},
		{"v2 FP64 null is missing", "POST", "/v2/models/missing/infer", `{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP64","data":[[null,null]]}]}`, 200,
			`{"model_name":"missing","model_version":"1","outputs":[{"name":"nans","datatype":"INT64","shape":[1],"data":[2]}]}`},
		{"tfs null is missing", "POST", "/v1/models/missing:predict", `{"instances":[[null,1]]}`, 200, `{"predictions":[1]}`},
		{"tfs columnar null is missing", "POST", "/v1/models/missing:predict", `{"inputs":{"x":[[null,1]]}}`, 200, `{"outputs":[1]}`},
		{"null for an input without missing values", "POST", "/predict?model=double", `{"features":[1,null,3,4]}`, 400,
			`{"error":"features: element 1 is null; want a number for datatype FP32 (null, a missing value, is accepted only by models that take missing values, such as tree ensembles)"}`},
		{"null in an integer input", "POST", "/v2/models/multi/infer", `{"inputs":[{"name":"a","shape":[1,2],"datatype":"FP32","data":[1,2]},{"name":"b","shape":[1,2],"datatype":"INT32","data":[null,2]}]}`, 400,
			`{"error":"inputs[1].data: element 0 is null; want a number for datatype INT32 (null, a missing value, is accepted only by models that take missing values, such as tree ensembles)"}`},

		// Map outputs: the zip models.
		{"predict map rows", "POST", "/predict?model=zip", `{"features":[[1,4,2],[6,0,-1]]}`, 200,
			`{"prediction":[{"cat":0.5,"dog":2,"e\"el":1},{"cat":3,"dog":0,"e\"el":-0.5}]}`},
		{"predict argmax names the key", "POST", "/predict?model=zipmax", `{"features":[[1,4,2],[6,0,-1]]}`, 200, `{"prediction":["dog","cat"]}`},
		{"tfs map rows", "POST", "/v1/models/zip:predict", `{"instances":[[1,4,2],[6,0,-1]]}`, 200,
			`{"predictions":[{"label":1,"probs":{"cat":0.5,"dog":2,"e\"el":1}},{"label":0,"probs":{"cat":3,"dog":0,"e\"el":-0.5}}]}`},
		{"tfs map columnar", "POST", "/v1/models/zip:predict", `{"inputs":[[1,4,2],[6,0,-1]]}`, 200,
			`{"outputs":{"label":[1,0],"probs":[{"cat":0.5,"dog":2,"e\"el":1},{"cat":3,"dog":0,"e\"el":-0.5}]}}`},
		{"v2 map output is the plain tensor", "POST", "/v2/models/zip/infer", `{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,4,2]}]}`, 200,
			`{"model_name":"zip","model_version":"1","outputs":[{"name":"label","datatype":"INT64","shape":[1],"data":[1]},{"name":"probs","datatype":"FP32","shape":[1,3],"data":[0.5,2,1]}]}`},

		// A backend that returns broken BYTES data is a server error, not
		// a panic or invalid JSON.
		{"broken BYTES output", "POST", "/predict?model=badbytes", `{"features":[1]}`, 500,
			`{"error":"model badbytes version 1: output: tensor \"y\": BYTES data: element 0: length 9 runs past the end of the data (1 bytes left): tensor: shape mismatch"}`},
	}
	runEndpointCases(t, c, tests)
}

// TestV2BinaryStrings sends and receives BYTES tensors in the binary
// tensor extension, whose layout is the tensor's own.
func TestV2BinaryStrings(t *testing.T) {
	_, c, _ := testServer(t)
	in := strBlob("héllo", "", "a\x00b", "\xff")
	header := `{"inputs":[{"name":"s","shape":[2,2],"datatype":"BYTES","parameters":{"binary_data_size":` + strconv.Itoa(len(in)) + `}}],` +
		`"outputs":[{"name":"echo","parameters":{"binary_data":true}},{"name":"label"}]}`
	r := do(t, c, "POST", "/v2/models/strs/infer", []byte(header+in), hdrLen(header)...)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	n, err := strconv.Atoi(r.header["Inference-Header-Content-Length"])
	if err != nil || n > len(r.body) {
		t.Fatalf("Inference-Header-Content-Length = %q", r.header["Inference-Header-Content-Length"])
	}
	wantJSON := `{"model_name":"strs","model_version":"1","outputs":[{"name":"echo","datatype":"BYTES","shape":[2,2],"parameters":{"binary_data_size":` + strconv.Itoa(len(in)) + `}},` +
		`{"name":"label","datatype":"BYTES","shape":[2],"data":["héllo+","a\u0000b+\ufffd"]}]}`
	if got := r.body[:n]; got != wantJSON {
		t.Errorf("JSON header = %s; want %s", got, wantJSON)
	}
	if !json.Valid([]byte(r.body[:n])) {
		t.Errorf("JSON header is not valid JSON: %q", r.body[:n])
	}
	if got := r.body[n:]; got != in {
		t.Errorf("binary echo = %q; want the input blob %q", got, in)
	}

	// binary_data_output: every output binary, sizes in the header.
	header = `{"parameters":{"binary_data_output":true},"inputs":[{"name":"s","shape":[1,2],"datatype":"BYTES","data":["ab","c"]}]}`
	r = do(t, c, "POST", "/v2/models/strs/infer", []byte(header))
	n, _ = strconv.Atoi(r.header["Inference-Header-Content-Length"])
	wantBlob := strBlob("ab", "c") + strBlob("ab+c") + string(binary.LittleEndian.AppendUint64(nil, 3))
	if r.status != 200 || n == 0 || r.body[n:] != wantBlob {
		t.Fatalf("binary_data_output: %d, blob %q; want 200 and %q", r.status, r.body[min(n, len(r.body)):], wantBlob)
	}
	for _, want := range []string{`"name":"echo","datatype":"BYTES","shape":[1,2],"parameters":{"binary_data_size":11}`, `"name":"label","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":8}`} {
		if !strings.Contains(r.body[:n], want) {
			t.Errorf("JSON header %s; want it to contain %s", r.body[:n], want)
		}
	}

	// A raw binary request: the body is one row of BYTES elements.
	r = do(t, c, "POST", "/v2/models/strs/infer", []byte(strBlob("x", "yz")), "Inference-Header-Content-Length", "0")
	n, _ = strconv.Atoi(r.header["Inference-Header-Content-Length"])
	if r.status != 200 || r.body[n:] != strBlob("x", "yz")+strBlob("x+yz")+string(binary.LittleEndian.AppendUint64(nil, 3)) {
		t.Fatalf("raw request: %d %q", r.status, r.body)
	}
}

// TestConcurrentStrings sends BYTES requests of different lengths and row
// counts from several goroutines to a model that holds each batch, so
// that requests are merged (tensor.Concat) and split (tensor.Split) by
// byte offsets; each must get exactly its own answer.
func TestConcurrentStrings(t *testing.T) {
	s, c, _ := testServerWith(t, patientConfig())
	e, err := s.snap.Load().get("strs", "")
	must(t, err)
	fb := e.Backend.(*fakemodel.Backend)
	fb.Delay.Store(int64(2 * time.Millisecond))
	const goroutines, perGoroutine = 8, 20
	runConcurrent(t, c, goroutines, perGoroutine, stringCase)
	t.Logf("%d backend calls for %d requests, largest batch %d rows", fb.Calls.Load(), goroutines*perGoroutine, fb.MaxRows.Load())
	if calls := fb.Calls.Load(); calls >= goroutines*perGoroutine {
		t.Errorf("%d backend calls for %d requests; want fewer (requests merged into batches)", calls, goroutines*perGoroutine)
	}
}

// stringCase returns request i of goroutine g to the strs model, in one
// of the protocols, and the exact response it must get. Strings differ in
// content and length for every (g, i).
func stringCase(g, i int) (path string, body []byte, headers []string, want string) {
	str := func(r, k int) string {
		return fmt.Sprintf("g%d-i%d-r%d-k%d-%s", g, i, r, k, strings.Repeat("é", (g+i+r+k)%5))
	}
	nrows := 1 + i%2
	var flat []string
	var labels []string
	for r := range nrows {
		flat = append(flat, str(r, 0), str(r, 1))
		labels = append(labels, str(r, 0)+"+"+str(r, 1))
	}
	quoted := func(v []string) string {
		q := make([]string, len(v))
		for j, s := range v {
			q[j] = strconv.Quote(s)
		}
		return strings.Join(q, ",")
	}
	switch i % 4 {
	case 0: // /predict
		rows := make([]string, nrows)
		for r := range nrows {
			rows[r] = "[" + quoted(flat[2*r:2*r+2]) + "]"
		}
		return "/predict?model=strs", []byte(`{"features":[` + strings.Join(rows, ",") + `]}`), nil,
			`{"prediction":[` + quoted(labels) + `]}`
	case 1: // V2 JSON, label only
		return "/v2/models/strs/infer",
			[]byte(`{"inputs":[{"name":"s","shape":[` + strconv.Itoa(nrows) + `,2],"datatype":"BYTES","data":[` + quoted(flat) + `]}],"outputs":[{"name":"label"}]}`), nil,
			`{"model_name":"strs","model_version":"1","outputs":[{"name":"label","datatype":"BYTES","shape":[` + strconv.Itoa(nrows) + `],"data":[` + quoted(labels) + `]}]}`
	case 2: // V2 binary in and out
		blob := strBlob(flat...)
		hdr := `{"inputs":[{"name":"s","shape":[` + strconv.Itoa(nrows) + `,2],"datatype":"BYTES","parameters":{"binary_data_size":` + strconv.Itoa(len(blob)) + `}}],"outputs":[{"name":"echo","parameters":{"binary_data":true}}]}`
		return "/v2/models/strs/infer", []byte(hdr + blob), hdrLen(hdr),
			`{"model_name":"strs","model_version":"1","outputs":[{"name":"echo","datatype":"BYTES","shape":[` + strconv.Itoa(nrows) + `,2],"parameters":{"binary_data_size":` + strconv.Itoa(len(blob)) + `}}]}` + blob
	default: // TF Serving columnar
		rows := make([]string, nrows)
		lens := make([]string, nrows)
		for r := range nrows {
			rows[r] = "[" + quoted(flat[2*r:2*r+2]) + "]"
			lens[r] = strconv.Itoa(len(flat[2*r]) + len(flat[2*r+1]))
		}
		return "/v1/models/strs:predict", []byte(`{"inputs":[` + strings.Join(rows, ",") + `]}`), nil,
			`{"outputs":{"echo":[` + strings.Join(rows, ",") + `],"label":[` + quoted(labels) + `],"len":[` + strings.Join(lens, ",") + `]}}`
	}
}
