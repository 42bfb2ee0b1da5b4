package proxy

import (
	"encoding/binary"
	"math"
	"strconv"
	"strings"
	"testing"
)

// TestEndpoints exercises every data-plane endpoint end to end over an
// in-memory listener, with exact expected bodies.
func TestEndpoints(t *testing.T) {
	_, c, _ := testServer(t)
	tests := []endpointCase{
		{"predict one row", "POST", "/predict", `{"features":[1,5,2,3]}`, 200, `{"prediction":["b"]}`},
		{"predict rows", "POST", "/predict", `{"features":[[1,5,2,3],[9,0,0,0]]}`, 200, `{"prediction":["b","a"]}`},
		{"predict other model", "POST", "/predict?model=multi", `{"features":[[1,2]]}`, 400, `{"error":"model multi has 2 inputs and /predict fills one; want the KServe V2 or TF Serving endpoint, or predict.input in the model's config.yaml"}`},
		{"predict version", "POST", "/predict?model=double&version=1", `{"features":[0,0,0,7]}`, 200, `{"prediction":["d"]}`},
		{"v2 server metadata", "GET", "/v2", "", 200, `{"name":"coalesce","version":"test","extensions":["binary_tensor_data","model_repository"]}`},
		{"v2 live", "GET", "/v2/health/live", "", 200, ""},
		{"v2 ready", "GET", "/v2/health/ready", "", 200, ""},
		{"v2 model ready", "GET", "/v2/models/double/ready", "", 200, ""},
		{"v2 version ready", "GET", "/v2/models/double/versions/1/ready", "", 200, ""},
		{"v2 model metadata", "GET", "/v2/models/multi", "", 200,
			`{"name":"multi","versions":["1"],"platform":"fake","inputs":[{"name":"a","datatype":"FP32","shape":[-1,2]},{"name":"b","datatype":"INT32","shape":[-1,2]}],"outputs":[{"name":"sum","datatype":"FP64","shape":[-1,2]}],"parameters":{"version":"1","max_batch_size":0,"description":"two inputs"}}`},
		{"v2 version metadata", "GET", "/v2/models/double/versions/1", "", 200,
			`{"name":"double","versions":["1","2"],"platform":"fake","inputs":[{"name":"x","datatype":"FP32","shape":[-1,4]}],"outputs":[{"name":"y","datatype":"FP32","shape":[-1,4]},{"name":"cls","datatype":"INT64","shape":[-1]}],"parameters":{"version":"1","max_batch_size":8}}`},
		{"v2 infer", "POST", "/v2/models/double/infer", `{"id":"r1","inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,0.5]}]}`, 200,
			`{"model_name":"double","model_version":"2","id":"r1","outputs":[{"name":"y","datatype":"FP32","shape":[1,4],"data":[2,4,6,1]},{"name":"cls","datatype":"INT64","shape":[1],"data":[2]}]}`},
		{"v2 infer nested data, requested output", "POST", "/v2/models/double/versions/1/infer", `{"inputs":[{"name":"x","shape":[2,4],"datatype":"FP32","data":[[1,2,3,4],[4,3,2,1]]}],"outputs":[{"name":"cls"}]}`, 200,
			`{"model_name":"double","model_version":"1","outputs":[{"name":"cls","datatype":"INT64","shape":[2],"data":[3,0]}]}`},
		{"v2 infer converts datatypes", "POST", "/v2/models/multi/infer", `{"inputs":[{"name":"b","shape":[1,2],"datatype":"INT64","data":[1,2]},{"name":"a","shape":[1,2],"datatype":"FP64","data":[0.5,0.25]}]}`, 200,
			`{"model_name":"multi","model_version":"1","outputs":[{"name":"sum","datatype":"FP64","shape":[1,2],"data":[1.5,2.25]}]}`},
		{"tfs status", "GET", "/v1/models/double", "", 200,
			`{"model_version_status":[{"version":"1","state":"AVAILABLE","status":{"error_code":"OK","error_message":""}},{"version":"2","state":"AVAILABLE","status":{"error_code":"OK","error_message":""}}]}`},
		{"tfs version status", "GET", "/v1/models/double/versions/2", "", 200,
			`{"model_version_status":[{"version":"2","state":"AVAILABLE","status":{"error_code":"OK","error_message":""}}]}`},
		{"tfs metadata", "GET", "/v1/models/multi/metadata", "", 200,
			`{"model_spec":{"name":"multi","signature_name":"","version":"1"},"metadata":{"signature_def":{"signature_def":{"serving_default":{"inputs":{"a":{"dtype":"DT_FLOAT","tensor_shape":{"dim":[{"size":"-1","name":""},{"size":"2","name":""}],"unknown_rank":false},"name":"a"},"b":{"dtype":"DT_INT32","tensor_shape":{"dim":[{"size":"-1","name":""},{"size":"2","name":""}],"unknown_rank":false},"name":"b"}},"outputs":{"sum":{"dtype":"DT_DOUBLE","tensor_shape":{"dim":[{"size":"-1","name":""},{"size":"2","name":""}],"unknown_rank":false},"name":"sum"}},"method_name":"tensorflow/serving/predict"}}}}}`},
		{"tfs predict instances", "POST", "/v1/models/double:predict", `{"instances":[[1,2,3,4]]}`, 200,
			`{"predictions":[{"y":[2,4,6,8],"cls":3}]}`},
		{"tfs predict instances objects", "POST", "/v1/models/multi/versions/1:predict", `{"signature_name":"serving_default","instances":[{"a":[1,2],"b":[3,4]},{"a":[0,0],"b":[1,1]}]}`, 200,
			`{"predictions":[[4,6],[1,1]]}`},
		{"tfs predict columnar", "POST", "/v1/models/multi:predict", `{"inputs":{"a":[[1,2]],"b":[[3,4]]}}`, 200,
			`{"outputs":[[4,6]]}`},
		{"tfs predict columnar single input", "POST", "/v1/models/double:predict", `{"inputs":[[1,0,0,0]]}`, 200,
			`{"outputs":{"y":[[2,0,0,0]],"cls":[0]}}`},
	}
	runEndpointCases(t, c, tests)
}

func TestV2BinaryTensors(t *testing.T) {
	_, c, _ := testServer(t)
	header := `{"inputs":[{"name":"x","shape":[2,4],"datatype":"FP32","parameters":{"binary_data_size":32}}],` +
		`"outputs":[{"name":"y","parameters":{"binary_data":true}},{"name":"cls"}]}`
	body := []byte(header)
	for _, v := range []float32{1, 2, 3, 4, -1, -2, -3, 0} {
		body = binary.LittleEndian.AppendUint32(body, math.Float32bits(v))
	}
	r := do(t, c, "POST", "/v2/models/double/infer", body, "Inference-Header-Content-Length", strconv.Itoa(len(header)), "Content-Type", "application/octet-stream")
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	n, err := strconv.Atoi(r.header["Inference-Header-Content-Length"])
	if err != nil {
		t.Fatalf("Inference-Header-Content-Length = %q", r.header["Inference-Header-Content-Length"])
	}
	wantJSON := `{"model_name":"double","model_version":"2","outputs":[{"name":"y","datatype":"FP32","shape":[2,4],"parameters":{"binary_data_size":32}},{"name":"cls","datatype":"INT64","shape":[2],"data":[3,3]}]}`
	if got := r.body[:n]; got != wantJSON {
		t.Errorf("JSON header = %s; want %s", got, wantJSON)
	}
	blob := []byte(r.body[n:])
	if len(blob) != 32 {
		t.Fatalf("binary part has %d bytes; want 32", len(blob))
	}
	for i, want := range []float32{2, 4, 6, 8, -2, -4, -6, 0} {
		if got := math.Float32frombits(binary.LittleEndian.Uint32(blob[4*i:])); got != want {
			t.Errorf("y[%d] = %v; want %v", i, got, want)
		}
	}

	// binary_data_output makes every output binary.
	header = `{"parameters":{"binary_data_output":true},"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[0,0,1,0]}]}`
	r = do(t, c, "POST", "/v2/models/double/infer", []byte(header))
	n, _ = strconv.Atoi(r.header["Inference-Header-Content-Length"])
	if r.status != 200 || n == 0 || len(r.body)-n != 16+8 {
		t.Fatalf("binary_data_output: status %d, header %d, body %d bytes; want 200 and 24 binary bytes", r.status, n, len(r.body))
	}
	if cls := binary.LittleEndian.Uint64([]byte(r.body[n+16:])); cls != 2 {
		t.Errorf("cls = %d; want 2", cls)
	}

	// A raw binary request: the body is one row of the only input.
	raw := make([]byte, 0, 16)
	for _, v := range []float32{0, 9, 1, 2} {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
	}
	r = do(t, c, "POST", "/v2/models/double/infer", raw, "Inference-Header-Content-Length", "0")
	n, _ = strconv.Atoi(r.header["Inference-Header-Content-Length"])
	if r.status != 200 || !strings.Contains(r.body[:n], `"binary_data_size":16`) {
		t.Fatalf("raw request: %d %q", r.status, r.body)
	}
	if cls := binary.LittleEndian.Uint64([]byte(r.body[n+16:])); cls != 1 {
		t.Errorf("raw request cls = %d; want 1", cls)
	}
}
