package lightgbm

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// lines splits the model text into lines ending in "\n" or "\r\n". LightGBM
// writes "\n"; its loader (Common::GetLine, Common::SkipNewLine) also takes
// "\r\n", as from a copy converted on Windows, and a lone "\r", which
// nothing writes and which is not accepted here.
type lines struct {
	s   string
	pos int
	n   int // number of the last line returned, from 1
}

func (l *lines) next() (string, bool) {
	if l.pos >= len(l.s) {
		return "", false
	}
	rest := l.s[l.pos:]
	i := strings.IndexByte(rest, '\n')
	if i < 0 {
		i = len(rest)
		l.pos = len(l.s)
	} else {
		l.pos += i + 1
	}
	l.n++
	return strings.TrimSuffix(rest[:i], "\r"), true
}

func (l *lines) peek() (string, bool) {
	saved := *l
	line, ok := l.next()
	*l = saved
	return line, ok
}

// field is one "key=value" line.
type field struct {
	key, val string
	line     int // 0: absent
}

func (f *field) set(key, val string, line int) error {
	if f.line != 0 {
		return invalidf(line, "%s given twice (first on line %d)", key, f.line)
	}
	*f = field{key: key, val: val, line: line}
	return nil
}

// LightGBM joins arrays with single spaces and splits them with
// Common::Split, which skips empty tokens; runs of spaces are accepted.

func countTokens(s string) int {
	n := 0
	for i := 0; i < len(s); {
		for i < len(s) && s[i] == ' ' {
			i++
		}
		if i == len(s) {
			break
		}
		n++
		for i < len(s) && s[i] != ' ' {
			i++
		}
	}
	return n
}

// nextToken returns the first token of s at or after i and the index
// just past it.
func nextToken(s string, i int) (string, int) {
	for i < len(s) && s[i] == ' ' {
		i++
	}
	j := i
	for j < len(s) && s[j] != ' ' {
		j++
	}
	return s[i:j], j
}

// tokens returns the tokens of s (few: header lists, objective).
func tokens(s string) []string {
	out := make([]string, 0, countTokens(s))
	for i := 0; ; {
		var t string
		if t, i = nextToken(s, i); t == "" {
			return out
		}
		out = append(out, t)
	}
}

// count checks that f holds exactly n tokens, before anything of size n
// is allocated: n comes from the file and may be anything.
func (f *field) count(n int, why string) error {
	if got := countTokens(f.val); got != n {
		return invalidf(f.line, "%s has %d values; want %d (%s)", f.key, got, n, why)
	}
	return nil
}

// list parses f's tokens into dst (reused) and checks that there are
// exactly n: in one pass, with dst grown to n only as far as the text can
// fill it (a token and its separator take two bytes).
func list[T any](f *field, dst []T, n int, why string, parse func(string) (T, bool), want func() string) ([]T, error) {
	if cap(dst) < n {
		dst = make([]T, 0, min(n, len(f.val)/2+1))
	}
	dst = dst[:0]
	for p := 0; ; {
		t, q := nextToken(f.val, p)
		if t == "" {
			break
		}
		if len(dst) == n {
			break // too many: counted below
		}
		v, ok := parse(t)
		if !ok {
			return nil, invalidf(f.line, "%s[%d] = %.40q; want %s", f.key, len(dst), t, want())
		}
		dst = append(dst, v)
		p = q
	}
	if len(dst) != n || countTokens(f.val) != n {
		return nil, f.count(n, why)
	}
	return dst, nil
}

// ints parses f's n integers into dst (reused), each in [lo, hi].
func (f *field) ints(dst []int, n, lo, hi int, why string) ([]int, error) {
	return list(f, dst, n, why, func(t string) (int, bool) {
		v, err := strconv.Atoi(t)
		return v, err == nil && v >= lo && v <= hi
	}, func() string { return fmt.Sprintf("an integer in [%d, %d]", lo, hi) })
}

// floats parses f's n doubles into dst (reused); NaN is refused, and
// infinities unless inf.
func (f *field) floats(dst []float64, n int, inf bool, why string) ([]float64, error) {
	return list(f, dst, n, why, func(t string) (float64, bool) {
		v, err := strconv.ParseFloat(t, 64)
		return v, err == nil && !math.IsNaN(v) && (inf || !math.IsInf(v, 0))
	}, func() string { return "a number" })
}

// words parses f's n unsigned 32-bit integers (category bitsets).
func (f *field) words(dst []uint32, n int, why string) ([]uint32, error) {
	return list(f, dst, n, why, func(t string) (uint32, bool) {
		v, err := strconv.ParseUint(t, 10, 32)
		return uint32(v), err == nil
	}, func() string { return "an unsigned 32-bit integer" })
}

// int parses a header or tree scalar in [lo, hi]; a value above hi is a
// limit (ErrTooLarge) when limit is set.
func (f *field) int(lo, hi int, limit bool) (int, error) {
	v, err := strconv.Atoi(strings.TrimSpace(f.val))
	switch {
	case err != nil || v < lo:
		return 0, invalidf(f.line, "%s = %q; want an integer >= %d", f.key, f.val, lo)
	case v > hi && limit:
		return 0, fmt.Errorf("%w: line %d: %s = %d exceeds the limit of %d", ErrTooLarge, f.line, f.key, v, hi)
	case v > hi:
		return 0, invalidf(f.line, "%s = %d; want at most %d", f.key, v, hi)
	}
	return v, nil
}

// grow returns s with length n, reallocated if too small; callers bound n
// by the text first.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
