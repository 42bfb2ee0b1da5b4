package codec

import (
	"os"
	"testing"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

// TestFastPredictTakesCommonBodies: the shipped example bodies take the
// fast path (one row and a batch), and bodies it must leave to the
// general path (nulls, other keys, depth limits, wrong row length) do.
func TestFastPredictTakesCommonBodies(t *testing.T) {
	lim := config.Limits{MaxBodyBytes: 1 << 20, MaxTensorElements: 1 << 16, MaxJSONDepth: 8}
	sp := backends.TensorSpec{Name: "input", DType: tensor.FP32, Shape: []int64{-1, 64}}
	for _, f := range []string{"predict.json", "predict-batch.json"} {
		body, err := os.ReadFile("../models/digits-mlp/examples/" + f)
		if err != nil {
			t.Fatal(err)
		}
		x, ok := fastPredict(body, &sp, &lim)
		if !ok {
			t.Fatalf("%s: not taken by the fast path", f)
		}
		if x.Shape[1] != 64 || x.Float32s()[2] != 11 {
			t.Errorf("%s: decoded %v %v", f, x.Shape, x.Float32s()[:4])
		}
	}
	sp4 := backends.TensorSpec{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 4}}
	shallow := lim
	shallow.MaxJSONDepth = 2
	for _, tc := range []struct {
		body string
		lim  config.Limits
	}{
		{`{"features":[1,null,3,4]}`, lim},
		{`{"features":[1,2,3,4],"model":"x"}`, lim},
		{`{"features":[1,2,3]}`, lim},
		{`{"features":[[1,2,3,4]]}`, shallow},
		{`{"features":[1,2,3,4e39]}`, lim},
		{`{"features":["1",2,3,4]}`, lim},
	} {
		if _, ok := fastPredict([]byte(tc.body), &sp4, &tc.lim); ok {
			t.Errorf("%s: taken by the fast path; want the general path", tc.body)
		}
	}
}
