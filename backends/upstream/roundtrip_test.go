package upstream

import (
	"bytes"
	"fmt"
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/config"
)

// awkward are FP32 values whose decimal forms need every digit: smallest
// subnormal, subnormals, values next to powers of two, large magnitudes,
// negative zero.
var awkward = []string{"0.1", "1e-40", "7e-45", "3.4e37", "-0", "16777217", "1.0000001", "0.33333334", "-2.5e-38", "123456.79", "1e10", "-7.006492e-45"}

func v2Body(model string) string {
	switch model {
	case "multi":
		return `{"inputs":[{"name":"a","shape":[3,2],"datatype":"FP32","data":[0.1,1e-40,3.4e37,-0,1.0000001,0.33333334]},{"name":"b","shape":[3,2],"datatype":"INT32","data":[1,-2,2147483647,-2147483648,0,7]}]}`
	case "strs":
		return `{"inputs":[{"name":"s","shape":[2,2],"datatype":"BYTES","data":["a","b\"q","ü€","\u0000x"]}]}`
	}
	rows := ""
	for i := 0; i+4 <= len(awkward); i += 4 {
		if rows != "" {
			rows += ","
		}
		rows += fmt.Sprintf("[%s,%s,%s,%s]", awkward[i], awkward[i+1], awkward[i+2], awkward[i+3])
	}
	return `{"inputs":[{"name":"x","shape":[3,4],"datatype":"FP32","data":[` + rows + `]}]}`
}

func tfsBody(model string) string {
	switch model {
	case "multi":
		return `{"inputs":{"a":[[0.1,1e-40],[3.4e37,-0]],"b":[[1,-2],[2147483647,-2147483648]]}}`
	case "strs":
		return `{"instances":[{"s":["a","b"]},{"s":["ü€","q"]}]}`
	}
	return `{"instances":[[0.1,1e-40,7e-45,3.4e37],[-0,16777217,1.0000001,0.33333334]]}`
}

// TestRoundTripBitExact: a request through Coalesce and an upstream (a
// second Coalesce server) is answered byte for byte as the upstream
// answers it directly, for every upstream protocol, every client
// protocol, and tensors configured or fetched from the upstream's
// metadata.
func TestRoundTripBitExact(t *testing.T) {
	ref := reference(t)
	refDial := serve(t, ref)
	direct := client(refDial)
	dial := func(string) (net.Conn, error) { return refDial() }
	for _, proto := range []string{config.ProtoKServeV2, config.ProtoKServeV2Binary, config.ProtoTFServing} {
		for _, configured := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/configured=%v", proto, configured), func(t *testing.T) {
				files := map[string]string{}
				for _, m := range []string{"double", "multi", "strs"} {
					y := fmt.Sprintf("protocol: %s\nendpoints: [http://ref:8000]\nversion: \"1\"\nmax_batch_size: 8\n", proto)
					if configured {
						y += map[string]string{
							"double": "inputs: [{name: x, datatype: FP32, dims: [4]}]\noutputs: [{name: y, datatype: FP32, dims: [4]}, {name: cls, datatype: INT64}]\n",
							"multi":  "inputs: [{name: a, datatype: FP32, dims: [2]}, {name: b, datatype: INT32, dims: [2]}]\noutputs: [{name: sum, datatype: FP64, dims: [2]}]\n",
							"strs":   "inputs: [{name: s, datatype: BYTES, dims: [2]}]\noutputs: [{name: echo, datatype: BYTES, dims: [2]}, {name: label, datatype: BYTES}, {name: len, datatype: INT64}]\n",
						}[m]
					}
					files[m+"/1/"+File] = y
				}
				// The front's /predict reads the same labels as the upstream's.
				files["double/config.yaml"] = "max_batch_size: 8\npredict:\n  output: cls\n  labels: [a, b, c, d]\n"
				files["strs/config.yaml"] = "predict:\n  output: label\n"
				fc, _ := front(t, writeRepo(t, files), testPolicy(), dial)
				cases := []struct{ path, body string }{
					{"/v2/models/double/versions/1/infer", v2Body("double")},
					{"/v2/models/multi/versions/1/infer", v2Body("multi")},
					{"/v2/models/strs/versions/1/infer", v2Body("strs")},
					{"/v1/models/double/versions/1:predict", tfsBody("double")},
					{"/v1/models/multi/versions/1:predict", tfsBody("multi")},
					{"/v1/models/strs/versions/1:predict", tfsBody("strs")},
					{"/predict?model=double", `{"features":[[0.1,1e-40,7e-45,3.4e37],[-0,16777217,1.0000001,0.33333334]]}`},
				}
				for _, c := range cases {
					ws, wb, _ := post(t, direct, "POST", c.path, []byte(c.body))
					gs, gb, _ := post(t, fc, "POST", c.path, []byte(c.body))
					if ws != 200 {
						t.Fatalf("direct POST %s = %d %s; want 200", c.path, ws, wb)
					}
					if gs != ws || !bytes.Equal(gb, wb) {
						t.Errorf("POST %s through Coalesce = %d %s\nwant (direct) %d %s", c.path, gs, gb, ws, wb)
					}
				}
				// A V2 binary request (binary outputs) as well.
				bin := append([]byte(`{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}],"outputs":[{"name":"y","parameters":{"binary_data":true}},{"name":"cls"}]}`),
					0xff, 0xff, 0x7f, 0x7e, 1, 0, 0, 0, 0xcd, 0xcc, 0xcc, 0x3d, 0, 0, 0, 0x80)
				hl := fmt.Sprint(len(bin) - 16)
				ws, wb, wh := post(t, direct, "POST", "/v2/models/double/versions/1/infer", bin, "Inference-Header-Content-Length", hl)
				gs, gb, gh := post(t, fc, "POST", "/v2/models/double/versions/1/infer", bin, "Inference-Header-Content-Length", hl)
				if ws != 200 || gs != ws || !bytes.Equal(gb, wb) || string(gh.Peek("Inference-Header-Content-Length")) != string(wh.Peek("Inference-Header-Content-Length")) {
					t.Errorf("binary request through Coalesce = %d %q; want (direct) %d %q", gs, gb, ws, wb)
				}
			})
		}
	}
}

// TestPredictProtocol: the seed's {"features"} API, one row per call,
// in front of a Flask-like upstream.
func TestPredictProtocol(t *testing.T) {
	var rows [][]byte
	flask := serve(t, func(ctx *fasthttp.RequestCtx) {
		if !ctx.IsPost() {
			ctx.Error("method not allowed", fasthttp.StatusMethodNotAllowed)
			return
		}
		rows = append(rows, append([]byte(nil), ctx.PostBody()...))
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"prediction":[3]}`)
	})
	files := map[string]string{
		"digits/1/" + File:   "protocol: predict\nendpoints: [http://flask:5000]\ninputs: [{name: features, datatype: FP32, dims: [3]}]\noutputs: [{name: prediction, datatype: INT64}]\n",
		"digits/config.yaml": "predict:\n  labels: [zero, one, two, three]\n",
	}
	fc, _ := front(t, writeRepo(t, files), testPolicy(), func(string) (net.Conn, error) { return flask() })
	s, b, _ := post(t, fc, "POST", "/predict", []byte(`{"features":[0.5,1e-40,2]}`))
	if s != 200 || !bytes.Contains(b, []byte(`"three"`)) {
		t.Errorf("POST /predict = %d %s; want 200 with the label of class 3", s, b)
	}
	s, b, _ = post(t, fc, "POST", "/predict", []byte(`{"features":[[1,2,3],[4,5,6]]}`))
	if s != 400 {
		t.Errorf("two rows to a one-row upstream = %d %s; want 400", s, b)
	}
	if len(rows) != 1 || string(rows[0]) != `{"features":[0.5,1e-40,2]}` {
		t.Errorf("upstream saw %q; want one call with the features as sent", rows)
	}
}
