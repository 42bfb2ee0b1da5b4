package codec

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"testing"

	"github.com/valyala/fastjson"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/internal/fakemodel"
	"github.com/coalesce-ml/coalesce/tensor"
)

// The fuzz targets call the decoders directly, not over HTTP, and check
// what every handler relies on: a decoder never panics, fails only with
// a client error (*Error, 4xx), and on success returns tensors that are
// valid, finite and fit the model's input specs exactly.

// fuzzModels are the models the fuzz targets decode for, picked by a
// fuzzed byte. panic and slow are single-input [-1,1] models that are only
// decoded; the others are run and their outputs encoded. strs takes BYTES
// (strings) and returns BYTES; zip and zipmax return a map output (Keys);
// missing takes missing values (null, NaN).
var fuzzModels = []string{"double", "multi", "panic", "slow", "strs", "zip", "zipmax", "missing"}

// The indices of fuzzModels, for seeds.
const (
	fzDouble uint8 = iota
	fzMulti
	fzPanic
	fzSlow
	fzStrs
	fzZip
	fzZipmax
	fzMissing
)

func fuzzModel(f *testing.F) func(sel uint8) *backends.ModelVersion {
	reg := fakemodel.Registry(f)
	models := make([]*backends.ModelVersion, len(fuzzModels))
	for i, name := range fuzzModels {
		m, err := reg.Get(name, "")
		must(f, err)
		models[i] = m
	}
	return func(sel uint8) *backends.ModelVersion { return models[int(sel)%len(models)] }
}

// bytesAllocated returns the bytes the process allocated while f ran. A
// fuzz worker is a process of its own that calls the fuzz function from
// one goroutine, so the count is f's, give or take what the worker's
// other goroutines allocate meanwhile (a few KiB at most: fuzzAllocSlack
// covers it).
func bytesAllocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// fuzzAllocSlack is what a decode may allocate beyond 8 bytes per byte of
// body: the Request, the error message, small slices.
const fuzzAllocSlack = 64 << 10

// checkAllocated fails when one decode of body allocated more than 8×
// the body plus fuzzAllocSlack: a tensor takes at most 4 bytes (FP64 from
// "0,") per byte, its conversion to the model's datatype as much again.
func checkAllocated(t *testing.T, body []byte, got uint64) {
	t.Helper()
	if limit := uint64(8*len(body) + fuzzAllocSlack); got > limit {
		t.Fatalf("decoding %d bytes allocated %d bytes; want at most 8× the body + %d = %d", len(body), got, fuzzAllocSlack, limit)
	}
}

// checkDecodeErr fails unless err is nil or a client error.
func checkDecodeErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *codec.Error", err, err)
	}
	if pe.Msg == "" {
		t.Fatalf("error of kind %d has no message", pe.Kind)
	}
}

// checkInputs fails unless inputs are valid tensors in m's input order
// with m's datatypes, fixed dimensions and one batch size, within lim.
func checkInputs(t *testing.T, m *backends.ModelVersion, inputs []*tensor.Tensor, lim *config.Limits) {
	t.Helper()
	if len(inputs) != len(m.Meta.Inputs) {
		t.Fatalf("decoded %d inputs; model %s has %d", len(inputs), m.Name, len(m.Meta.Inputs))
	}
	for i, in := range inputs {
		sp := m.Meta.Inputs[i]
		if err := in.Validate(); err != nil {
			t.Fatalf("input %d: Validate() = %v", i, err)
		}
		if in.Name != sp.Name || in.DType != sp.DType || len(in.Shape) != len(sp.Shape) {
			t.Fatalf("input %d = %q %s %v; want %q %s %v", i, in.Name, in.DType, in.Shape, sp.Name, sp.DType, sp.Shape)
		}
		for d, want := range sp.Shape {
			if want >= 0 && in.Shape[d] != want {
				t.Fatalf("input %q shape %v; want %v", in.Name, in.Shape, sp.Shape)
			}
		}
		if in.Shape[0] != inputs[0].Shape[0] {
			t.Fatalf("input %q has batch %d; input %q has %d", in.Name, in.Shape[0], inputs[0].Name, inputs[0].Shape[0])
		}
		if in.Len() > lim.MaxTensorElements {
			t.Fatalf("input %q has %d elements; limit %d", in.Name, in.Len(), lim.MaxTensorElements)
		}
		if in.DType.IsFloat() && !lim.AllowNonFinite {
			for j := range in.Len() {
				if x := in.Float64At(j); (math.IsNaN(x) && !sp.Missing) || math.IsInf(x, 0) {
					t.Fatalf("input %q element %d is %v; want finite (NaN only for an input taking missing values)", in.Name, j, x)
				}
			}
		}
	}
}

// runFake runs a decoded request on the fake backends that are safe to
// run (all but panic and slow) and returns nil for the others.
func runFake(t *testing.T, m *backends.ModelVersion, inputs []*tensor.Tensor) []*tensor.Tensor {
	t.Helper()
	if m.Name == "panic" || m.Name == "slow" {
		return nil
	}
	out, err := m.Backend.Infer(context.Background(), inputs)
	if err != nil {
		t.Fatalf("Infer: %v", err)
	}
	return out
}

func allFinite(out []*tensor.Tensor) bool {
	for _, o := range out {
		if !o.DType.IsFloat() {
			continue
		}
		for j := range o.Len() {
			if x := o.Float64At(j); math.IsNaN(x) || math.IsInf(x, 0) {
				return false
			}
		}
	}
	return true
}

func FuzzDecodeV2(f *testing.F) {
	model := fuzzModel(f)
	lim := testLimits()
	bin := func(hdr string, vals ...float32) []byte {
		b := []byte(hdr)
		for _, v := range vals {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
		return b
	}
	binHdr := `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}`
	multiHdr := `{"inputs":[{"name":"a","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":8}},{"name":"b","shape":[1,2],"datatype":"INT32","data":[1,2]}]}`
	strHdr := `{"inputs":[{"name":"s","shape":[1,2],"datatype":"BYTES","parameters":{"binary_data_size":13}}],"outputs":[{"name":"echo","parameters":{"binary_data":true}},{"name":"label"}]}`
	seeds := []struct {
		body  []byte
		hdr   string // "" = no Inference-Header-Content-Length
		model uint8
	}{
		{[]byte(`{"id":"r1","inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,0.5]}]}`), "", 0},
		{[]byte(`{"inputs":[{"name":"x","shape":[2,4],"datatype":"FP64","data":[[1,2,3,4],[4,3,2,1]]}],"outputs":[{"name":"cls"}],"parameters":{"binary_data_output":true}}`), "", 0},
		{[]byte(`{"inputs":[{"name":"b","shape":[1,2],"datatype":"INT64","data":[1,2]},{"name":"a","shape":[1,2],"datatype":"FP32","data":[0.5,0.25]}]}`), "", 1},
		{[]byte(`{"inputs":[{"name":"x","shape":[1,1],"datatype":"BOOL","data":[true]}]}`), "", 2},
		{[]byte(`{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP16","data":[1,NaN,-Inf,65504]}]}`), "", 0},
		{bin(binHdr, 1, 2, 3, 4), strconv.Itoa(len(binHdr)), 0},
		{bin(multiHdr, 1, 2), strconv.Itoa(len(multiHdr)), 1},
		{bin("", 1, 2, 3, 4), "0", 0},
		{bin("", 7), "0", 3},
		{[]byte(`{"inputs":[{"name":"x","shape":[1,4],"datatype":"UINT64","data":[18446744073709551615,0,0,0]}]}`), "", 0},
		{[]byte(`{"inputs":[{"name":"b","shape":[1,2],"datatype":"INT64","data":[3000000000,1]},{"name":"a","shape":[1,2],"datatype":"FP64","data":[1e300,0]}]}`), "", 1},
		// BYTES: JSON strings flat and nested, binary, raw, broken layouts.
		{[]byte(`{"inputs":[{"name":"s","shape":[1,2],"datatype":"BYTES","data":["a","b"]}]}`), "", fzStrs},
		{[]byte(`{"inputs":[{"name":"s","shape":[2,2],"datatype":"BYTES","data":[["\u00e9\"","\\\n"],["","\ud800"]]}],"outputs":[{"name":"label"},{"name":"echo","parameters":{"binary_data":true}}]}`), "", fzStrs},
		{[]byte(`{"inputs":[{"name":"s","shape":[1,2],"datatype":"BYTES","data":[1,"b"]}]}`), "", fzStrs},
		{[]byte(`{"inputs":[{"name":"x","shape":[1,4],"datatype":"BYTES","data":["1","2","3","4"]}]}`), "", fzDouble},
		{[]byte(`{"inputs":[{"name":"s","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`), "", fzStrs},
		{append([]byte(strHdr), strBlob("ab", "\xff\x00")...), strconv.Itoa(len(strHdr)), fzStrs},
		{append([]byte(strHdr), "\x09\x00\x00\x00ab\x01\x00\x00\x00c"...), strconv.Itoa(len(strHdr)), fzStrs},
		{[]byte(strBlob("x", "yz")), "0", fzStrs},
		{[]byte("\xff\xff\xff\x7fab"), "0", fzStrs},
		{[]byte(`{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[1,4,2,6,0,-1]}],"parameters":{"binary_data_output":true}}`), "", fzZip},
		{[]byte(`{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[null,1]}]}`), "", fzMissing},
	}
	for _, s := range seeds {
		f.Add(s.body, s.hdr, s.model)
	}
	f.Fuzz(func(t *testing.T, body []byte, hdr string, sel uint8) {
		m := model(sel)
		var h []byte
		if hdr != "" {
			h = []byte(hdr)
		}
		var req *Request
		var err error
		checkAllocated(t, body, bytesAllocated(func() { req, err = decodeV2(body, h, m, &lim) }))
		checkDecodeErr(t, err)
		if err != nil {
			return
		}
		checkInputs(t, m, req.Inputs, &lim)
		seen := map[int]bool{}
		for _, o := range req.Outputs {
			if o.Index < 0 || o.Index >= len(m.Meta.Outputs) || seen[o.Index] {
				t.Fatalf("outputs %+v; model %s has %d outputs, each wanted once", req.Outputs, m.Name, len(m.Meta.Outputs))
			}
			seen[o.Index] = true
		}
		out := runFake(t, m, req.Inputs)
		if out == nil {
			return
		}
		enc, jsonLen := encodeV2(nil, req, out)
		if jsonLen < 0 {
			jsonLen = len(enc)
		}
		if !json.Valid(enc[:jsonLen]) {
			t.Fatalf("encodeV2 wrote invalid JSON %q", enc[:jsonLen])
		}
	})
}

func FuzzDecodeTFS(f *testing.F) {
	model := fuzzModel(f)
	lim := testLimits()
	for _, s := range []struct {
		body  string
		model uint8
	}{
		{`{"instances":[[1,2,3,4]]}`, 0},
		{`{"signature_name":"serving_default","instances":[{"x":[1,2,3,4]},{"x":[5,6,7,8]}]}`, 0},
		{`{"inputs":[[1,0,0,0]]}`, 0},
		{`{"inputs":{"x":[[1,0,0,0],[0,1,0,0]]}}`, 0},
		{`{"instances":[{"a":[1,2],"b":[3,4]},{"a":[0,0],"b":[1,1]}]}`, 1},
		{`{"inputs":{"a":[[1,2]],"b":[[3,4]]}}`, 1},
		{`{"instances":[{"a":[1,2],"b":[3,4],"a":[5,6]}]}`, 1},
		{`{"instances":[[1],[2]]}`, 2},
		{`{"instances":[[NaN],[inf]]}`, 3},
		{`{"instances":[[3e38,3e38,-3e38,0]]}`, 0},
		{`{"instances":[["a","b"],["\u00e9","\\"]]}`, fzStrs},
		{`{"instances":[{"s":["a",{"b64":"/wA="}]}]}`, fzStrs},
		{`{"inputs":[[{"b64":"aGk"},"x"]]}`, fzStrs},
		{`{"inputs":{"s":[["a",1]]}}`, fzStrs},
		{`{"instances":[{"b64":"YQ=="}]}`, fzStrs},
		{`{"instances":[["1","2","3","4"]]}`, fzDouble},
		{`{"instances":[[1,4,2],[6,0,-1]]}`, fzZip},
		{`{"inputs":[[1,4,2]]}`, fzZip},
		{`{"instances":[[null,1],[2,null]]}`, fzMissing},
	} {
		f.Add([]byte(s.body), s.model)
	}
	f.Fuzz(func(t *testing.T, body []byte, sel uint8) {
		m := model(sel)
		var req *Request
		var err error
		checkAllocated(t, body, bytesAllocated(func() { req, err = decodeTFS(body, m, &lim) }))
		checkDecodeErr(t, err)
		if err != nil {
			return
		}
		checkInputs(t, m, req.Inputs, &lim)
		out := runFake(t, m, req.Inputs)
		if out == nil {
			return
		}
		// TF Serving writes NaN and Infinity tokens, which are not JSON.
		if enc := encodeTFS(nil, m, req.columnar, out); allFinite(out) && !json.Valid(enc) {
			t.Fatalf("encodeTFS wrote invalid JSON %q", enc)
		}
	})
}

func FuzzDecodePredict(f *testing.F) {
	model := fuzzModel(f)
	lim := testLimits()
	for _, s := range []struct {
		body  string
		model uint8
	}{
		{`{"features":[1,5,2,3]}`, 0},
		{`{"features":[[1,5,2,3],[9,0,0,0]]}`, 0},
		{`{"features":[[1,2]]}`, 1},
		{`{"features":[1]}`, 2},
		{`{"features":[[1],[2],[3]]}`, 3},
		{`{"features":[]}`, 0},
		{`{"features":[[]]}`, 0},
		{`{"features":[[1,2,3,4],[1,2,3]]}`, 0},
		{`{"features":["a","b"]}`, fzStrs},
		{`{"features":[["a\"","\u0000"],["",""]]}`, fzStrs},
		{`{"features":[1,"b"]}`, fzStrs},
		{`{"features":["1","2","3","4"]}`, fzDouble},
		{`{"features":[[1,4,2],[6,0,-1]]}`, fzZip},
		{`{"features":[1,4,2]}`, fzZipmax},
		{`{"features":[[1,null],[null,null]]}`, fzMissing},
		{`{"features":[null,null,3,4]}`, fzDouble},
	} {
		f.Add([]byte(s.body), s.model)
	}
	f.Fuzz(func(t *testing.T, body []byte, sel uint8) {
		m := model(sel)
		var inputs []*tensor.Tensor
		var err error
		checkAllocated(t, body, bytesAllocated(func() { inputs, err = decodePredict(body, m, &lim) }))
		checkDecodeErr(t, err)
		if err != nil {
			return
		}
		checkInputs(t, m, inputs, &lim)
		if inputs[0].Shape[0] == 0 {
			t.Fatalf("decoded an empty batch %v", inputs[0].Shape)
		}
		out := runFake(t, m, inputs)
		if out == nil {
			return
		}
		if enc, err := encodePredict(nil, m, out); err != nil || !json.Valid(enc) {
			t.Fatalf("encodePredict = %q, %v; want valid JSON", enc, err)
		}
	})
}

// jsonDepth returns the deepest nesting of arrays and objects in the
// valid JSON text b, by encoding/json's tokenizer.
func jsonDepth(b []byte) int {
	dec := json.NewDecoder(bytes.NewReader(b))
	depth, deepest := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return deepest
		}
		switch tok {
		case json.Delim('['), json.Delim('{'):
			depth++
			deepest = max(deepest, depth)
		case json.Delim(']'), json.Delim('}'):
			depth--
		}
	}
}

func FuzzCheckDepth(f *testing.F) {
	for _, s := range []string{
		`{}`, `[[[[[[[[1]]]]]]]]`, `[[[[[[[[[1]]]]]]]]]`, `{"a":"[[[[[[[[[[[["}`, `{"a\"[[[[[[[[[":1}`,
		`"\\"`, `["\\\"[[[[[[[[[["]`, `]]]]]]]]]][[[[[[[[[[`, `{"a":[{"b":[{"c":[]}]}]}`,
	} {
		f.Add([]byte(s), uint8(8))
	}
	f.Fuzz(func(t *testing.T, body []byte, limit uint8) {
		var err error
		checkAllocated(t, body, bytesAllocated(func() { err = checkDepth(body, int(limit)) }))
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Kind != BadRequest {
				t.Fatalf("checkDepth(%q, %d) = %v; want nil or a 400 *Error", body, limit, err)
			}
		}
		if !json.Valid(body) {
			return
		}
		// On valid JSON the scan must agree with a real parser.
		d := jsonDepth(body)
		if got, want := err == nil, d <= int(limit); got != want {
			t.Fatalf("checkDepth(%q, %d) = %v; the JSON is %d deep", body, limit, err, d)
		}
	})
}

// FuzzFastPredict checks /predict's fast path against the general one:
// whatever body the fast path accepts, the general path must accept too
// and decode to the same tensor, bit for bit.
func FuzzFastPredict(f *testing.F) {
	for _, s := range []string{
		`{"features":[1,2,3,4]}`, `{"features": [[1, 2.5, -3e2, 4E-1], [0, -0, 1e38, 7]]}`,
		` {"features":[0.1,0.2,0.30000000000000004,1e-46]} `, `{"features":[1,2,3]}`, `{"features":[01,2,3,4]}`,
		`{"features":[1,2,3,1e39]}`, `{"features":[[1,2,3,4],]}`, `{"features":[1,2,3,4],"x":1}`,
		"{\"features\":\t[1,\n2,\r3,4]\n}", `{"features":[1.,2,3,4]}`, `{"features":[-,2,3,4]}`,
	} {
		f.Add([]byte(s))
	}
	lim := config.Limits{MaxBodyBytes: 1 << 20, MaxTensorElements: 64, MaxJSONDepth: 8}
	sp := backends.TensorSpec{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 4}}
	m := &backends.ModelVersion{Name: "m", Meta: &backends.Metadata{Inputs: []backends.TensorSpec{sp}}}
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast *tensor.Tensor
		var ok bool
		checkAllocated(t, body, bytesAllocated(func() { fast, ok = fastPredict(body, &sp, &lim) }))
		if !ok {
			return
		}
		general, err := decodePredictJSONOnly(body, m, &lim)
		if err != nil {
			t.Fatalf("fast path accepted %q; general path: %v", body, err)
		}
		g := general[0]
		if fmt.Sprint(g.Shape) != fmt.Sprint(fast.Shape) || !bytes.Equal(g.Data, fast.Data) {
			t.Fatalf("%q: fast %v %v; general %v %v", body, fast.Shape, fast.Float32s(), g.Shape, g.Float32s())
		}
	})
}

// FuzzScanMatchesFastjson checks the in-place reader against the fastjson
// parser the decoders used before: the same bodies are JSON (validJSON),
// and the strings read the same (appendUnescaped), so that no request
// changed meaning when the tree went away.
func FuzzScanMatchesFastjson(f *testing.F) {
	for _, s := range []string{
		`{"a":[1,-2.5e3,NaN,-inf,+Inf,nan,1.2.3,.5,-,--1]}`, `{"a":"\u00e9\ud83d\ude00\ud800\x\/\"","b":null}`,
		`[true,false,null,nul,tru]`, ` {"a" : [ ] , "b" : { } } `, `{"a":1,}`, `[1,]`, `{"a"}`, `"\\"`, `[Infinity]`,
		`{"a":[1,2]]`, "[\"\x00\xff\"]", `{"\u0061":1}`, `1 2`, ``, `[` + "\t\r\n" + `]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if checkDepth(body, 64) != nil {
			return // fastjson has its own depth limit; ours runs first
		}
		var err error
		checkAllocated(t, body, bytesAllocated(func() { err = validJSON(body, 64) }))
		v, ferr := fastjson.ParseBytes(body)
		if (err == nil) != (ferr == nil) {
			t.Fatalf("validJSON(%q) = %v; fastjson: %v", body, err, ferr)
		}
		if err != nil || v.Type() != fastjson.TypeString {
			return
		}
		i := skipSpace(body, 0)
		got := appendUnescaped(nil, rawString(body, i))
		if want := v.GetStringBytes(); !bytes.Equal(got, want) {
			t.Fatalf("%q: unescaped %q; fastjson %q", body, got, want)
		}
	})
}
