package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
)

// A Bytes tensor holds variable-length elements (strings) in the KServe V2
// binary layout: each element is a 4-byte little-endian length followed by
// that many bytes, elements in row-major order with no padding. The same
// bytes go on the wire unchanged in the binary tensor extension.

// FromStrings returns a Bytes tensor holding v (len(v) must equal the
// shape's element count).
func FromStrings(name string, shape []int64, v []string) *Tensor {
	size := 0
	for _, s := range v {
		size += 4 + len(s)
	}
	data := Alloc(size)
	off := 0
	for _, s := range v {
		binary.LittleEndian.PutUint32(data[off:], uint32(len(s)))
		off += 4 + copy(data[off+4:], s)
	}
	return &Tensor{Name: name, DType: Bytes, Shape: append([]int64(nil), shape...), Data: data}
}

// AppendString appends one element in the Bytes layout to data.
func AppendString(data []byte, s []byte) []byte {
	data = binary.LittleEndian.AppendUint32(data, uint32(len(s)))
	return append(data, s...)
}

// NextString returns the first element of Bytes-layout data and the rest,
// or ok false when data is too short for the length it declares.
func NextString(data []byte) (elem, rest []byte, ok bool) {
	if len(data) < 4 {
		return nil, data, false
	}
	n := binary.LittleEndian.Uint32(data)
	if uint64(n) > uint64(len(data)-4) {
		return nil, data, false
	}
	return data[4 : 4+n : 4+n], data[4+n:], true
}

// CountStrings returns the number of elements in Bytes-layout data, or an
// error when an element's length runs past the end.
func CountStrings(data []byte) (int, error) {
	n := 0
	for off := 0; off < len(data); n++ {
		if len(data)-off < 4 {
			return n, fmt.Errorf("element %d: %d bytes left, want a 4-byte length", n, len(data)-off)
		}
		l := binary.LittleEndian.Uint32(data[off:])
		if uint64(l) > uint64(len(data)-off-4) || n == math.MaxInt32 {
			return n, fmt.Errorf("element %d: length %d runs past the end of the data (%d bytes left)", n, l, len(data)-off-4)
		}
		off += 4 + int(l)
	}
	return n, nil
}

// Strings returns a copy of a Bytes tensor's elements as strings. It panics
// with a BUG message when t is not Bytes.
func (t *Tensor) Strings() []string {
	if t.DType != Bytes {
		panic(fmt.Sprintf("BUG: tensor %q is %s, not BYTES", t.Name, t.DType))
	}
	var out []string
	for rest := t.Data; len(rest) > 0; {
		e, r, ok := NextString(rest)
		if !ok {
			break
		}
		out = append(out, string(e))
		rest = r
	}
	return out
}

// stringOffsets returns the byte offset of the first element of each of
// the given row boundaries (rows elements each of rowLen strings).
func stringRowOffset(data []byte, elems int) int {
	off := 0
	for i := 0; i < elems; i++ {
		off += 4 + int(binary.LittleEndian.Uint32(data[off:]))
	}
	return off
}
