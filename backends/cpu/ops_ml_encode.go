package cpu

import (
	"fmt"
	"math"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/tensor"
)

// The ONNX-ML encoders: OneHotEncoder and LabelEncoder. Their keys are
// int64s, floats or strings; string keys are vocabulary ids, so every
// lookup is on integers, through a table built at compile time.

// keyIndex maps int64 keys (integers, or string ids) to their position
// in a key list: a dense table over [lo, lo+len(dense)) when the keys are
// that compact, else a map. It is immutable once built.
type keyIndex struct {
	lo    int64
	dense []int32 // position+1 per key-lo; 0 when absent
	m     map[int64]int32
}

// newKeyIndex indexes keys; for a key listed twice the first position
// wins when firstWins is set, else the last (onnxruntime's emplace and
// operator[] respectively).
func newKeyIndex(keys []int64, firstWins bool) *keyIndex {
	k := &keyIndex{}
	if len(keys) == 0 {
		return k
	}
	lo, hi := keys[0], keys[0]
	for _, v := range keys {
		lo, hi = min(lo, v), max(hi, v)
	}
	if span := uint64(hi) - uint64(lo); span < uint64(2*len(keys)+64) {
		k.lo, k.dense = lo, make([]int32, span+1)
		for i, v := range keys {
			if p := &k.dense[v-lo]; *p == 0 || !firstWins {
				*p = int32(i + 1)
			}
		}
		return k
	}
	k.m = make(map[int64]int32, len(keys))
	for i, v := range keys {
		if _, dup := k.m[v]; !dup || !firstWins {
			k.m[v] = int32(i)
		}
	}
	return k
}

// find returns key's position, or false.
func (k *keyIndex) find(key int64) (int, bool) {
	if k.dense != nil {
		if d := uint64(key) - uint64(k.lo); d < uint64(len(k.dense)) {
			p := k.dense[d]
			return int(p) - 1, p != 0
		}
		return 0, false
	}
	p, ok := k.m[key]
	return int(p), ok
}

// floatIndex maps float keys to their position (first wins); NaN matches
// a NaN key, and 0 matches -0.
type floatIndex struct {
	m   map[float32]int32
	nan int32 // position+1 of the NaN key, 0 for none
}

func newFloatIndex(keys []float32) *floatIndex {
	k := &floatIndex{m: make(map[float32]int32, len(keys))}
	for i, v := range keys {
		if v != v {
			if k.nan == 0 {
				k.nan = int32(i + 1)
			}
			continue
		}
		if _, dup := k.m[v]; !dup {
			k.m[v] = int32(i)
		}
	}
	return k
}

func (k *floatIndex) find(key float32) (int, bool) {
	if key != key {
		return int(k.nan) - 1, k.nan != 0
	}
	p, ok := k.m[key]
	return int(p), ok
}

// compileOneHotEncoder compiles OneHotEncoder: Y = X's shape + [C], FP32,
// with a 1 at the position of each element's category among cats_strings
// (BYTES input) or cats_int64s (INT64, INT32, FP32, FP64 input; floats are
// truncated to integers, as onnxruntime casts them). An element in no
// category gives a row of zeros when zeros is 1 (the default) and fails
// the call when it is 0. Exactly one of the category lists is set; a
// category listed twice takes its last position (onnxruntime).
func compileOneHotEncoder(c *opCtx) (kernel, error) {
	as := c.n.attrs
	ints, hasInts, err := as.Ints("cats_int64s")
	if err != nil {
		return nil, err
	}
	strs, hasStrs, err := as.Strings("cats_strings")
	if err != nil {
		return nil, err
	}
	zeros, err := as.Bool("zeros", true)
	if err != nil {
		return nil, err
	}
	if hasInts == hasStrs || len(ints)+len(strs) == 0 {
		return nil, invalidf("exactly one of the attributes cats_int64s and cats_strings must be set, non-empty")
	}
	keys := ints
	if hasStrs {
		keys = c.stringIDs(strs)
	}
	x := c.input(0)
	if hasStrs {
		if err := c.wantDType(0, "X", tensor.Bytes); err != nil {
			return nil, fmt.Errorf("%w (the categories are cats_strings)", err)
		}
	} else if err := c.wantDType(0, "X", mlNumeric...); err != nil {
		return nil, fmt.Errorf("%w (the categories are cats_int64s)", err)
	}
	nc := len(keys)
	c.setOut(0, tensor.FP32, append(clone(x.shape), int64(nc)))
	idx := newKeyIndex(keys, false)
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		y := viewAs[float32](out[0].Data)
		clear(y)
		t := in[0]
		for i := range prod(t.Shape) {
			var key int64
			ok := true
			switch t.DType {
			case tensor.Int64, tensor.Bytes:
				key = viewAs[int64](t.Data)[i]
			case tensor.Int32:
				key = int64(viewAs[int32](t.Data)[i])
			case tensor.FP32:
				key, ok = floatKey(float64(viewAs[float32](t.Data)[i]))
			default:
				key, ok = floatKey(viewAs[float64](t.Data)[i])
			}
			if ok {
				var p int
				if p, ok = idx.find(key); ok {
					y[i*nc+p] = 1
				}
			}
			if !ok && !zeros {
				return fmt.Errorf("input X[%d] is in no category and attribute zeros is 0", i)
			}
		}
		return nil
	}), nil
}

// floatKey truncates v to an int64 category, or returns false when v is
// NaN or out of range (undefined in onnxruntime's static_cast).
func floatKey(v float64) (int64, bool) {
	if !(v >= -(1<<63) && v < 1<<63) { // NaN fails both
		return 0, false
	}
	return int64(v), true
}

// compileLabelEncoder compiles LabelEncoder. Opset 1 (ai.onnx.ml 1):
// classes_strings maps strings to their position (default_int64, -1, for
// others; a string listed twice takes its last position) and INT64
// positions back to strings (default_string, "_Unused", out of range).
// Opset 2 and 3: exactly one of keys_strings, keys_int64s, keys_floats
// (the input's type: BYTES, INT64, FP32) and one of values_strings,
// values_int64s, values_floats (the output's type) of the same length;
// keys not found map to default_string ("_Unused"), default_int64 (-1)
// or default_float (-0.0); a key listed twice maps to its first value
// (onnxruntime); a NaN key matches NaN.
func compileLabelEncoder(c *opCtx) (kernel, error) {
	if c.mlOpset < 2 {
		return compileLabelEncoder1(c)
	}
	as := c.n.attrs
	if as.Has("classes_strings") {
		return nil, invalidf("attribute classes_strings is LabelEncoder-1's (ai.onnx.ml opset 1); the model imports opset %d", c.mlOpset)
	}
	var keyAttr, valAttr *onnx.Attr
	for _, a := range as {
		switch a.Name {
		case "keys_strings", "keys_int64s", "keys_floats":
			if keyAttr != nil {
				return nil, invalidf("attributes %s and %s are both set", keyAttr.Name, a.Name)
			}
			keyAttr = a
		case "values_strings", "values_int64s", "values_floats":
			if valAttr != nil {
				return nil, invalidf("attributes %s and %s are both set", valAttr.Name, a.Name)
			}
			valAttr = a
		}
	}
	if keyAttr == nil || valAttr == nil {
		return nil, invalidf("one of keys_strings, keys_int64s, keys_floats and one of values_strings, values_int64s, values_floats are required")
	}
	// The keys: an index over int64 keys (integers or string ids), or over
	// float keys.
	var ints *keyIndex
	var floats *floatIndex
	nk := 0
	switch keyAttr.Name {
	case "keys_strings":
		ks, _, err := as.Strings(keyAttr.Name)
		if err != nil {
			return nil, err
		}
		ints, nk = newKeyIndex(c.stringIDs(ks), true), len(ks)
		err = c.wantDType(0, "X", tensor.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w (the keys are keys_strings)", err)
		}
	case "keys_int64s":
		ks, _, err := as.Ints(keyAttr.Name)
		if err != nil {
			return nil, err
		}
		ints, nk = newKeyIndex(ks, true), len(ks)
		if err := c.wantDType(0, "X", tensor.Int64); err != nil {
			return nil, fmt.Errorf("%w (the keys are keys_int64s)", err)
		}
	default:
		ks, _, err := as.Floats(keyAttr.Name)
		if err != nil {
			return nil, err
		}
		floats, nk = newFloatIndex(ks), len(ks)
		if err := c.wantDType(0, "X", tensor.FP32); err != nil {
			return nil, fmt.Errorf("%w (the keys are keys_floats)", err)
		}
	}
	x := c.input(0)
	switch valAttr.Name {
	case "values_floats":
		vs, _, err := as.Floats(valAttr.Name)
		if err != nil {
			return nil, err
		}
		def, err := as.Float("default_float", float32(math.Copysign(0, -1)))
		if err != nil {
			return nil, err
		}
		if len(vs) != nk {
			return nil, invalidf("attribute %s has %d values, %s %d: they must have as many", valAttr.Name, len(vs), keyAttr.Name, nk)
		}
		c.setOut(0, tensor.FP32, clone(x.shape))
		return &labelMap[float32]{ints: ints, floats: floats, values: vs, def: def}, nil
	case "values_int64s":
		vs, _, err := as.Ints(valAttr.Name)
		if err != nil {
			return nil, err
		}
		def, err := as.Int("default_int64", -1)
		if err != nil {
			return nil, err
		}
		if len(vs) != nk {
			return nil, invalidf("attribute %s has %d values, %s %d: they must have as many", valAttr.Name, len(vs), keyAttr.Name, nk)
		}
		c.setOut(0, tensor.Int64, clone(x.shape))
		return &labelMap[int64]{ints: ints, floats: floats, values: vs, def: def}, nil
	default:
		vs, _, err := as.Strings(valAttr.Name)
		if err != nil {
			return nil, err
		}
		def, err := as.Str("default_string", "_Unused")
		if err != nil {
			return nil, err
		}
		if len(vs) != nk {
			return nil, invalidf("attribute %s has %d values, %s %d: they must have as many", valAttr.Name, len(vs), keyAttr.Name, nk)
		}
		c.setOut(0, tensor.Bytes, clone(x.shape))
		return &labelMap[int64]{ints: ints, floats: floats, values: c.stringIDs(vs), def: c.stringID(def)}, nil
	}
}

// compileLabelEncoder1 compiles LabelEncoder-1 (see compileLabelEncoder).
func compileLabelEncoder1(c *opCtx) (kernel, error) {
	as := c.n.attrs
	for _, a := range as {
		switch a.Name {
		case "classes_strings", "default_int64", "default_string":
		default:
			return nil, invalidf("attribute %s is LabelEncoder-2's (ai.onnx.ml opset 2); the model imports opset %d", a.Name, c.mlOpset)
		}
	}
	classes, ok, err := as.Strings("classes_strings")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, invalidf("attribute classes_strings is required")
	}
	defInt, err := as.Int("default_int64", -1)
	if err != nil {
		return nil, err
	}
	defStr, err := as.Str("default_string", "_Unused")
	if err != nil {
		return nil, err
	}
	ids := c.stringIDs(classes)
	defID := c.stringID(defStr)
	if err := c.wantDType(0, "X", tensor.Bytes, tensor.Int64); err != nil {
		return nil, err
	}
	x := c.input(0)
	positions := make([]int64, len(classes))
	for i := range positions {
		positions[i] = int64(i)
	}
	if x.dtype == tensor.Bytes {
		c.setOut(0, tensor.Int64, clone(x.shape))
		return &labelMap[int64]{ints: newKeyIndex(ids, false), values: positions, def: defInt}, nil
	}
	c.setOut(0, tensor.Bytes, clone(x.shape))
	return &labelMap[int64]{ints: newKeyIndex(positions, false), values: ids, def: defID}, nil
}

// labelMap is LabelEncoder's kernel: each input element (an int64 or
// string id looked up in ints, or a float in floats) becomes values[its
// key's position], or def. String values are ids.
type labelMap[V int64 | float32] struct {
	ints   *keyIndex
	floats *floatIndex
	values []V
	def    V
}

func (m *labelMap[V]) run(in, out []*tensor.Tensor) error {
	y := viewAs[V](out[0].Data)
	if m.floats != nil {
		for i, k := range viewAs[float32](in[0].Data) {
			y[i] = m.def
			if p, ok := m.floats.find(k); ok {
				y[i] = m.values[p]
			}
		}
		return nil
	}
	for i, k := range viewAs[int64](in[0].Data) {
		y[i] = m.def
		if p, ok := m.ints.find(k); ok {
			y[i] = m.values[p]
		}
	}
	return nil
}
