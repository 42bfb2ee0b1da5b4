package report

import (
	"math"
	"strconv"
	"strings"
)

// sig formats v with n significant digits in plain decimal notation
// (never an exponent): sig(0.41234, 3) = "0.412", sig(12.34, 3) = "12.3",
// sig(1234, 3) = "1230".
func sig(v float64, n int) string {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	// Round to n significant digits first, so that 9.996 becomes 10 and
	// is then printed with the decimals of a two-digit number.
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', n, 64), 64)
	decimals := n - 1 - int(math.Floor(math.Log10(math.Abs(r))))
	return strconv.FormatFloat(r, 'f', max(decimals, 0), 64)
}

// fmtMs formats a latency in µs as milliseconds with 3 significant digits,
// e.g. "0.412 ms", "12.3 ms"; "n/a" when us ≤ 0 (no answered request).
func fmtMs(us float64) string {
	if us <= 0 {
		return "n/a"
	}
	return sig(us/1000, 3) + " ms"
}

// fmtRate formats a rate in req/s: whole numbers with thousands separators
// from 100 up ("48,213"), 3 significant digits below ("12.3").
func fmtRate(v float64) string {
	if math.Abs(v) < 100 {
		return sig(v, 3)
	}
	return group(strconv.FormatFloat(math.Round(v), 'f', 0, 64))
}

// fmtInt formats n with thousands separators.
func fmtInt(n int64) string {
	return group(strconv.FormatInt(n, 10))
}

// group inserts commas every three digits into the integer string s.
func group(s string) string {
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// fmtRatio formats a ratio as "0.18×", "1.05×", "12×": two decimals
// between 0.1 and 10, two significant digits outside.
func fmtRatio(v float64) string {
	if v >= 0.1 && v < 10 {
		return strconv.FormatFloat(v, 'f', 2, 64) + "×"
	}
	return sig(v, 2) + "×"
}

// fmtCPU formats a CPU time per request in µs, "n/a" when unknown (< 0).
func fmtCPU(us float64) string {
	if us < 0 {
		return "n/a"
	}
	return sig(us, 3)
}

// fmtLevel formats a load level: a connection count or a rate in req/s.
func fmtLevel(v float64) string {
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// cell escapes s for a Markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
