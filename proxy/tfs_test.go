package proxy

import (
	"strings"
	"testing"
)

// TestTFSMalformed sends malformed TF Serving predict requests and checks
// that each gets a 4xx with a JSON {"error": ...} body whose message names
// the problem.
func TestTFSMalformed(t *testing.T) {
	_, c, _ := testServer(t)

	const (
		predict = "/predict"
		tfs     = "/v1/models/double:predict"
		tfMulti = "/v1/models/multi:predict"
		tfsStrs = "/v1/models/strs:predict"
	)
	deep := strings.Repeat("[", 9) + "1" + strings.Repeat("]", 9)
	runMalformed(t, c, []malformedCase{
		{name: "tfs number for a BYTES input", method: "POST", path: tfsStrs, body: `{"instances":[[1,"b"]]}`, status: 400, want: []string{"instances: element 0 is number", "want a string for datatype BYTES"}},
		{name: "tfs boolean for a BYTES input", method: "POST", path: tfsStrs, body: `{"instances":[{"s":["a",true]}]}`, status: 400, want: []string{"instances[0].s: element 1 is true", "want a string"}},
		{name: "tfs columnar unknown input with strings", method: "POST", path: tfsStrs, body: `{"inputs":{"s":[["a","b"]],"t":[["c"]]}}`, status: 400, want: []string{`inputs.t: model strs has no input "t"`, `"s" BYTES [-1,2]`}},
		{name: "tfs columnar number for a BYTES input", method: "POST", path: tfsStrs, body: `{"inputs":{"s":[["a",2]]}}`, status: 400, want: []string{"inputs.s: element 1 is number", "want a string for datatype BYTES"}},
		{name: "tfs bad b64", method: "POST", path: tfsStrs, body: `{"instances":[[{"b64":"!!!"},"b"]]}`, status: 400, want: []string{"instances: element 0: b64 is not base64", "standard base64"}},
		{name: "tfs b64 not a string", method: "POST", path: tfsStrs, body: `{"instances":[[{"b64":7},"b"]]}`, status: 400, want: []string{"instances: element 0 is object", "want a string for datatype BYTES"}},
		{name: "tfs object with other keys for a BYTES input", method: "POST", path: tfsStrs, body: `{"instances":[{"s":[{"b64":"YQ==","x":1},"b"]}]}`, status: 400, want: []string{"instances[0].s: element 0 is object", "want a string"}},
		{name: "tfs BYTES wrong shape", method: "POST", path: tfsStrs, body: `{"instances":[["a","b","c"]]}`, status: 400, want: []string{`instances: input "s" has shape [1,3]`, "want [-1,2]"}},
		{name: "tfs BYTES too many elements", method: "POST", path: tfsStrs, body: `{"instances":` + strings.ReplaceAll(rows(501, 2), "0", `""`) + `}`, status: 413, want: []string{"instances", "max_tensor_elements"}},

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
	})
}
