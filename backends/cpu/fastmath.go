package cpu

import "math"

// Element-wise functions for FP32 results, computed in float64 to well
// below float32's precision but several times faster than the math
// package's (which are correct to the last float64 bit): they dominated
// the recurrent cells and GELU in the profiles of the LSTM, GRU and
// MLP architectures.

// exp64 is e**x with a relative error below 1e-11 and math.Exp's
// special cases; the algorithm of expRow32 (there written out inside the
// loop).
func exp64(x float64) float64 {
	const (
		ln2Hi = 6.93147180369123816490e-01
		ln2Lo = 1.90821492927058770002e-10
		log2e = 1.44269504088896338700e+00
		round = 0x1.8p52
	)
	switch {
	case x != x:
		return x
	case x > 709.8:
		return math.Inf(1)
	case x < -745.2:
		return 0
	}
	k := (x*log2e + round) - round
	r := (x - k*ln2Hi) - k*ln2Lo
	r2 := r * r
	r4 := r2 * r2
	p := ((1 + r) + r2*(1.0/2+r*(1.0/6))) +
		r4*(((1.0/24+r*(1.0/120))+r2*(1.0/720+r*(1.0/5040)))+r4*(1.0/40320+r*(1.0/362880)))
	switch ki := int64(k); {
	case ki < -1021:
		return p * math.Float64frombits(uint64(ki+1023+60)<<52) * 0x1p-60
	case ki > 1023:
		return p * math.Float64frombits(uint64(ki+1023-60)<<52) * 0x1p60
	default:
		return p * math.Float64frombits(uint64(ki+1023)<<52)
	}
}

// sigmoid64 is 1/(1 + e**−x).
func sigmoid64(x float64) float64 { return 1 / (1 + exp64(-x)) }

// tanh64 is tanh(x) = sign(x)·(1 − 2/(e**2|x| + 1)); the subtraction
// loses a few float64 bits near 0, far below float32's precision.
func tanh64(x float64) float64 {
	a := math.Abs(x)
	if a > 20 {
		return math.Copysign(1, x) // tanh(20) rounds to 1 even in float64
	}
	return math.Copysign(1-2/(exp64(2*a)+1), x)
}

// gelu64 is x·Φ(x) = x/2·(1 + erf(x/√2)), through erfc(|x|/√2) by the
// Chebyshev fit of Numerical Recipes (erfc's relative error below
// 1.2e-7 everywhere, so the negative tail keeps its relative precision).
func gelu64(x float64) float64 {
	z := math.Abs(x) * (1 / math.Sqrt2)
	t := 1 / (1 + 0.5*z)
	erfc := t * exp64(-z*z-1.26551223+t*(1.00002368+t*(0.37409196+t*(0.09678418+t*(-0.18628806+
		t*(0.27886807+t*(-1.13520398+t*(1.48851587+t*(-0.82215223+t*0.17087277)))))))))
	if x >= 0 {
		return x * (1 - 0.5*erfc)
	}
	return 0.5 * x * erfc
}

// expSmall is e**u for u in [-708, 709] with a relative error below
// 1e-8 (degree-7 polynomial, no special cases): enough for FP32 results,
// and small enough for the compiler to inline into the row loops below,
// where the processor can then overlap consecutive elements.
func expSmall(u float64) float64 {
	const (
		ln2   = 6.93147180559945309417e-01
		log2e = 1.44269504088896338700e+00
		round = 0x1.8p52
	)
	k := (u*log2e + round) - round
	r := u - k*ln2
	p := 1 + r*(1+r*(0.5+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+r*(1.0/5040)))))))
	return p * math.Float64frombits(uint64(int64(k)+1023)<<52)
}

// sigmoidRow32 sets d[i] = sigmoid(s[i]) (NaN stays NaN).
func sigmoidRow32(d, s []float32) {
	d = d[:len(s)]
	for i, v := range s {
		x := min(max(float64(v), -100), 100) // sigmoid(±100) is 1 or 0 in float32
		d[i] = float32(1 / (1 + expSmall(-x)))
	}
}

// tanhRow32 sets d[i] = tanh(s[i]) (NaN stays NaN).
func tanhRow32(d, s []float32) {
	d = d[:len(s)]
	for i, v := range s {
		x := float64(v)
		a := min(math.Abs(x), 20) // tanh(20) is 1 in float64
		d[i] = float32(math.Copysign(1-2/(expSmall(2*a)+1), x))
	}
}
