package codec

import (
	"bytes"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// The decoders read JSON in place, with no tree. validJSON checks the
// whole body once (linear, allocation-free); afterwards the body is walked
// by offsets: a JSON value is the index of its first byte, skipValue finds
// its end, arrays and objects are iterated member by member, and numbers
// are converted from their bytes straight into the tensor. Nothing is
// materialised but what the request keeps (tensors, names), so decoding
// costs about the tensors it builds, whatever the body holds; a parsed
// tree costs ~200 bytes of heap per JSON value (see TestDecodeMemory).
//
// The grammar is JSON with the leniencies of the fastjson parser the
// decoders used before, so that the same bodies are accepted: number
// tokens are runs of [0-9.eE+-] (their conversion rejects the malformed
// ones, naming the element), NaN, Inf and their signed and lower-case
// forms are numbers (TF Serving writes them), strings may hold any byte
// and unknown escapes are kept as written.

// jsonType is the type of a JSON value; its names are those of the
// messages ("inputs: got object; want an array").
type jsonType uint8

const (
	typeNull jsonType = iota
	typeObject
	typeArray
	typeString
	typeNumber
	typeTrue
	typeFalse
)

func (t jsonType) String() string {
	return [...]string{"null", "object", "array", "string", "number", "true", "false"}[t]
}

// typeAt returns the type of the value at b[i] in a validated body.
func typeAt(b []byte, i int) jsonType {
	switch b[i] {
	case '{':
		return typeObject
	case '[':
		return typeArray
	case '"':
		return typeString
	case 't':
		return typeTrue
	case 'f':
		return typeFalse
	case 'n':
		if i+1 < len(b) && b[i+1] == 'u' {
			return typeNull
		}
	}
	return typeNumber // including nan, NaN, inf, -Inf
}

// isNumChar reports whether c may appear in a number token.
func isNumChar(c byte) bool {
	return c-'0' <= 9 || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E'
}

// numberEnd returns the end of the number token at b[i], or -1 when
// there is none: a run of [0-9.eE+-] that is not a lone sign, or an
// optionally signed inf or nan in any case.
func numberEnd(b []byte, i int) int {
	j := i
	if j < len(b) && (b[j] == '-' || b[j] == '+') {
		j++
	}
	if j < len(b) && (b[j]|0x20 == 'i' || b[j]|0x20 == 'n') {
		if len(b)-j >= 3 && (foldEq(b[j:j+3], "inf") || foldEq(b[j:j+3], "nan")) {
			return j + 3
		}
		return -1
	}
	k := i
	for k < len(b) && isNumChar(b[k]) {
		k++
	}
	if k == i || (k == i+1 && j == i+1 && k < len(b)) {
		return -1 // nothing, or a lone sign (fastjson took one that ends the body)
	}
	return k
}

// foldEq reports whether b equals the lower-case ASCII word w in any case.
func foldEq(b []byte, w string) bool {
	for i := range len(w) {
		if b[i]|0x20 != w[i] {
			return false
		}
	}
	return true
}

// stringStop marks the bytes that end or escape within a string.
var stringStop = [256]bool{'"': true, '\\': true}

// stringEnd returns the index after the closing quote of the string
// whose opening quote is b[i], or -1 when it is not closed. A backslash
// escapes the byte after it.
func stringEnd(b []byte, i int) int {
	// Names, keys and datatypes end within a few bytes, where a plain
	// loop beats a call to IndexByte.
	j := i + 1
	for ; j < len(b) && j <= i+32; j++ {
		if !stringStop[b[j]] {
			continue
		}
		if b[j] == '"' {
			return j + 1
		}
		j++ // a backslash: skip the byte it escapes
	}
	if j > len(b) {
		return -1 // a backslash ended the body
	}
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return -1
		}
		k += j
		// The quote is escaped when an odd run of backslashes precedes it.
		n := 0
		for k-1-n > i && b[k-1-n] == '\\' {
			n++
		}
		if n%2 == 0 {
			return k + 1
		}
		j = k + 1
	}
}

// syntaxError is where and why a body is not JSON.
type syntaxError struct {
	off  int
	want string
}

func (e *syntaxError) Error() string {
	return "at byte " + strconv.Itoa(e.off) + ": want " + e.want
}

// errTooDeep is validJSON's error for a body nested deeper than allowed;
// parseJSON replaces it with checkDepth's message.
var errTooDeep = &syntaxError{-1, "less nesting (limits.max_json_depth)"}

// validJSON checks that b is one JSON value (the grammar above) with
// nothing but whitespace around it, nested at most maxDepth deep (else
// errTooDeep). It keeps a stack of open containers, maxDepth bytes at
// most.
func validJSON(b []byte, maxDepth int) error {
	var stackArr [32]byte
	stack := stackArr[:0] // '{' or '[' per open container
	const (
		wantValue = iota
		wantKey
		wantAfter // a value ended
	)
	state := wantValue
	i := skipSpace(b, 0)
	for {
		switch state {
		case wantValue:
			if i >= len(b) {
				return &syntaxError{i, "a value, not the end of the body"}
			}
			switch c := b[i]; c {
			case '{', '[':
				if len(stack) >= maxDepth {
					return errTooDeep
				}
				i = skipSpace(b, i+1)
				if i < len(b) && b[i] == c+2 { // '}' is '{'+2, ']' is '['+2
					i++
					state = wantAfter
					continue
				}
				stack = append(stack, c)
				if c == '{' {
					state = wantKey
				}
				continue
			case '"':
				if i = stringEnd(b, i); i < 0 {
					return &syntaxError{len(b), "a closing quote"}
				}
			case 't':
				if !bytes.HasPrefix(b[i:], []byte("true")) {
					return &syntaxError{i, "a value"}
				}
				i += 4
			case 'f':
				if !bytes.HasPrefix(b[i:], []byte("false")) {
					return &syntaxError{i, "a value"}
				}
				i += 5
			case 'n':
				switch {
				case bytes.HasPrefix(b[i:], []byte("null")):
					i += 4
				case len(b)-i >= 3 && foldEq(b[i:i+3], "nan"):
					i += 3
				default:
					return &syntaxError{i, "a value"}
				}
			default:
				j := numberEnd(b, i)
				if j < 0 {
					return &syntaxError{i, "a value"}
				}
				i = j
			}
			state = wantAfter
		case wantKey:
			if i >= len(b) || b[i] != '"' {
				return &syntaxError{i, "a string key"}
			}
			if i = stringEnd(b, i); i < 0 {
				return &syntaxError{len(b), "a closing quote"}
			}
			i = skipSpace(b, i)
			if i >= len(b) || b[i] != ':' {
				return &syntaxError{i, "':' after the key"}
			}
			i = skipSpace(b, i+1)
			state = wantValue
		case wantAfter:
			i = skipSpace(b, i)
			if len(stack) == 0 {
				if i != len(b) {
					return &syntaxError{i, "the end of the body after the JSON value"}
				}
				return nil
			}
			top := stack[len(stack)-1]
			switch {
			case i < len(b) && b[i] == ',':
				i = skipSpace(b, i+1)
				if top == '{' {
					state = wantKey
				} else {
					state = wantValue
				}
			case i < len(b) && b[i] == top+2:
				stack = stack[:len(stack)-1]
				i++
			case top == '{':
				return &syntaxError{i, "',' or '}'"}
			default:
				return &syntaxError{i, "',' or ']'"}
			}
		}
	}
}

// structural marks the bytes skipValue stops at in a container.
var structural = [256]bool{'"': true, '[': true, ']': true, '{': true, '}': true}

// skipValue returns the index after the value at b[i] of a validated
// body.
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			for j < len(b) && !structural[b[j]] {
				j++ // numbers, commas, literals, whitespace: the bulk
			}
			if j == len(b) {
				break
			}
			switch b[j] {
			case '"':
				j = stringEnd(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return len(b) // unreachable in a validated body
	case 't':
		return i + 4
	case 'f':
		return i + 5
	case 'n':
		if b[i+1] == 'u' {
			return i + 4
		}
	}
	return numberEnd(b, i)
}

// firstElem returns the first element of the array at b[i]; when the
// array is empty, ok is false and next is the index after it.
func firstElem(b []byte, i int) (next int, ok bool) {
	i = skipSpace(b, i+1)
	if b[i] == ']' {
		return i + 1, false
	}
	return i, true
}

// nextElem returns the element after the one ending at end; when that
// was the last, ok is false and next is the index after the array.
func nextElem(b []byte, end int) (next int, ok bool) {
	end = skipSpace(b, end)
	if b[end] == ',' {
		return skipSpace(b, end+1), true
	}
	return end + 1, false
}

// countRest returns the number of elements after the one ending at end,
// and the index after the array.
func countRest(b []byte, end int) (n, after int) {
	for {
		next, ok := nextElem(b, end)
		if !ok {
			return n, next
		}
		n++
		end = skipValue(b, next)
	}
}

// member is one member of an object: its key's raw bytes (escapes not
// decoded) and where its value starts.
type member struct {
	key []byte
	val int
}

// firstMember returns the first member of the object at b[i]; when the
// object is empty, ok is false and next is the index after it.
func firstMember(b []byte, i int) (m member, next int, ok bool) {
	i = skipSpace(b, i+1)
	if b[i] == '}' {
		return member{}, i + 1, false
	}
	return readMember(b, i), 0, true
}

// readMember reads the member whose key starts at b[i].
func readMember(b []byte, i int) member {
	end := stringEnd(b, i)
	v := skipSpace(b, end)
	return member{key: b[i+1 : end-1], val: skipSpace(b, v+1)}
}

// nextMember returns the member after the one whose value ends at end;
// when that was the last, ok is false and next is the index after the
// object.
func nextMember(b []byte, end int) (m member, next int, ok bool) {
	end = skipSpace(b, end)
	if b[end] == ',' {
		return readMember(b, skipSpace(b, end+1)), 0, true
	}
	return member{}, end + 1, false
}

// rawString returns the raw bytes of the string at b[i], between the
// quotes, escapes not decoded.
func rawString(b []byte, i int) []byte {
	return b[i+1 : stringEnd(b, i)-1]
}

// keyIs reports whether raw, a key as written, decodes to k.
func keyIs(raw []byte, k string) bool {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw) == k
	}
	var buf [64]byte
	return string(appendUnescaped(buf[:0], raw)) == k
}

// appendUnescaped appends raw, the bytes of a JSON string between its
// quotes, to dst with its escapes decoded. Escapes that do not decode (an
// unknown letter, bad hex digits, a lone surrogate) are kept as written,
// as fastjson kept them.
func appendUnescaped(dst, raw []byte) []byte {
	for {
		k := bytes.IndexByte(raw, '\\')
		if k < 0 || k == len(raw)-1 {
			return append(dst, raw...)
		}
		dst = append(dst, raw[:k]...)
		c := raw[k+1]
		raw = raw[k+2:]
		switch c {
		case '"', '\\', '/':
			dst = append(dst, c)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(raw)
			if !ok {
				dst = append(dst, `\u`...)
				continue
			}
			if !utf16.IsSurrogate(r) {
				dst = utf8.AppendRune(dst, r)
				raw = raw[4:]
				continue
			}
			// A surrogate decodes only with the one after it.
			if len(raw) >= 10 && raw[4] == '\\' && raw[5] == 'u' {
				if r2, ok := hex4(raw[6:]); ok {
					dst = utf8.AppendRune(dst, utf16.DecodeRune(r, r2))
					raw = raw[10:]
					continue
				}
			}
			dst = append(dst, `\u`...)
			dst = append(dst, raw[:4]...)
			raw = raw[4:]
		default:
			dst = append(dst, '\\', c)
		}
	}
}

// hex4 decodes four hex digits at the start of b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c-'0' <= 9:
			r = r<<4 | rune(c-'0')
		case c|0x20-'a' <= 5:
			r = r<<4 | rune(c|0x20-'a'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// bytesString views b as a string without copying; b must not change
// while the string is used.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// parseInt64 reads the integer token s ([-]digits, as JSON integers are
// written); floats such as 1.0 and 1e3 are not integers here.
func parseInt64(s []byte) (int64, bool) {
	if !isIntToken(s) {
		return 0, false
	}
	x, err := strconv.ParseInt(bytesString(s), 10, 64)
	return x, err == nil
}

// parseUint64 reads the unsigned integer token s (digits only).
func parseUint64(s []byte) (uint64, bool) {
	if len(s) == 0 || s[0] == '-' || !isIntToken(s) {
		return 0, false
	}
	x, err := strconv.ParseUint(bytesString(s), 10, 64)
	return x, err == nil
}

func isIntToken(s []byte) bool {
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	if len(s) == 0 {
		return false
	}
	for _, c := range s {
		if c-'0' > 9 {
			return false
		}
	}
	return true
}

// echoValue returns the value at b[i] as written, truncated for an error
// message (an echo must not grow with the input).
func echoValue(b []byte, i int) string {
	return TruncateBytes(b[i:skipValue(b, i)])
}
