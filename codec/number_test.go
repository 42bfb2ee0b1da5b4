package codec

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fastjson"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/tensor"
)

// checkScan asserts that scanFloat32 reads the JSON number s (followed by
// a comma) to strconv's correctly rounded float32, bit for bit.
func checkScan(t *testing.T, s string) { checkReader(t, scanFloat32, s) }

// checkReader asserts that read reads the JSON number s (followed by a
// comma) to strconv's correctly rounded float32, bit for bit.
func checkReader(t *testing.T, read func([]byte, int) (float32, int), s string) {
	t.Helper()
	y, end := read([]byte(s+","), 0)
	want, err := strconv.ParseFloat(s, 32)
	if err != nil && !math.IsInf(want, 0) {
		t.Fatalf("%s: strconv: %v", s, err)
	}
	if end != len(s) || math.Float32bits(y) != math.Float32bits(float32(want)) {
		t.Fatalf("%s: read %v (%#x), end %d; want %v (%#x), end %d",
			s, y, math.Float32bits(y), end, float32(want), math.Float32bits(float32(want)), len(s))
	}
}

func TestScanFloat32(t *testing.T) {
	for _, s := range []string{
		"0", "-0", "0.0", "-0.000", "1", "13.0", "-11.13", "0.1", "0.30000000000000004",
		"16777216", "16777217", "16777219", "123456789", "1e10", "1e11", "1.5e-7", "3.4028235e38",
		"3.4028236e38", "1e39", "-1e39", "1e-45", "1.4e-45", "7e-46", "1e-46", "1e-400", "1e400",
		"8.59848405679289e2", "0.00000000001", "0.000123", "1E+2", "1e-0", "4E-1", "-3e2",
		"123456789012345678901234567890", "0.1234567890123456789012345", "9999999.5", "1e00000000000000000002",
	} {
		checkScan(t, s)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		var s string
		switch r.IntN(4) {
		case 0: // digits rows and the like: short decimals
			s = strconv.FormatFloat(float64(r.IntN(20000))/100, 'f', r.IntN(4), 64)
		case 1: // float32 values printed shortest
			s = strconv.FormatFloat(float64(math.Float32frombits(r.Uint32()&0x7f7fffff)), 'g', -1, 32)
		case 2: // long mantissas with exponents
			s = fmt.Sprintf("%d.%de%d", r.IntN(1000), r.Int64N(1e15), r.IntN(90)-45)
		default:
			s = fmt.Sprintf("-%d.%0*d", r.IntN(100), 1+r.IntN(12), r.Int64N(1e12))
		}
		checkScan(t, s)
	}
	for _, s := range []string{"", "-", "+1", ".5", "1.", "1e", "1e+", "01x", "-.5", "x", "--1", "1.e3"} {
		// "01x" reads as 0 ending at 1: the caller then sees "1x" as junk.
		if _, end := scanFloat32([]byte(s), 0); end >= 0 && !json.Valid([]byte(s[:end])) {
			t.Errorf("%q: accepted %q, which is not a JSON number", s, s[:end])
		}
	}
}

// FuzzScanFloat32: whatever scanFloat32 accepts is a JSON number, and its
// value is strconv's correctly rounded float32.
func FuzzScanFloat32(f *testing.F) {
	for _, s := range []string{"0", "-1.5e-7", "16777217", "1e39", "0.1234567890123456789", "1.", "-"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		y, end := scanFloat32(b, 0)
		if end < 0 {
			return
		}
		s := string(b[:end])
		if !json.Valid([]byte(s)) {
			t.Fatalf("accepted %q, which is not a JSON number", s)
		}
		want, _ := strconv.ParseFloat(s, 32)
		if math.Float32bits(y) != math.Float32bits(float32(want)) {
			t.Fatalf("%q: %v; want %v", s, y, float32(want))
		}
	})
}

// TestJSONNumbersCorrectlyRounded: the JSON decoders give every float
// datatype the nearest value to the decimal text (fastjson's own Float64
// is 1 ulp off for this FP64 value).
func TestJSONNumbersCorrectlyRounded(t *testing.T) {
	const text = "8.59848405679289e2"
	want64, _ := strconv.ParseFloat(text, 64)
	if v, _ := fastjson.Parse(text); v.GetFloat64() == want64 {
		t.Logf("note: fastjson now rounds %s correctly", text)
	}
	lim := testLimits()
	for _, dt := range []tensor.DataType{tensor.FP64, tensor.FP32} {
		m := &backends.ModelVersion{Name: "m", Meta: &backends.Metadata{Inputs: []backends.TensorSpec{{Name: "x", DType: dt, Shape: []int64{-1, 2}}}}}
		body := `{"inputs":[{"name":"x","shape":[1,2],"datatype":"` + dt.String() + `","data":[` + text + `,0.1]}]}`
		req, err := decodeV2([]byte(body), nil, m, &lim)
		if err != nil {
			t.Fatal(err)
		}
		x := req.Inputs[0]
		bits := 64
		if dt == tensor.FP32 {
			bits = 32
		}
		for i, s := range []string{text, "0.1"} {
			want, _ := strconv.ParseFloat(s, bits)
			if got := x.Float64At(i); got != want {
				t.Errorf("%s %s: got %v; want %v", dt, s, got, want)
			}
		}
	}
}

// TestParseFloatText: the general decoders' conversion is strconv's,
// bit for bit, for both widths, on the one-step path and off it.
func TestParseFloatText(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	check := func(s string) {
		for _, bits := range []int{32, 64} {
			got, err := parseFloatText(s, bits)
			want, werr := strconv.ParseFloat(s, bits)
			if werr != nil && !math.IsInf(want, 0) {
				if err == nil {
					t.Fatalf("%s (%d bits): accepted as %v; strconv: %v", s, bits, got, werr)
				}
				continue
			}
			if err != nil || math.Float64bits(got) != math.Float64bits(want) {
				t.Fatalf("%s (%d bits): %v, %v; want %v", s, bits, got, err, want)
			}
		}
	}
	for _, s := range []string{"8.59848405679289e2", "0.1", "-0", "1e22", "1e23", "9007199254740993",
		"1.00000005960464477539062", "1.0000000596046448", "16777217", "nan", "Inf", "-infinity", "1x", "1e400", "0x10"} {
		check(s)
	}
	for range 300000 {
		switch r.IntN(3) {
		case 0:
			check(fmt.Sprintf("%d.%de%d", r.IntN(100000), r.Int64N(1e12), r.IntN(50)-25))
		case 1:
			check(strconv.FormatFloat(math.Float64frombits(r.Uint64()&^(1<<63)), 'g', -1, 64))
		default:
			// Halfway between two float32s, printed shortest: the decimal
			// may lie a little above or below the halfway float64, the
			// double-rounding trap.
			f := math.Float32frombits(r.Uint32() & 0x7f7fffff)
			h := (float64(f) + float64(math.Nextafter32(f, math.MaxFloat32))) / 2
			check(strconv.FormatFloat(h, 'g', -1, 64))
			check(strconv.FormatFloat(h, 'e', 8+r.IntN(8), 64))
		}
	}
}

// TestShortFloat32: the fast reader of short numbers agrees with strconv
// on everything it accepts, and leaves the rest to scanFloat32.
func TestShortFloat32(t *testing.T) {
	check := func(s string) { t.Helper(); checkReader(t, shortFloat32, s) }
	for i := range 100000 {
		check(strconv.Itoa(i))
		check("-" + strconv.Itoa(i))
	}
	r := rand.New(rand.NewPCG(5, 6))
	for range 300000 {
		n := 1 + r.IntN(7)
		digits := strconv.Itoa(r.IntN(int(math.Pow10(n))))
		for len(digits) < n {
			digits = "0" + digits
		}
		k := r.IntN(len(digits)) // digits before the point
		s := strings.TrimLeft(digits[:k], "0")
		if s == "" {
			s = "0"
		}
		if k < len(digits) {
			s += "." + digits[k:]
		}
		if r.IntN(2) == 0 {
			s = "-" + s
		}
		if len(strings.TrimLeft(strings.ReplaceAll(strings.TrimPrefix(s, "-"), ".", ""), "")) > 7 {
			continue
		}
		check(s)
	}
	for _, s := range []string{"", "-", "01", "-01", "1.", ".5", "1e5", "1E5", "12345678", "1234.5678", "0.0000001", "+1", "x"} {
		if _, end := shortFloat32([]byte(s), 0); end >= 0 {
			t.Errorf("%q: read (end %d); want it left to scanFloat32", s, end)
		}
	}
}
