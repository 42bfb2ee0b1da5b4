package codec

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

// TestEncodeStringsAndMaps calls the encoders with outputs the fake models
// do not produce: invalid UTF-8, broken BYTES layouts, and /predict
// settings (labels, argmax) on string and map outputs.
func TestEncodeStringsAndMaps(t *testing.T) {
	model := func(pc config.Predict, outputs ...backends.TensorSpec) *backends.ModelVersion {
		mc := config.DefaultModelConfig()
		if pc.Transform != "" {
			mc.Predict.Transform = pc.Transform
		}
		mc.Predict.Labels = pc.Labels
		return &backends.ModelVersion{Name: "m", Version: "1", Config: mc, Meta: &backends.Metadata{Outputs: outputs}}
	}
	probs := tensor.FromFloat32s("p", []int64{2, 3}, []float32{0.1, 0.7, 0.2, 0.6, 0.3, 0.1})
	keyed := backends.TensorSpec{Name: "p", DType: tensor.FP32, Shape: []int64{-1, 3}, Keys: []string{"x", "y", "z"}}
	strs := tensor.FromStrings("s", []int64{2}, []string{"ok\xff\xfe", "\x01\u2028"})
	strSpec := backends.TensorSpec{Name: "s", DType: tensor.Bytes, Shape: []int64{-1}}
	broken := &tensor.Tensor{Name: "s", DType: tensor.Bytes, Shape: []int64{2}, Data: []byte{1, 0, 0, 0, 'a', 7, 0}}

	predictTests := []struct {
		name string
		m    *backends.ModelVersion
		out  *tensor.Tensor
		want string // body, or "error: substring"
	}{
		{"argmax with labels prefers the labels", model(config.Predict{Transform: "argmax", Labels: []string{"L0", "L1", "L2"}}, keyed), probs, `{"prediction":["L1","L0"]}`},
		{"argmax without labels names the key", model(config.Predict{Transform: "argmax"}, keyed), probs, `{"prediction":["y","x"]}`},
		{"argmax without keys gives the index", model(config.Predict{Transform: "argmax"}, backends.TensorSpec{Name: "p", DType: tensor.FP32, Shape: []int64{-1, 3}}), probs, `{"prediction":[1,0]}`},
		{"keys of the wrong width are ignored", model(config.Predict{}, backends.TensorSpec{Name: "p", DType: tensor.FP32, Shape: []int64{-1, 3}, Keys: []string{"x"}}), probs, `{"prediction":[[0.1,0.7,0.2],[0.6,0.3,0.1]]}`},
		{"none renders maps", model(config.Predict{}, keyed), probs, `{"prediction":[{"x":0.1,"y":0.7,"z":0.2},{"x":0.6,"y":0.3,"z":0.1}]}`},
		{"labels do not apply to strings", model(config.Predict{Labels: []string{"a", "b"}}, strSpec), strs, `{"prediction":["ok\ufffd\ufffd","\u0001` + "\u2028" + `"]}`},
		{"argmax on strings is an error", model(config.Predict{Transform: "argmax"}, strSpec), strs, "error: predict.transform argmax needs numbers"},
		{"broken layout writes null", model(config.Predict{}, strSpec), broken, `{"prediction":["a",null]}`},
	}
	for _, tt := range predictTests {
		t.Run("predict/"+tt.name, func(t *testing.T) {
			got, err := encodePredict(nil, tt.m, []*tensor.Tensor{tt.out})
			if want, ok := strings.CutPrefix(tt.want, "error: "); ok {
				if err == nil || !strings.Contains(err.Error(), want) || errors.As(err, new(*Error)) {
					t.Fatalf("encodePredict = %s, %v; want a 500 error containing %q", got, err, want)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("encodePredict = %s, %v; want %s", got, err, tt.want)
			}
			if !json.Valid(got) {
				t.Fatalf("encodePredict wrote invalid JSON %q", got)
			}
		})
	}

	// V2 and TF Serving on the same strings, decoded back by a real
	// JSON parser.
	m := model(config.Predict{}, strSpec)
	v2, _ := encodeV2(nil, &Request{Model: m}, []*tensor.Tensor{strs})
	tfs := encodeTFS(nil, m, false, []*tensor.Tensor{strs})
	tfsCols := encodeTFS(nil, m, true, []*tensor.Tensor{strs})
	want := []string{"ok\ufffd\ufffd", "\x01\u2028"}
	var v2Got struct{ Outputs []struct{ Data []string } }
	var tfsGot struct{ Predictions []string }
	var colsGot struct{ Outputs []string }
	for _, c := range []struct {
		name string
		enc  []byte
		into any
		got  func() []string
	}{
		{"v2", v2, &v2Got, func() []string { return v2Got.Outputs[0].Data }},
		{"tfs rows", tfs, &tfsGot, func() []string { return tfsGot.Predictions }},
		{"tfs columns", tfsCols, &colsGot, func() []string { return colsGot.Outputs }},
	} {
		if err := json.Unmarshal(c.enc, c.into); err != nil {
			t.Errorf("%s: %q is not valid JSON: %v", c.name, c.enc, err)
			continue
		}
		if got := c.got(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: strings = %q; want %q", c.name, got, want)
		}
	}
	if enc := encodeTFS(nil, m, false, []*tensor.Tensor{broken}); string(enc) != `{"predictions":["a",null]}` {
		t.Errorf("encodeTFS of a broken layout = %s; want nulls, not a panic", enc)
	}
	if enc, _ := encodeV2(nil, &Request{Model: m}, []*tensor.Tensor{broken}); !json.Valid(enc) {
		t.Errorf("encodeV2 of a broken layout = %s; want valid JSON", enc)
	}
}

// TestConvertExactStrings checks that strings and numbers never convert
// into each other (tensor.Convert panics on BYTES data it would read).
func TestConvertExactStrings(t *testing.T) {
	s := tensor.FromStrings("s", []int64{1}, []string{"1"})
	f := tensor.FromFloat32s("f", []int64{1}, []float32{1})
	for _, c := range []struct {
		in *tensor.Tensor
		dt tensor.DataType
	}{{s, tensor.FP32}, {s, tensor.Int64}, {f, tensor.Bytes}} {
		if _, err := convertExact(c.in, c.dt); err == nil || !strings.Contains(err.Error(), "does not convert") {
			t.Errorf("convertExact(%s, %s) = %v; want an error", c.in.DType, c.dt, err)
		}
	}
	if got, err := convertExact(s, tensor.Bytes); err != nil || got != s {
		t.Errorf("convertExact(BYTES, BYTES) = %v, %v; want the tensor itself", got, err)
	}
}
