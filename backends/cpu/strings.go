package cpu

import (
	"encoding/binary"
	"strconv"

	"github.com/coalesce-ml/coalesce/tensor"
)

// Strings inside the engine. A BYTES value is stored like an INT64 one:
// 8 bytes per element, each an id into the model's vocabulary, which
// holds every string constant of the graph (the string attributes of the
// ONNX-ML operators: class labels, LabelEncoder keys and values, one-hot
// categories, Constant value_string(s)). Kernels therefore compare and
// copy strings as integers and never allocate for them.
//
// At the boundary, Infer turns each BYTES input element into its id, or,
// when the vocabulary does not hold it, into a negative id that matches no
// key (-1 for the call's first unknown element, -2 for the next, ...), so
// that an unknown category maps to LabelEncoder's default and
// OneHotEncoder's zeros; operators that only move data (Identity,
// Reshape, Gather, ...) carry it through and the output gets the caller's
// string back. BYTES outputs are built from the ids in the KServe V2
// layout.

// vocab is a model's string vocabulary: id → string and back. It grows
// while the model loads (compile functions call opCtx.stringID) and is
// frozen before the Backend is returned; from then on it is read-only and
// safe for concurrent use.
type vocab struct {
	ids    map[string]int64
	strs   []string // id → string
	frozen bool     // set once Load is done; intern then only looks up
}

// intern returns s's id, adding s when the vocabulary does not hold it
// yet. Compile functions intern the strings of their attributes, which
// are the same whatever the input shapes, so every string is interned by
// the plans compiled at load; a new string after that is a bug (and would
// race with Infer's lookups).
func (v *vocab) intern(s string) int64 {
	if id, ok := v.ids[s]; ok {
		return id
	}
	if v.frozen {
		panic("BUG: string " + strconv.Quote(s) + " interned after load")
	}
	if v.ids == nil {
		v.ids = map[string]int64{}
	}
	id := int64(len(v.strs))
	v.ids[s] = id
	v.strs = append(v.strs, s)
	return id
}

// stringID returns the vocabulary id of s, interning it. Operators call it
// at compile time for the strings they write (class labels, default
// values) or compare against (keys, categories); a kernel then writes the
// id into a BYTES output as an int64:
//
//	c.setOut(0, tensor.Bytes, []int64{n})     // compile time
//	viewAs[int64](out[0].Data)[i] = labelID   // run time
//
// An id read from a BYTES input may be negative (a string outside the
// vocabulary): it equals no id stringID returns.
func (c *opCtx) stringID(s string) int64 { return c.vocab.intern(s) }

// stringIDs returns the ids of ss.
func (c *opCtx) stringIDs(ss []string) []int64 {
	ids := make([]int64, len(ss))
	for i, s := range ss {
		ids[i] = c.stringID(s)
	}
	return ids
}

// elemSize is the size in bytes of one element of dt inside the engine:
// BYTES elements are int64 string ids.
func elemSize(dt tensor.DataType) int {
	if dt == tensor.Bytes {
		return 8
	}
	return dt.Size()
}

// newValue returns a zeroed tensor of dt and shape in the engine's layout
// (tensor.New rejects BYTES, whose elements have no fixed size outside).
func newValue(dt tensor.DataType, shape []int64) *tensor.Tensor {
	return &tensor.Tensor{DType: dt, Shape: clone(shape), Data: tensor.Alloc(prod(shape) * elemSize(dt))}
}

// internInputs returns inputs with every BYTES tensor replaced by a
// tensor of its elements' ids (see the comment at the top of this file),
// in buffers of w that the next call reuses. Elements outside v are
// recorded in w.unknown, which references the caller's data until
// releaseStrings. inputs have been validated (checkInputs), so every
// element is well formed.
func (w *worker) internInputs(v *vocab, inputs []*tensor.Tensor) []*tensor.Tensor {
	if len(w.strHdrs) < len(inputs) {
		w.strHdrs = make([]tensor.Tensor, len(inputs))
		w.strIDs = make([][]byte, len(inputs))
	}
	w.strIns = append(w.strIns[:0], inputs...)
	for i, in := range inputs {
		if in.DType != tensor.Bytes {
			continue
		}
		size := 8 * int(tensor.NumElements(in.Shape))
		buf := w.strIDs[i]
		if cap(buf) < size {
			buf = tensor.Alloc(size) // 8-byte aligned
		}
		buf = buf[:size]
		w.strIDs[i] = buf
		ids := viewAs[int64](buf)
		rest := in.Data
		for k := range ids {
			e, r, _ := tensor.NextString(rest)
			rest = r
			if id, ok := v.ids[string(e)]; ok {
				ids[k] = id
				continue
			}
			w.unknown = append(w.unknown, e)
			ids[k] = -int64(len(w.unknown))
		}
		w.strHdrs[i] = tensor.Tensor{Name: in.Name, DType: tensor.Bytes, Shape: in.Shape, Data: buf}
		w.strIns[i] = &w.strHdrs[i]
	}
	return w.strIns
}

// releaseStrings drops w's references to the caller's inputs (Infer must
// not retain them).
func (w *worker) releaseStrings() {
	clear(w.unknown)
	w.unknown = w.unknown[:0]
	clear(w.strIns)
	w.strIns = w.strIns[:0]
	clear(w.strHdrs)
}

// appendStrings appends the strings of ids in the KServe V2 BYTES layout
// to dst: vocabulary strings for ids >= 0, the call's unknown input
// elements for negative ones.
func (v *vocab) appendStrings(dst []byte, ids []int64, unknown [][]byte) []byte {
	size := 0
	for _, id := range ids {
		if id >= 0 {
			size += 4 + len(v.strs[id])
		} else {
			size += 4 + len(unknown[-id-1])
		}
	}
	if dst == nil {
		dst = make([]byte, 0, size)
	}
	for _, id := range ids {
		if id >= 0 {
			s := v.strs[id]
			dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s)))
			dst = append(dst, s...)
		} else {
			dst = tensor.AppendString(dst, unknown[-id-1])
		}
	}
	return dst
}
