package tensor

import (
	"errors"
	"fmt"
	"math"
	"unsafe"
)

// Tensor is a named, typed, row-major tensor. Data holds the elements in
// little-endian order with no padding (the KServe V2 binary layout), so it
// can be written to and read from the wire without conversion on
// little-endian machines.
//
// A Tensor created by New, FromFloat32s and friends owns 8-byte aligned data,
// so the typed views (Float32s, Int64s, ...) are valid. Code that builds a
// Tensor by hand must allocate Data with Alloc. A Tensor is not safe for
// concurrent mutation; once handed to a backend it must not be changed.
type Tensor struct {
	Name  string
	DType DataType
	Shape []int64
	Data  []byte
}

// ErrShape reports a shape that does not match the data or another tensor.
var ErrShape = errors.New("tensor: shape mismatch")

// NumElements returns the product of shape's dimensions, or -1 when a
// dimension is negative or the product overflows an int.
func NumElements(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return -1
		}
		if d != 0 && n > math.MaxInt32*int64(64)/d {
			return -1
		}
		n *= d
	}
	return n
}

// Alloc returns n zeroed bytes whose first byte is 8-byte aligned, so that
// typed views of it are valid.
func Alloc(n int) []byte {
	if n == 0 {
		return []byte{}
	}
	words := make([]uint64, (n+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), n)
}

// New returns a zeroed tensor of the given type and shape. It panics with
// a BUG message for Bytes or a negative dimension: callers validate shapes
// first.
func New(name string, dt DataType, shape []int64) *Tensor {
	n := NumElements(shape)
	if n < 0 || dt.Size() == 0 {
		panic(fmt.Sprintf("BUG: tensor.New(%s, %v)", dt, shape))
	}
	data := Alloc(int(n) * dt.Size())
	if len(shape) <= len(shortShape{}.dims) {
		// Header and shape in one allocation: most tensors have few dims.
		h := &shortShape{t: Tensor{Name: name, DType: dt, Data: data}}
		h.t.Shape = h.dims[:copy(h.dims[:], shape):len(shape)]
		return &h.t
	}
	return &Tensor{Name: name, DType: dt, Shape: append([]int64(nil), shape...), Data: data}
}

// shortShape is a Tensor with room for its shape, allocated together by
// New.
type shortShape struct {
	t    Tensor
	dims [4]int64
}

// FromFloat32s returns an FP32 tensor holding a copy of v.
func FromFloat32s(name string, shape []int64, v []float32) *Tensor {
	t := New(name, FP32, shape)
	copy(t.Float32s(), v)
	return t
}

// FromInt64s returns an INT64 tensor holding a copy of v.
func FromInt64s(name string, shape []int64, v []int64) *Tensor {
	t := New(name, Int64, shape)
	copy(t.Int64s(), v)
	return t
}

// Len returns the number of elements in t (for Bytes, counted from the
// shape).
func (t *Tensor) Len() int {
	if s := t.DType.Size(); s > 0 {
		return len(t.Data) / s
	}
	if t.DType == Bytes {
		return int(NumElements(t.Shape))
	}
	return 0
}

// BatchSize returns the size of the first dimension, or 1 for a scalar.
func (t *Tensor) BatchSize() int {
	if len(t.Shape) == 0 {
		return 1
	}
	return int(t.Shape[0])
}

// Validate checks that t's data length matches its datatype and shape.
func (t *Tensor) Validate() error {
	if t.DType == Bytes {
		n := NumElements(t.Shape)
		if n < 0 {
			return fmt.Errorf("tensor %q: invalid shape %v", t.Name, t.Shape)
		}
		got, err := CountStrings(t.Data)
		if err != nil {
			return fmt.Errorf("tensor %q: BYTES data: %v: %w", t.Name, err, ErrShape)
		}
		if int64(got) != n {
			return fmt.Errorf("tensor %q: %d BYTES elements, shape %v needs %d: %w", t.Name, got, t.Shape, n, ErrShape)
		}
		return nil
	}
	if t.DType.Size() == 0 {
		return fmt.Errorf("tensor %q: datatype %s has no fixed element size", t.Name, t.DType)
	}
	n := NumElements(t.Shape)
	if n < 0 {
		return fmt.Errorf("tensor %q: invalid shape %v", t.Name, t.Shape)
	}
	if int64(len(t.Data)) != n*int64(t.DType.Size()) {
		return fmt.Errorf("tensor %q: %d bytes of data, shape %v of %s needs %d: %w",
			t.Name, len(t.Data), t.Shape, t.DType, n*int64(t.DType.Size()), ErrShape)
	}
	return nil
}

func view[T any](t *Tensor, want DataType) []T {
	if t.DType != want {
		panic(fmt.Sprintf("BUG: tensor %q is %s, not %s", t.Name, t.DType, want))
	}
	if len(t.Data) == 0 {
		return nil
	}
	var zero T
	return unsafe.Slice((*T)(unsafe.Pointer(&t.Data[0])), len(t.Data)/int(unsafe.Sizeof(zero)))
}

// Float32s returns t's data as a []float32 sharing its memory. It panics
// with a BUG message when t is not FP32.
func (t *Tensor) Float32s() []float32 { return view[float32](t, FP32) }

// Float64s returns t's data as a []float64 sharing its memory (FP64 only).
func (t *Tensor) Float64s() []float64 { return view[float64](t, FP64) }

// Int64s returns t's data as a []int64 sharing its memory (INT64 only).
func (t *Tensor) Int64s() []int64 { return view[int64](t, Int64) }

// Int32s returns t's data as a []int32 sharing its memory (INT32 only).
func (t *Tensor) Int32s() []int32 { return view[int32](t, Int32) }

// Clone returns a deep copy of t.
func (t *Tensor) Clone() *Tensor {
	c := &Tensor{Name: t.Name, DType: t.DType, Shape: append([]int64(nil), t.Shape...), Data: Alloc(len(t.Data))}
	copy(c.Data, t.Data)
	return c
}

// Concat joins tensors along the batch dimension (dim 0) into one tensor
// named name. Datatypes and all other dimensions must agree.
func Concat(name string, parts []*Tensor) (*Tensor, error) {
	if len(parts) == 0 {
		return nil, errors.New("tensor: concat of nothing")
	}
	first := parts[0]
	if len(first.Shape) == 0 {
		return nil, fmt.Errorf("tensor: concat of scalar %q: %w", first.Name, ErrShape)
	}
	var rows int64
	size := 0
	for _, p := range parts {
		if p.DType != first.DType || len(p.Shape) != len(first.Shape) {
			return nil, fmt.Errorf("tensor: concat %s%v with %s%v: %w", first.DType, first.Shape, p.DType, p.Shape, ErrShape)
		}
		for i := 1; i < len(p.Shape); i++ {
			if p.Shape[i] != first.Shape[i] {
				return nil, fmt.Errorf("tensor: concat %v with %v: %w", first.Shape, p.Shape, ErrShape)
			}
		}
		rows += p.Shape[0]
		size += len(p.Data)
	}
	out := &Tensor{Name: name, DType: first.DType, Shape: append([]int64(nil), first.Shape...), Data: Alloc(size)}
	out.Shape[0] = rows
	off := 0
	for _, p := range parts {
		off += copy(out.Data[off:], p.Data)
	}
	return out, nil
}

// Split cuts t along the batch dimension into pieces of the given row
// counts, which must sum to t's batch size. The pieces share t's memory.
func Split(t *Tensor, rows []int) ([]*Tensor, error) {
	if len(t.Shape) == 0 {
		return nil, fmt.Errorf("tensor: split of scalar %q: %w", t.Name, ErrShape)
	}
	total := 0
	for _, r := range rows {
		if r < 0 {
			return nil, fmt.Errorf("tensor: split into %d rows: %w", r, ErrShape)
		}
		total += r
	}
	if int64(total) != t.Shape[0] {
		return nil, fmt.Errorf("tensor: split %d rows of %q into %d: %w", t.Shape[0], t.Name, total, ErrShape)
	}
	rowBytes := 0
	if total > 0 {
		rowBytes = len(t.Data) / total
	}
	rowElems := 0
	if total > 0 {
		rowElems = int(NumElements(t.Shape[1:]))
	}
	out := make([]*Tensor, len(rows))
	off := 0
	for i, r := range rows {
		shape := append([]int64(nil), t.Shape...)
		shape[0] = int64(r)
		n := r * rowBytes
		if t.DType == Bytes {
			n = stringRowOffset(t.Data[off:], r*rowElems)
		}
		out[i] = &Tensor{Name: t.Name, DType: t.DType, Shape: shape, Data: t.Data[off : off+n : off+n]}
		off += n
	}
	return out, nil
}
