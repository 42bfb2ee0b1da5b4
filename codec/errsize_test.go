package codec

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/coalesce-ml/coalesce/internal/fakemodel"
)

// maxErrorLen is the longest error message a decoder may return,
// whatever the request: echoes are truncated (Truncate, fmtShape) and
// lists of a model's tensors capped.
const maxErrorLen = 1024

// hostileCase is a request built around one huge client-controlled text
// that an error message would echo.
type hostileCase struct {
	name   string
	codec  Codec
	model  string
	hdrLen string // Inference-Header-Content-Length, "" for none
	body   string
	want   string // a substring of the error
}

// hostileCases returns requests whose errors would echo big, a text of
// about 1 MiB. Models are fakemodel's: double (x FP32 [-1,4]), multi (a
// FP32 [-1,2], b INT32 [-1,2]), strs (s BYTES [-1,2]).
func hostileCases(big string) []hostileCase {
	digits := strings.Repeat("1", len(big))
	bigArray := "[" + strings.Repeat("0,", len(big)/2) + "0]"
	x := func(name, shape, datatype, data string) string {
		return `{"inputs":[{"name":"` + name + `","shape":` + shape + `,"datatype":"` + datatype + `","data":` + data + `}]}`
	}
	const okX = `{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}`
	binHdr := x("x", "[1,4]", "FP32", "[1,2,3,4]")
	return []hostileCase{
		{"v2 unknown input name", V2, "double", "", x(big, "[1,4]", "FP32", "[1,2,3,4]"), "has no input"},
		{"v2 duplicate input name", V2, "multi", "", `{"inputs":[` + strings.Repeat(`{"name":"`+big+`","shape":[1,2],"datatype":"FP32","data":[1,2]},`, 2) + okX + `]}`, "appears twice"},
		{"v2 unknown datatype", V2, "double", "", x("x", "[1,4]", big, "[1,2,3,4]"), "is not a datatype"},
		{"v2 shape value", V2, "double", "", x("x", "[1,"+digits+"]", "FP32", "[1,2,3,4]"), "shape[1]"},
		{"v2 shape of many dimensions", V2, "double", "", x("x", bigArray, "FP32", "[1,2,3,4]"), "dimensions"},
		{"v2 shape string", V2, "double", "", x("x", `"`+big+`"`, "FP32", "[1,2,3,4]"), "shape: got string"},
		{"v2 timeout array", V2, "double", "", `{"parameters":{"timeout":` + bigArray + `},"inputs":[` + okX + `]}`, "parameters.timeout"},
		{"v2 timeout string", V2, "double", "", `{"parameters":{"timeout":"` + big + `"},"inputs":[` + okX + `]}`, "parameters.timeout"},
		{"v2 priority number", V2, "double", "", `{"parameters":{"priority":` + digits + `},"inputs":[` + okX + `]}`, "parameters.priority"},
		{"v2 binary_data_size", V2, "double", "", `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":` + bigArray + `}}]}`, "binary_data_size"},
		{"v2 malformed float", V2, "double", "", x("x", "[1,4]", "FP32", "[1,2,3,"+strings.Repeat("1.", len(big)/2)+"]"), "not a number"},
		{"v2 huge integer", V2, "multi", "", `{"inputs":[{"name":"a","shape":[1,2],"datatype":"FP32","data":[1,2]},{"name":"b","shape":[1,2],"datatype":"INT32","data":[` + digits + `,1]}]}`, "element 0 is"},
		{"v2 huge BOOL", V2, "double", "", x("x", "[1,4]", "BOOL", "["+digits+",1,1,1]"), "BOOL"},
		{"v2 huge UINT64", V2, "double", "", x("x", "[1,4]", "UINT64", "["+digits+",1,1,1]"), "UINT64"},
		{"v2 unknown output", V2, "double", "", `{"inputs":[` + okX + `],"outputs":[{"name":"` + big + `"}]}`, "has no output"},
		{"v2 header length", V2, "double", big, binHdr, "Inference-Header-Content-Length"},
		{"v2 not JSON", V2, "double", "", `{"inputs":[` + okX + `],"x":` + big + `}`, "not valid JSON"},
		{"v2 unterminated string", V2, "double", "", `{"id":"` + big, "not valid JSON"},
		{"v2 too deep", V2, "double", "", strings.Repeat("[", len(big)), "deeper than"},
		{"tfs unknown signature", TFS, "double", "", `{"signature_name":"` + big + `","instances":[[1,2,3,4]]}`, "is not a signature"},
		{"tfs unknown column", TFS, "multi", "", `{"inputs":{"a":[[1,2]],"` + big + `":[[1,2]]}}`, "has no input"},
		{"tfs unknown row key", TFS, "multi", "", `{"instances":[{"a":[1,2],"b":[1,2],"` + big + `":1}]}`, "has no input"},
		{"tfs huge integer", TFS, "multi", "", `{"instances":[{"a":[1,2],"b":[` + digits + `,1]}]}`, "element 0 is"},
		{"tfs malformed float", TFS, "double", "", `{"instances":[[1,2,3,` + strings.Repeat("1.", len(big)/2) + `]]}`, "not a number"},
		{"tfs bad b64", TFS, "strs", "", `{"instances":[[{"b64":"` + strings.Repeat("!", len(big)) + `"},"b"]]}`, "not base64"},
		{"tfs deep shape", TFS, "double", "", `{"instances":` + strings.Repeat("[", 7) + "1" + strings.Repeat("]", 7) + `}`, "has shape"},
		{"tfs ragged", TFS, "double", "", `{"instances":[` + bigArray + `,[1]]}`, "limit of 1000"},
		{"predict malformed float", Predict, "double", "", `{"features":[1,2,3,` + strings.Repeat("1.", len(big)/2) + `]}`, "not a number"},
		{"predict wide row", Predict, "double", "", `{"features":` + bigArray + `}`, "features"},
		{"predict not JSON", Predict, "double", "", `{"features":[1,2,3,4]` + big, "not valid JSON"},
	}
}

// TestErrorsAreShort: every error stays within maxErrorLen bytes and is
// valid UTF-8 however large the text it is about.
func TestErrorsAreShort(t *testing.T) {
	reg := fakemodel.Registry(t)
	lim := testLimits()
	for _, filler := range []string{"n", "é", "\x00"} {
		big := strings.Repeat(filler, (1<<20)/len(filler))
		for _, tc := range hostileCases(big) {
			t.Run(tc.name+"/"+strconv.QuoteToASCII(filler), func(t *testing.T) {
				m, err := reg.Get(tc.model, "")
				must(t, err)
				var h []byte
				if tc.hdrLen != "" {
					h = []byte(tc.hdrLen)
				}
				_, err = decode(tc.codec, []byte(tc.body), h, m, &lim)
				if err == nil {
					t.Fatalf("Decode succeeded; want an error containing %q", tc.want)
				}
				msg := err.Error()
				if !strings.Contains(msg, tc.want) {
					t.Errorf("error = %.300q; want it to contain %q", msg, tc.want)
				}
				if len(msg) > maxErrorLen || !utf8.ValidString(msg) {
					t.Errorf("error is %d bytes (valid UTF-8 %v); want at most %d: %.300q", len(msg), utf8.ValidString(msg), maxErrorLen, msg)
				}
			})
		}
	}
}
