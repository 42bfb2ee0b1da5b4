package cpu

import (
	"unsafe"
)

// number is every fixed-size numeric element type a kernel may be
// instantiated with.
type number interface {
	~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~float32 | ~float64
}

// float is the floating-point element types.
type float interface{ ~float32 | ~float64 }

// viewAs returns b reinterpreted as a []T sharing its memory. b must be
// aligned for T: tensors from tensor.Alloc, the arena (64-byte offsets) and
// aligned input copies are.
func viewAs[T any](b []byte) []T {
	if len(b) == 0 {
		return nil
	}
	var zero T
	return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), len(b)/int(unsafe.Sizeof(zero)))
}

// aligned reports whether b's first byte is aligned to a multiple of size.
func aligned(b []byte, size int) bool {
	if len(b) == 0 || size <= 1 {
		return true
	}
	return uintptr(unsafe.Pointer(&b[0]))%uintptr(size) == 0
}
