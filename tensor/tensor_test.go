package tensor

import (
	"errors"
	"math"
	"reflect"
	"testing"
)

func TestParseDataType(t *testing.T) {
	for dt := Bool; dt <= Bytes; dt++ {
		got, ok := ParseDataType(dt.String())
		if !ok || got != dt {
			t.Errorf("ParseDataType(%q) = %v, %v; want %v", dt.String(), got, ok, dt)
		}
	}
	for _, bad := range []string{"", "fp32", "FLOAT", "INVALID", "FP32 "} {
		if _, ok := ParseDataType(bad); ok {
			t.Errorf("ParseDataType(%q) succeeded; want failure", bad)
		}
	}
	if FP16.Size() != 2 || FP64.Size() != 8 || Bytes.Size() != 0 || Bool.Size() != 1 {
		t.Errorf("sizes: FP16 %d FP64 %d BYTES %d BOOL %d", FP16.Size(), FP64.Size(), Bytes.Size(), Bool.Size())
	}
}

func TestNumElements(t *testing.T) {
	f := func(shape []int64, want int64) {
		t.Helper()
		if got := NumElements(shape); got != want {
			t.Errorf("NumElements(%v) = %d; want %d", shape, got, want)
		}
	}
	f(nil, 1)
	f([]int64{3, 4}, 12)
	f([]int64{3, 0, 5}, 0)
	f([]int64{-1, 4}, -1)
	f([]int64{1 << 32, 1 << 32}, -1) // overflow
}

func TestConcatSplit(t *testing.T) {
	a := FromFloat32s("x", []int64{1, 3}, []float32{1, 2, 3})
	b := FromFloat32s("x", []int64{2, 3}, []float32{4, 5, 6, 7, 8, 9})
	c, err := Concat("x", []*Tensor{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Shape, []int64{3, 3}) || !reflect.DeepEqual(c.Float32s(), []float32{1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Fatalf("Concat = %v %v", c.Shape, c.Float32s())
	}
	parts, err := Split(c, []int{2, 0, 1})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(parts[0].Float32s(), []float32{1, 2, 3, 4, 5, 6}) || parts[1].Len() != 0 || !reflect.DeepEqual(parts[2].Float32s(), []float32{7, 8, 9}) {
		t.Errorf("Split = %v %v %v", parts[0].Float32s(), parts[1].Float32s(), parts[2].Float32s())
	}
	if _, err := Split(c, []int{1, 1}); !errors.Is(err, ErrShape) {
		t.Errorf("Split into 2 of 3 rows = %v; want ErrShape", err)
	}
	if _, err := Concat("x", []*Tensor{a, FromFloat32s("x", []int64{1, 2}, []float32{1, 2})}); !errors.Is(err, ErrShape) {
		t.Errorf("Concat of [1,3] and [1,2] = %v; want ErrShape", err)
	}
	if _, err := Concat("x", []*Tensor{a, FromInt64s("x", []int64{1, 3}, []int64{1, 2, 3})}); !errors.Is(err, ErrShape) {
		t.Errorf("Concat of FP32 and INT64 = %v; want ErrShape", err)
	}
}

func TestValidate(t *testing.T) {
	ok := FromFloat32s("x", []int64{2, 2}, []float32{1, 2, 3, 4})
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
	bad := &Tensor{Name: "x", DType: FP32, Shape: []int64{2, 2}, Data: Alloc(12)}
	if err := bad.Validate(); !errors.Is(err, ErrShape) {
		t.Errorf("Validate() of 12 bytes for [2,2] FP32 = %v; want ErrShape", err)
	}
}

func TestConvertEveryType(t *testing.T) {
	values := []float64{0, 1, 7, 100}
	for dt := Bool; dt < Bytes; dt++ {
		src := New("x", FP64, []int64{int64(len(values))})
		copy(src.Float64s(), values)
		c, err := Convert(src, dt)
		if err != nil {
			t.Fatalf("Convert(FP64 -> %s): %v", dt, err)
		}
		back, err := Convert(c, FP64)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range values {
			want := v
			if dt == Bool && v != 0 {
				want = 1
			}
			if got := back.Float64s()[i]; got != want {
				t.Errorf("FP64 -> %s -> FP64: element %d = %v; want %v", dt, i, got, want)
			}
		}
	}
	big := FromInt64s("x", []int64{1}, []int64{math.MaxInt64 - 1})
	if c, _ := Convert(big, Uint64); c.Int64At(0) != math.MaxInt64-1 {
		t.Errorf("INT64 -> UINT64 lost precision: %d", c.Int64At(0))
	}
}

func TestHalf(t *testing.T) {
	tests := []struct {
		f float32
		h uint16
	}{
		{0, 0}, {1, 0x3c00}, {-2, 0xc000}, {65504, 0x7bff}, {0.5, 0x3800},
		{float32(math.Inf(1)), 0x7c00}, {1e6, 0x7c00}, // overflow rounds to Inf
		{5.960464477539063e-08, 0x0001}, // smallest subnormal
		{1.0009765625, 0x3c01},
	}
	for _, tt := range tests {
		if got := Float32ToHalf(tt.f); got != tt.h {
			t.Errorf("Float32ToHalf(%v) = %#04x; want %#04x", tt.f, got, tt.h)
		}
		if tt.f != 1e6 {
			if got := HalfToFloat32(tt.h); got != tt.f {
				t.Errorf("HalfToFloat32(%#04x) = %v; want %v", tt.h, got, tt.f)
			}
		}
	}
	if !math.IsNaN(float64(HalfToFloat32(Float32ToHalf(float32(math.NaN()))))) {
		t.Error("NaN does not survive a round trip through FP16")
	}
	// Every half value survives a round trip through float32.
	for h := 0; h < 1<<16; h++ {
		f := HalfToFloat32(uint16(h))
		if f != f {
			continue
		}
		if back := Float32ToHalf(f); back != uint16(h) {
			t.Fatalf("round trip of %#04x = %#04x (via %v)", h, back, f)
		}
	}
}

func TestViewPanicsOnWrongType(t *testing.T) {
	defer func() {
		if r := recover(); r == nil {
			t.Error("Int64s() of an FP32 tensor did not panic")
		}
	}()
	FromFloat32s("x", []int64{1}, []float32{1}).Int64s()
}
