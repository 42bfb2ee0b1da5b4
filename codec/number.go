package codec

import (
	"errors"
	"math"
	"strconv"
	"unsafe"
)

// JSON numbers become tensor elements correctly rounded: the decimal text
// goes straight to the nearest value of the tensor's datatype (FP32 or
// FP64; FP16 and BF16 from the nearest FP64), as strconv.ParseFloat does
// and as numpy and Python's json do (fastjson's Float64, which the
// decoders once used, is not: it multiplies by inexact powers of ten, and
// "8.59848405679289e2" comes out 1 ulp low). The decoders convert a
// number's text here.

// parseFloatText converts s, a number token (scan.go's numberEnd), to the
// nearest value with bits (32 or 64) of precision. A value out of range is
// ±Inf (and an underflow ±0 or a subnormal) with no error, so that the
// caller's checks of non-finite values apply to it; err is for text that
// is not a number.
func parseFloatText(s string, bits int) (float64, error) {
	if d, end := readNumber(unsafe.Slice(unsafe.StringData(s), len(s)), 0); end == len(s) {
		if x, ok := d.float(bits); ok {
			return x, nil
		}
	}
	return strconvFloat(s, bits)
}

// strconvFloat is parseFloatText's general path: strconv, with a value
// out of range returned as ±Inf (or ±0) and no error.
func strconvFloat(s string, bits int) (float64, error) {
	x, err := strconv.ParseFloat(s, bits)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && ne.Err == strconv.ErrRange {
			return x, nil
		}
		return 0, errors.New("not a number")
	}
	return x, nil
}

// decimal is a JSON number read by readNumber: (-1)^neg · mant · 10^exp,
// exact when the text had at most 19 significant digits.
type decimal struct {
	mant  uint64
	exp   int
	neg   bool
	exact bool
}

// float64Pow10 holds the powers of ten float64 represents exactly.
var float64Pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// float returns d correctly rounded to bits (32 or 64) of precision, or
// false when the one-step method does not apply and strconv must do it.
// With at most 53 bits of digits and a power of ten within 10^±22, both
// operands are exact float64s and one multiplication or division rounds
// correctly (Clinger's fast path). For float32, rounding that float64
// again is correct too unless it lies exactly halfway between two
// float32s: rounding is monotonic and the halfway points are float64s,
// so the decimal and its float64 are never on opposite sides of one.
func (d decimal) float(bits int) (float64, bool) {
	if !d.exact || d.mant >= 1<<53 || d.exp < -22 || d.exp > 22 {
		return 0, false
	}
	x := float64(d.mant)
	if d.exp >= 0 {
		x *= float64Pow10[d.exp]
	} else {
		x /= float64Pow10[-d.exp]
	}
	if d.neg {
		x = -x
	}
	if bits == 32 {
		// |x| is within [1e-22, 2^53·1e22]: a normal float32 or beyond
		// its range, where float32(x) is ±Inf as strconv's would be.
		if x != 0 && math.Float64bits(x)&(1<<29-1) == 1<<28 {
			return 0, false // halfway between two float32s
		}
		return float64(float32(x)), true
	}
	return x, true
}

// readNumber reads the strict JSON number at b[i:]
// (-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?) and returns it with the
// index after it; end is -1 when the text there is not such a number.
func readNumber(b []byte, i int) (d decimal, end int) {
	d.neg = i < len(b) && b[i] == '-'
	if d.neg {
		i++
	}
	digits := 0 // significant digits in mant
	d.exact = true
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			if digits < 19 {
				d.mant = d.mant*10 + uint64(b[i]-'0')
				digits++
			} else {
				d.exact = false
			}
		}
	default:
		return d, -1
	}
	if i < len(b) && b[i] == '.' {
		i++
		frac := i
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			if digits < 19 {
				d.mant = d.mant*10 + uint64(b[i]-'0')
				d.exp--
				if d.mant != 0 {
					digits++
				}
			} else if b[i] != '0' {
				d.exact = false
			}
		}
		if i == frac {
			return d, -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		eneg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			eneg = b[i] == '-'
			i++
		}
		estart, e := i, 0
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			if e < 100000 {
				e = e*10 + int(b[i]-'0')
			}
		}
		if i == estart {
			return d, -1
		}
		if eneg {
			e = -e
		}
		d.exp += e
	}
	if d.mant == 0 {
		d.exp = 0 // zero whatever the exponent
	}
	return d, i
}

// scanFloat32 reads the strict JSON number at b[i:] and returns its value
// correctly rounded to float32 and the index after it; end is -1 when the
// text there is not such a number.
func scanFloat32(b []byte, i int) (y float32, end int) {
	d, end := readNumber(b, i)
	if end < 0 {
		return 0, -1
	}
	x, ok := d.float(32)
	if !ok {
		var err error
		if x, err = strconvFloat(unsafe.String(&b[i], end-i), 32); err != nil {
			return 0, -1
		}
	}
	return float32(x), end
}

// shortFloat32 reads the commonest numbers, [-]digits[.digits] with at
// most 7 digits in all and no exponent, at b[i:], and returns their value
// and the index after them; end is -1 for anything else, which the caller
// gives to scanFloat32. Seven digits stay below 2^24, so the digits are
// an exact float32 and one division by an exact power of ten rounds
// correctly.
func shortFloat32(b []byte, i int) (y float32, end int) {
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	start := i
	var mant uint32
	for i < len(b) && b[i]-'0' <= 9 {
		mant = mant*10 + uint32(b[i]-'0')
		i++
	}
	n := i - start
	if n == 0 || (n > 1 && b[start] == '0') {
		return 0, -1
	}
	frac := 0
	if i < len(b) && b[i] == '.' {
		i++
		fstart := i
		for i < len(b) && b[i]-'0' <= 9 {
			mant = mant*10 + uint32(b[i]-'0')
			i++
		}
		frac = i - fstart
		if frac == 0 {
			return 0, -1
		}
	}
	if n+frac > 7 || (i < len(b) && (b[i] == 'e' || b[i] == 'E')) {
		return 0, -1
	}
	y = float32(mant)
	if frac > 0 {
		y /= float32Pow10[frac]
	}
	if neg {
		y = -y
	}
	return y, i
}

// float32Pow10 holds the powers of ten float32 represents exactly.
var float32Pow10 = [...]float32{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7}

// isInf32 reports whether y is ±Inf.
func isInf32(y float32) bool { return math.IsInf(float64(y), 0) }
