package xgboost

import (
	"bytes"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// maxSkipDepth bounds the nesting of values Read skips (recursion depth).
const maxSkipDepth = 64

// scanner reads JSON from data one token at a time, without building a
// tree of values: numeric arrays go straight into typed slices of exactly
// their length, so memory stays a small multiple of the file, where a
// fastjson parse costs about 90 bytes per array element (an 80-byte Value
// and its pointer), 45 times the "0," it came from.
//
// It accepts what XGBoost writes beyond JSON: the number literals NaN,
// Infinity and -Infinity.
type scanner struct {
	data []byte
	pos  int
	buf  []byte // unescaped string, valid until the next str call
}

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: offset %d: %s", ErrInvalid, s.pos, fmt.Sprintf(format, args...))
}

func (s *scanner) eof() error {
	return fmt.Errorf("%w: unexpected end of input at offset %d", ErrInvalid, s.pos)
}

func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte without consuming it.
func (s *scanner) peek() (byte, error) {
	s.ws()
	if s.pos >= len(s.data) {
		return 0, s.eof()
	}
	return s.data[s.pos], nil
}

func (s *scanner) expect(c byte) error {
	b, err := s.peek()
	if err != nil {
		return err
	}
	if b != c {
		return s.errorf("found %q, want %q", b, c)
	}
	s.pos++
	return nil
}

// next consumes the ',' or the closing byte that follows an element and
// reports whether the container ended.
func (s *scanner) next(end byte) (bool, error) {
	b, err := s.peek()
	if err != nil {
		return false, err
	}
	switch b {
	case ',':
		s.pos++
		return false, nil
	case end:
		s.pos++
		return true, nil
	}
	return false, s.errorf("found %q, want ',' or %q", b, end)
}

// object calls f for each key of an object, with the scanner positioned
// at the key's value, which f must consume. key is valid only during f.
func (s *scanner) object(f func(key []byte) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if b, err := s.peek(); err != nil {
		return err
	} else if b == '}' {
		s.pos++
		return nil
	}
	for {
		key, err := s.str()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := f(key); err != nil {
			return err
		}
		if end, err := s.next('}'); err != nil || end {
			return err
		}
	}
}

// array calls f for each element of an array, with the scanner positioned
// at the element, which f must consume.
func (s *scanner) array(f func() error) error {
	if err := s.expect('['); err != nil {
		return err
	}
	if b, err := s.peek(); err != nil {
		return err
	} else if b == ']' {
		s.pos++
		return nil
	}
	for {
		if err := f(); err != nil {
			return err
		}
		if end, err := s.next(']'); err != nil || end {
			return err
		}
	}
}

// str reads a string. The result aliases data or s.buf and is valid until
// the next call.
func (s *scanner) str() ([]byte, error) {
	if err := s.expect('"'); err != nil {
		return nil, err
	}
	start := s.pos
	for s.pos < len(s.data) {
		switch c := s.data[s.pos]; {
		case c == '"':
			s.pos++
			return s.data[start : s.pos-1], nil
		case c == '\\':
			s.buf = append(s.buf[:0], s.data[start:s.pos]...)
			return s.unescape()
		case c < 0x20:
			return nil, s.errorf("control character %#x in string", c)
		}
		s.pos++
	}
	return nil, s.eof()
}

// unescape continues str from the first backslash, decoding into s.buf.
func (s *scanner) unescape() ([]byte, error) {
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return s.buf, nil
		case c < 0x20:
			return nil, s.errorf("control character %#x in string", c)
		case c != '\\':
			s.buf = append(s.buf, c)
			s.pos++
			continue
		}
		if s.pos+1 >= len(s.data) {
			return nil, s.eof()
		}
		e := s.data[s.pos+1]
		s.pos += 2
		switch e {
		case '"', '\\', '/':
			s.buf = append(s.buf, e)
		case 'b':
			s.buf = append(s.buf, '\b')
		case 'f':
			s.buf = append(s.buf, '\f')
		case 'n':
			s.buf = append(s.buf, '\n')
		case 'r':
			s.buf = append(s.buf, '\r')
		case 't':
			s.buf = append(s.buf, '\t')
		case 'u':
			r, err := s.hex4()
			if err != nil {
				return nil, err
			}
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if s.pos+1 < len(s.data) && s.data[s.pos] == '\\' && s.data[s.pos+1] == 'u' {
					s.pos += 2
					if r2, err = s.hex4(); err != nil {
						return nil, err
					}
				}
				r = utf16.DecodeRune(r, r2)
			}
			s.buf = utf8.AppendRune(s.buf, r)
		default:
			s.pos -= 2
			return nil, s.errorf("invalid escape \\%c", e)
		}
	}
	return nil, s.eof()
}

func (s *scanner) hex4() (rune, error) {
	if s.pos+4 > len(s.data) {
		return 0, s.eof()
	}
	v, err := strconv.ParseUint(string(s.data[s.pos:s.pos+4]), 16, 16)
	if err != nil {
		return 0, s.errorf("invalid \\u escape")
	}
	s.pos += 4
	return rune(v), nil
}

// literal consumes word if the input continues with it.
func (s *scanner) literal(word string) bool {
	if len(s.data)-s.pos >= len(word) && string(s.data[s.pos:s.pos+len(word)]) == word {
		s.pos += len(word)
		return true
	}
	return false
}

// number reads a number token: JSON's grammar (leading zeros allowed),
// or one of XGBoost's literals NaN, Infinity and -Infinity.
func (s *scanner) number() ([]byte, error) {
	b, err := s.peek()
	if err != nil {
		return nil, err
	}
	d, start := s.data, s.pos
	i := start
	if b == '-' {
		i++
	}
	if i < len(d) && (d[i] == 'N' || d[i] == 'I') {
		if s.literal("NaN") || s.literal("Infinity") || s.literal("-Infinity") {
			return d[start:s.pos], nil
		}
		return nil, s.errorf("invalid number")
	}
	j := digits(d, i)
	if j == i {
		return nil, s.errorf("found %q, want a number", b)
	}
	i = j
	if i < len(d) && d[i] == '.' {
		if j = digits(d, i+1); j == i+1 {
			return nil, s.errorf("invalid number")
		}
		i = j
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if j = digits(d, i); j == i {
			return nil, s.errorf("invalid number")
		}
		i = j
	}
	s.pos = i
	return d[start:i], nil
}

// digits returns the end of the run of decimal digits at d[i:].
func digits(d []byte, i int) int {
	for i < len(d) && d[i]-'0' < 10 {
		i++
	}
	return i
}

// float32 reads a number as float32; NaN and ±Inf literals are returned
// as such, but a finite number outside float32's range is an error.
func (s *scanner) float32() (float32, error) {
	tok, err := s.number()
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseFloat(string(tok), 32)
	if err != nil {
		s.pos -= len(tok)
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, s.errorf("number %.40s is outside float32's range", tok)
		}
		return 0, s.errorf("invalid number %.40q", tok)
	}
	return float32(v), nil
}

// int reads an integer in [lo, hi].
func (s *scanner) int(lo, hi int64) (int64, error) {
	b, err := s.peek()
	if err != nil {
		return 0, err
	}
	start := s.pos
	neg := b == '-'
	if neg {
		s.pos++
	}
	var v int64
	digits := 0
	for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
		if digits == 18 {
			s.pos = start
			return 0, s.errorf("integer too long")
		}
		v = v*10 + int64(s.data[s.pos]-'0')
		digits++
		s.pos++
	}
	if digits == 0 || (s.pos < len(s.data) && (s.data[s.pos] == '.' || s.data[s.pos] == 'e' || s.data[s.pos] == 'E')) {
		s.pos = start
		return 0, s.errorf("want an integer")
	}
	if neg {
		v = -v
	}
	if v < lo || v > hi {
		s.pos = start
		return 0, s.errorf("integer %d out of range [%d, %d]", v, lo, hi)
	}
	return v, nil
}

// open consumes the '[' of an array of numbers and returns an upper
// bound of its length (0 if it is empty, and then consumed), so that it
// is read into one exact allocation: growing by append would allocate
// 5 times the final size.
func (s *scanner) open() (n int, err error) {
	if err := s.expect('['); err != nil {
		return 0, err
	}
	if b, err := s.peek(); err != nil {
		return 0, err
	} else if b == ']' {
		s.pos++
		return 0, nil
	}
	return s.arrayLen(), nil
}

// arrayLen returns the number of elements of the flat array around
// s.pos, counting commas up to the next ']': an upper bound, except that
// a string holding ']' may make it an underestimate.
func (s *scanner) arrayLen() int {
	rest := s.data[s.pos:]
	if end := bytes.IndexByte(rest, ']'); end >= 0 {
		rest = rest[:end]
	}
	return bytes.Count(rest, []byte{','}) + 1
}

// int32s reads an array of integers in [lo, hi].
func (s *scanner) int32s(lo, hi int32) ([]int32, error) {
	return scanArray(s, func() (int32, error) {
		v, err := s.int(int64(lo), int64(hi))
		return int32(v), err
	})
}

// float32s reads an array of numbers.
func (s *scanner) float32s() ([]float32, error) { return scanArray(s, s.float32) }

// bools reads an array of flags: 0 and 1 (XGBoost >= 1.6) or false and
// true (earlier versions).
func (s *scanner) bools() ([]bool, error) {
	return scanArray(s, func() (bool, error) {
		b, err := s.peek()
		if err != nil {
			return false, err
		}
		switch {
		case b == 't' && s.literal("true"):
			return true, nil
		case b == 'f' && s.literal("false"):
			return false, nil
		}
		v, err := s.int(0, 1)
		return v == 1, err
	})
}

// scanArray reads a flat array whose elements elem reads, sized from
// s.open's count.
func scanArray[T any](s *scanner, elem func() (T, error)) ([]T, error) {
	n, err := s.open()
	if n == 0 || err != nil {
		return nil, err
	}
	dst := make([]T, 0, n)
	for {
		v, err := elem()
		if err != nil {
			return nil, err
		}
		dst = append(dst, v)
		if end, err := s.next(']'); err != nil || end {
			return dst, err
		}
	}
}

// param reads a number or a string holding one, as dmlc parameters are
// stored ("num_feature": "4"), and returns its text.
func (s *scanner) param() ([]byte, error) {
	b, err := s.peek()
	if err != nil {
		return nil, err
	}
	if b == '"' {
		return s.str()
	}
	return s.number()
}

// skipArray consumes an array, numbers (the bulk of what Read skips)
// without a call of skip each.
func (s *scanner) skipArray(depth int) error {
	if err := s.expect('['); err != nil {
		return err
	}
	if b, err := s.peek(); err != nil {
		return err
	} else if b == ']' {
		s.pos++
		return nil
	}
	for {
		b, err := s.peek()
		if err != nil {
			return err
		}
		if b == '-' || b-'0' < 10 || b == 'N' || b == 'I' {
			_, err = s.number()
		} else {
			err = s.skip(depth)
		}
		if err != nil {
			return err
		}
		if end, err := s.next(']'); err != nil || end {
			return err
		}
	}
}

// skip consumes one value of any type.
func (s *scanner) skip(depth int) error {
	b, err := s.peek()
	if err != nil {
		return err
	}
	switch b {
	case '{', '[':
		if depth >= maxSkipDepth {
			return s.errorf("values nested deeper than %d", maxSkipDepth)
		}
		if b == '[' {
			return s.skipArray(depth + 1)
		}
		return s.object(func([]byte) error { return s.skip(depth + 1) })
	case '"':
		_, err := s.str()
		return err
	case 't', 'f', 'n':
		if s.literal("true") || s.literal("false") || s.literal("null") {
			return nil
		}
		return s.errorf("invalid literal")
	}
	_, err = s.number()
	return err
}
