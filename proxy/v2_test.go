package proxy

import (
	"math"
	"strconv"
	"strings"
	"testing"
)

// TestV2Malformed sends malformed KServe V2 requests (JSON, binary tensor
// data, raw binary bodies) and checks that each gets a 4xx with a JSON
// {"error": ...} body whose message names the problem.
func TestV2Malformed(t *testing.T) {
	_, c, _ := testServer(t)

	const (
		v2      = "/v2/models/double/infer"
		v2multi = "/v2/models/multi/infer"
		v2strs  = "/v2/models/strs/infer"
		aOK     = `{"name":"a","shape":[1,2],"datatype":"FP32","data":[1,2]}`
		bOK     = `{"name":"b","shape":[1,2],"datatype":"INT32","data":[1,2]}`
		binX    = `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]}`
	)
	x := func(shape, data string) string { // one V2 input "x" of model double
		return `{"inputs":[{"name":"x","shape":` + shape + `,"datatype":"FP32","data":` + data + `}]}`
	}
	ab := func(a, b string) string { // the two V2 inputs of model multi
		return `{"inputs":[` + a + `,` + b + `]}`
	}
	binXSize := func(size int) string {
		return `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":` + strconv.Itoa(size) + `}}]}`
	}
	sv := func(shape, datatype, data string) string { // one V2 input "s" of model strs
		return `{"inputs":[{"name":"s","shape":` + shape + `,"datatype":"` + datatype + `","data":` + data + `}]}`
	}
	binS := func(size int) string { // a binary BYTES input "s" [1,2] of model strs
		return `{"inputs":[{"name":"s","shape":[1,2],"datatype":"BYTES","parameters":{"binary_data_size":` + strconv.Itoa(size) + `}}]}`
	}
	deep := strings.Repeat("[", 9) + "1" + strings.Repeat("]", 9)
	runMalformed(t, c, []malformedCase{
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
	})
}
