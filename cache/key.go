package cache

import (
	"encoding/binary"
	"sync"

	"github.com/coalesce-ml/coalesce/tensor"
)

// Key is the exact identity of one inference request: the model, its
// version and load generation, and every input's name, datatype, shape
// and bytes, in the model's input order. Inputs are decoded tensors, so
// the same tensor sent through any protocol gives the same Key.
//
// The layout, all integers little-endian, is
//
//	u64 generation
//	u32 len, model name
//	u32 len, version
//	u32 number of inputs, then per input:
//	    u32 len, name | u8 datatype | u32 rank | rank × i64 dims | u64 len, data
//
// Every variable-length field carries its length, so two different
// requests never encode to the same bytes.
//
// Get a Key with AcquireKey and return it with ReleaseKey; a Key is not
// safe for concurrent use, and the Cache does not retain it.
type Key struct {
	b []byte
}

var keyPool = sync.Pool{New: func() any { return new(Key) }}

// AcquireKey returns an empty Key from a pool.
func AcquireKey() *Key { return keyPool.Get().(*Key) }

// ReleaseKey returns k to the pool; k must not be used afterwards. Keys
// that grew beyond 1 MiB are dropped rather than pinned in the pool.
func ReleaseKey(k *Key) {
	if cap(k.b) > 1<<20 {
		k.b = nil
	}
	k.b = k.b[:0]
	keyPool.Put(k)
}

// Set makes k the key of a request for model version (generation gen)
// with inputs, which it copies.
func (k *Key) Set(model, version string, gen uint64, inputs []*tensor.Tensor) {
	n := 8 + 4 + len(model) + 4 + len(version) + 4
	for _, t := range inputs {
		n += 4 + len(t.Name) + 1 + 4 + 8*len(t.Shape) + 8 + len(t.Data)
	}
	b := k.b[:0]
	if cap(b) < n {
		b = make([]byte, 0, n)
	}
	b = binary.LittleEndian.AppendUint64(b, gen)
	b = appendString(b, model)
	b = appendString(b, version)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(inputs)))
	for _, t := range inputs {
		b = appendString(b, t.Name)
		b = append(b, byte(t.DType))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(t.Shape)))
		for _, d := range t.Shape {
			b = binary.LittleEndian.AppendUint64(b, uint64(d))
		}
		b = binary.LittleEndian.AppendUint64(b, uint64(len(t.Data)))
		b = append(b, t.Data...)
	}
	k.b = b
}

// Bytes returns the encoded key, valid until the next Set or ReleaseKey.
func (k *Key) Bytes() []byte { return k.b }

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
