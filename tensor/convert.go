package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Float64At returns element i of t converted to float64. Integers wider
// than 53 bits lose precision; Bool is 0 or 1. It panics on Bytes.
func (t *Tensor) Float64At(i int) float64 {
	d := t.Data
	switch t.DType {
	case Bool, Uint8:
		return float64(d[i])
	case Int8:
		return float64(int8(d[i]))
	case Uint16:
		return float64(binary.LittleEndian.Uint16(d[2*i:]))
	case Int16:
		return float64(int16(binary.LittleEndian.Uint16(d[2*i:])))
	case Uint32:
		return float64(binary.LittleEndian.Uint32(d[4*i:]))
	case Int32:
		return float64(int32(binary.LittleEndian.Uint32(d[4*i:])))
	case Uint64:
		return float64(binary.LittleEndian.Uint64(d[8*i:]))
	case Int64:
		return float64(int64(binary.LittleEndian.Uint64(d[8*i:])))
	case FP16:
		return float64(HalfToFloat32(binary.LittleEndian.Uint16(d[2*i:])))
	case BF16:
		return float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(d[2*i:])) << 16))
	case FP32:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:])))
	case FP64:
		return math.Float64frombits(binary.LittleEndian.Uint64(d[8*i:]))
	}
	panic(fmt.Sprintf("BUG: Float64At on %s", t.DType))
}

// Int64At returns element i of t as an int64 (floats truncate toward zero).
func (t *Tensor) Int64At(i int) int64 {
	switch t.DType {
	case Uint64:
		return int64(binary.LittleEndian.Uint64(t.Data[8*i:]))
	case Int64:
		return int64(binary.LittleEndian.Uint64(t.Data[8*i:]))
	}
	return int64(t.Float64At(i))
}

// SetFloat64 stores v at element i, converting to t's datatype (integers
// truncate toward zero, Bool stores v != 0).
func (t *Tensor) SetFloat64(i int, v float64) {
	d := t.Data
	switch t.DType {
	case Bool:
		if v != 0 {
			d[i] = 1
		} else {
			d[i] = 0
		}
	case Uint8:
		d[i] = uint8(v)
	case Int8:
		d[i] = byte(int8(v))
	case Uint16:
		binary.LittleEndian.PutUint16(d[2*i:], uint16(v))
	case Int16:
		binary.LittleEndian.PutUint16(d[2*i:], uint16(int16(v)))
	case Uint32:
		binary.LittleEndian.PutUint32(d[4*i:], uint32(v))
	case Int32:
		binary.LittleEndian.PutUint32(d[4*i:], uint32(int32(v)))
	case Uint64:
		binary.LittleEndian.PutUint64(d[8*i:], uint64(v))
	case Int64:
		binary.LittleEndian.PutUint64(d[8*i:], uint64(int64(v)))
	case FP16:
		binary.LittleEndian.PutUint16(d[2*i:], Float32ToHalf(float32(v)))
	case BF16:
		binary.LittleEndian.PutUint16(d[2*i:], uint16(math.Float32bits(float32(v))>>16))
	case FP32:
		binary.LittleEndian.PutUint32(d[4*i:], math.Float32bits(float32(v)))
	case FP64:
		binary.LittleEndian.PutUint64(d[8*i:], math.Float64bits(v))
	default:
		panic(fmt.Sprintf("BUG: SetFloat64 on %s", t.DType))
	}
}

// SetInt64 stores v at element i, converting to t's datatype; exact for
// 64-bit integer types.
func (t *Tensor) SetInt64(i int, v int64) {
	switch t.DType {
	case Int64, Uint64:
		binary.LittleEndian.PutUint64(t.Data[8*i:], uint64(v))
	default:
		t.SetFloat64(i, float64(v))
	}
}

// Convert returns t converted to datatype dt (t itself when it already has
// that type). Both types must be numeric.
func Convert(t *Tensor, dt DataType) (*Tensor, error) {
	if t.DType == dt {
		return t, nil
	}
	if !t.DType.IsNumeric() || !dt.IsNumeric() {
		return nil, fmt.Errorf("tensor %q: cannot convert %s to %s", t.Name, t.DType, dt)
	}
	out := New(t.Name, dt, t.Shape)
	n := t.Len()
	switch {
	case t.DType == FP64 && dt == FP32:
		src, dst := t.Float64s(), out.Float32s()
		for i, v := range src {
			dst[i] = float32(v)
		}
	case (t.DType == Int64 || t.DType == Uint64) && (dt == Int64 || dt == Uint64 || dt == Int32 || dt == Uint32):
		for i := 0; i < n; i++ {
			out.SetInt64(i, t.Int64At(i))
		}
	default:
		for i := 0; i < n; i++ {
			out.SetFloat64(i, t.Float64At(i))
		}
	}
	return out, nil
}

// HalfToFloat32 converts an IEEE 754 binary16 value to float32.
func HalfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: normalise
		e := uint32(127 - 15 + 1)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		mant &= 0x3ff
		return math.Float32frombits(sign | e<<23 | mant<<13)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// Float32ToHalf converts f to IEEE 754 binary16, rounding to nearest even.
func Float32ToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23&0xff) - 127 + 15
	mant := b & 0x7fffff
	switch {
	case b&0x7fffffff > 0x7f800000: // NaN
		return sign | 0x7e00
	case exp >= 0x1f: // overflow or Inf
		return sign | 0x7c00
	case exp <= 0: // subnormal or zero
		if exp < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint32(14 - exp)
		half := uint16(mant >> shift)
		rem := mant & (1<<shift - 1)
		mid := uint32(1) << (shift - 1)
		if rem > mid || (rem == mid && half&1 == 1) {
			half++
		}
		return sign | half
	}
	half := sign | uint16(exp)<<10 | uint16(mant>>13)
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && half&1 == 1) {
		half++ // may carry into the exponent, which is the correct rounding
	}
	return half
}
