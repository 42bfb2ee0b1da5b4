package codec

import "unicode/utf8"

// maxEcho is the most bytes of a client's own text (a name, a datatype, a
// value) that an error message repeats: errors must not grow with the
// input.
const maxEcho = 64

// Truncate returns s cut to at most maxEcho bytes on a rune boundary, with
// "…" when it was cut.
func Truncate(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	n := maxEcho
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// TruncateBytes is Truncate for a byte slice; it copies.
func TruncateBytes(b []byte) string {
	if len(b) <= maxEcho {
		return string(b)
	}
	return Truncate(string(b[:maxEcho+utf8.UTFMax]))
}
