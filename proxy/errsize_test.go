package proxy

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestErrorAnswersAreShort sends requests built around a 1 MiB text that
// an error would echo (names, datatypes, shapes, values, keys) over every
// protocol, and checks that each answer is a 4xx of at most ~1 KiB.
func TestErrorAnswersAreShort(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.MaxBodyBytes = 4 << 20
	_, c, _ := testServerWith(t, cfg)
	const maxAnswer = 1024 + 64 // the message, JSON-escaped, and {"error":...}

	const (
		v2      = "/v2/models/double/infer"
		v2multi = "/v2/models/multi/infer"
		tfs     = "/v1/models/double:predict"
		tfMulti = "/v1/models/multi:predict"
		tfsStrs = "/v1/models/strs:predict"
	)
	x := func(name, shape, datatype, data string) string {
		return `{"inputs":[{"name":"` + name + `","shape":` + shape + `,"datatype":"` + datatype + `","data":` + data + `}]}`
	}
	const okX = `{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}`
	for _, filler := range []string{"n", "é", `\"`, "\x01"} {
		big := strings.Repeat(filler, (1<<20)/len(filler))
		digits := strings.Repeat("1", 1<<20)
		bigArray := "[" + strings.Repeat("0,", 1<<19) + "0]"
		tests := []struct {
			name, path, body string
			want             string
		}{
			{"v2 unknown input name", v2, x(big, "[1,4]", "FP32", "[1,2,3,4]"), "has no input"},
			{"v2 duplicate input name", v2multi, `{"inputs":[` + strings.Repeat(`{"name":"`+big+`","shape":[1,2],"datatype":"FP32","data":[1,2]},`, 2) + okX + `]}`, "appears twice"},
			{"v2 unknown datatype", v2, x("x", "[1,4]", big, "[1,2,3,4]"), "is not a datatype"},
			{"v2 shape value", v2, x("x", "[1,"+digits+"]", "FP32", "[1,2,3,4]"), "shape[1]"},
			{"v2 shape of many dimensions", v2, x("x", bigArray, "FP32", "[1,2,3,4]"), "dimensions"},
			{"v2 timeout array", v2, `{"parameters":{"timeout":` + bigArray + `},"inputs":[` + okX + `]}`, "parameters.timeout"},
			{"v2 timeout string", v2, `{"parameters":{"timeout":"` + big + `"},"inputs":[` + okX + `]}`, "parameters.timeout"},
			{"v2 priority", v2, `{"parameters":{"priority":` + digits + `},"inputs":[` + okX + `]}`, "parameters.priority"},
			{"v2 huge integer", v2multi, `{"inputs":[{"name":"a","shape":[1,2],"datatype":"FP32","data":[1,2]},{"name":"b","shape":[1,2],"datatype":"INT32","data":[` + digits + `,1]}]}`, "element 0 is"},
			{"v2 malformed float", v2, x("x", "[1,4]", "FP32", "[1,2,3,"+strings.Repeat("1.", 1<<19)+"]"), "not a number"},
			{"v2 unknown output", v2, `{"inputs":[` + okX + `],"outputs":[{"name":"` + big + `"}]}`, "has no output"},
			{"v2 not JSON", v2, `{"inputs":[` + okX + `],"x":` + big + `}`, "not valid JSON"},
			{"tfs unknown signature", tfs, `{"signature_name":"` + big + `","instances":[[1,2,3,4]]}`, "is not a signature"},
			{"tfs unknown column", tfMulti, `{"inputs":{"a":[[1,2]],"` + big + `":[[1,2]]}}`, "has no input"},
			{"tfs unknown row key", tfMulti, `{"instances":[{"a":[1,2],"b":[1,2],"` + big + `":1}]}`, "has no input"},
			{"tfs huge integer", tfMulti, `{"instances":[{"a":[1,2],"b":[` + digits + `,1]}]}`, "element 0 is"},
			{"tfs bad b64", tfsStrs, `{"instances":[[{"b64":"` + strings.Repeat("!", 1<<20) + `"},"b"]]}`, "not base64"},
			{"predict malformed float", "/predict", `{"features":[1,2,3,` + strings.Repeat("1.", 1<<19) + `]}`, "not a number"},
			{"predict not JSON", "/predict", `{"features":[1,2,3,4]` + big, "not valid JSON"},
		}
		for _, tt := range tests {
			t.Run(tt.name+"/"+filler, func(t *testing.T) {
				r := do(t, c, "POST", tt.path, []byte(tt.body))
				if r.status < 400 || r.status > 499 {
					t.Errorf("POST %s = %d; want a 4xx", tt.path, r.status)
				}
				msg := errorMessage(t, r)
				if !strings.Contains(msg, tt.want) {
					t.Errorf("error = %.300q; want it to contain %q", msg, tt.want)
				}
				if len(r.body) > maxAnswer || !utf8.ValidString(r.body) {
					t.Errorf("answer is %d bytes; want at most %d: %.300q", len(r.body), maxAnswer, r.body)
				}
			})
		}
	}
}
