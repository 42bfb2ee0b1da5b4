package codec

import (
	"math"
	"strings"
	"testing"

	"github.com/coalesce-ml/coalesce/tensor"
)

// TestConvertExact checks the range checks that keep tensor.Convert from
// wrapping integers or overflowing floats when a request's datatype
// differs from the model's, at the edges of each range.
func TestConvertExact(t *testing.T) {
	f64 := func(v float64) *tensor.Tensor {
		x := tensor.New("v", tensor.FP64, []int64{1})
		x.Float64s()[0] = v
		return x
	}
	i64 := func(v int64) *tensor.Tensor { return tensor.FromInt64s("v", []int64{1}, []int64{v}) }
	u64 := func(v uint64) *tensor.Tensor {
		x := tensor.New("v", tensor.Uint64, []int64{1})
		x.SetInt64(0, int64(v))
		return x
	}
	f32 := func(v float32) *tensor.Tensor { return tensor.FromFloat32s("v", []int64{1}, []float32{v}) }
	tests := []struct {
		name string
		in   *tensor.Tensor
		dt   tensor.DataType
		want string // "" = converts; else a substring of the error
	}{
		{"INT64 max int32 to INT32", i64(math.MaxInt32), tensor.Int32, ""},
		{"INT64 min int32 to INT32", i64(math.MinInt32), tensor.Int32, ""},
		{"INT64 above int32 to INT32", i64(math.MaxInt32 + 1), tensor.Int32, "element 0 is 2147483648"},
		{"INT64 below int32 to INT32", i64(math.MinInt32 - 1), tensor.Int32, "out of range for INT32"},
		{"INT64 -1 to UINT64", i64(-1), tensor.Uint64, "out of range for UINT64"},
		{"INT64 -1 to UINT8", i64(-1), tensor.Uint8, "out of range for UINT8"},
		{"INT64 256 to UINT8", i64(256), tensor.Uint8, "out of range"},
		{"INT64 max to UINT64", i64(math.MaxInt64), tensor.Uint64, ""},
		{"INT64 2 to BOOL", i64(2), tensor.Bool, "out of range for BOOL"},
		{"INT64 1 to BOOL", i64(1), tensor.Bool, ""},
		{"UINT64 max to INT64", u64(math.MaxUint64), tensor.Int64, "element 0 is 18446744073709551615"},
		{"UINT64 max int64 to INT64", u64(math.MaxInt64), tensor.Int64, ""},
		{"FP64 integral to INT32", f64(-2147483648), tensor.Int32, ""},
		{"FP64 3e9 to INT32", f64(3e9), tensor.Int32, "not an integer in the range of INT32"},
		{"FP64 fraction to INT32", f64(1.5), tensor.Int32, "element 0 is 1.5"},
		{"FP64 NaN to INT32", f64(math.NaN()), tensor.Int32, "NaN"},
		{"FP64 2^63 to INT64", f64(1 << 63), tensor.Int64, "not an integer"},
		{"FP64 -2^63 to INT64", f64(-1 << 63), tensor.Int64, ""},
		{"FP64 2^64 to UINT64", f64(1 << 64), tensor.Uint64, "not an integer"},
		{"FP64 2^63 to UINT64", f64(1 << 63), tensor.Uint64, ""},
		{"FP64 -1 to UINT32", f64(-1), tensor.Uint32, "not an integer"},
		{"FP32 fraction to INT64", f32(0.25), tensor.Int64, "0.25"},
		{"FP64 max float32 to FP32", f64(math.MaxFloat32), tensor.FP32, ""},
		{"FP64 1e300 to FP32", f64(1e300), tensor.FP32, "overflows FP32 to +Inf"},
		{"FP64 -1e300 to FP32", f64(-1e300), tensor.FP32, "overflows FP32 to -Inf"},
		{"FP32 70000 to FP16", f32(70000), tensor.FP16, "overflows FP16"},
		{"FP32 65504 to FP16", f32(65504), tensor.FP16, ""},
		{"INT64 to FP16 overflow", i64(1 << 20), tensor.FP16, "overflows FP16"},
		{"FP64 Inf to FP32 stays Inf", f64(math.Inf(1)), tensor.FP32, ""}, // the finite check is the decoders' job
		{"same type", i64(math.MaxInt64), tensor.Int64, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := convertExact(tt.in, tt.dt)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("convertExact(%s, %s) = %v; want success", tt.in.DType, tt.dt, err)
			case tt.want == "" && got.DType != tt.dt:
				t.Errorf("convertExact(%s, %s) returned %s", tt.in.DType, tt.dt, got.DType)
			case tt.want != "" && err == nil:
				t.Errorf("convertExact(%s, %s) = %v; want an error containing %q", tt.in.DType, tt.dt, got.Float64At(0), tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Errorf("convertExact(%s, %s) error = %q; want it to contain %q", tt.in.DType, tt.dt, err, tt.want)
			}
		})
	}
}
