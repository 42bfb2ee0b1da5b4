package proxy

import (
	"strings"
	"testing"
)

// TestPredictMalformed sends malformed /predict requests and checks that
// each gets a 4xx with a JSON {"error": ...} body whose message names the
// problem.
func TestPredictMalformed(t *testing.T) {
	_, c, _ := testServer(t)

	const (
		predict = "/predict"
		strs    = "/predict?model=strs"
	)
	deep := strings.Repeat("[", 9) + "1" + strings.Repeat("]", 9)
	huge := `{"features":[` + strings.Repeat("0,", 40000) + `0]}`
	runMalformed(t, c, []malformedCase{
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
		{name: "predict number for a BYTES input", method: "POST", path: strs, body: `{"features":[1,"b"]}`, status: 400, want: []string{"features: element 0 is number", "want a string for datatype BYTES"}},
		{name: "predict string for a BYTES input row", method: "POST", path: strs, body: `{"features":"ab"}`, status: 400, want: []string{"features: got string", "want an array of strings"}},
		{name: "predict BYTES ragged rows", method: "POST", path: strs, body: `{"features":[["a","b"],["c"]]}`, status: 400, want: []string{"features[1]", "has 1 elements; want 2"}},
		{name: "predict BYTES wrong row length", method: "POST", path: strs, body: `{"features":["a","b","c"]}`, status: 400, want: []string{`features: input "s" has shape [1,3]`, "want [-1,2]"}},
		{name: "predict BYTES nested too far", method: "POST", path: strs, body: `{"features":[["a",["b"]]]}`, status: 400, want: []string{"features[0][1]", "want a scalar"}},
		{name: "predict BYTES over max_batch_size", method: "POST", path: strs, body: `{"features":` + strings.ReplaceAll(rows(9, 2), "0", `"x"`) + `}`, status: 400, want: []string{"9 rows", "max_batch_size 8"}},
		{name: "predict BYTES too deep", method: "POST", path: strs, body: `{"features":` + strings.Repeat("[", 9) + `"a"` + strings.Repeat("]", 9) + `}`, status: 400, want: []string{"deeper than 8", "max_json_depth"}},
	})
}
