package forest

import (
	"math"
	"unsafe"
)

// blockRows is how many rows walk one tree before the next tree: their
// accumulators stay in L1 while the tree stays in cache.
const blockRows = 64

// Predict scores rows of x (row-major, rows × NumFeatures float32 values)
// into out (rows × NumTargets), before any post transform: per target the
// base value plus the aggregation of the trees' leaf weights. It panics if
// x or out is too short.
func (f *Forest) Predict(x []float32, rows int, out []float32) {
	nf, nt := f.numFeatures, f.numTargets
	if rows <= 0 {
		return
	}
	_ = x[rows*nf-1]
	_ = out[rows*nt-1]
	if f.float32Sum {
		for r := 0; r < rows; r++ {
			o := out[r*nt : r*nt+nt]
			for k := range o {
				o[k] = float32(f.base[k])
			}
		}
	}
	var acc []float64
	var accp *[]float64
	if !f.float32Sum {
		accp = f.accumulators(min(rows, blockRows) * nt)
		acc = *accp
	}
	var leaves [blockRows]int32 // node positions, then leaf indices
	for r0 := 0; r0 < rows; r0 += blockRows {
		n := min(blockRows, rows-r0)
		xb := x[r0*nf : (r0+n)*nf]
		if acc != nil {
			f.initAcc(acc[:n*nt])
		}
		if n < 4 && !f.general {
			f.rowsByTrees(xb, n, out[r0*nt:], acc)
		} else {
			noNaN := !hasNaN(xb)
			for t := range f.roots {
				f.treeLeaves(t, xb, n, leaves[:n], noNaN)
				if f.float32Sum {
					f.add32(leaves[:n], out[r0*nt:])
				} else {
					f.add64(leaves[:n], acc)
				}
			}
		}
		if acc != nil {
			f.finish(acc[:n*nt], out[r0*nt:(r0+n)*nt])
		}
	}
	if accp != nil {
		f.scratch.Put(accp)
	}
}

// Predict64 is Predict for float64 features, compared in float64.
func (f *Forest) Predict64(x []float64, rows int, out []float32) {
	nf, nt := f.numFeatures, f.numTargets
	if rows <= 0 {
		return
	}
	_ = x[rows*nf-1]
	_ = out[rows*nt-1]
	accp := f.accumulators(nt)
	acc := *accp
	var one [1]int32
	for r := 0; r < rows; r++ {
		row := x[r*nf : r*nf+nf]
		o := out[r*nt : r*nt+nt]
		if f.float32Sum {
			for k := range o {
				o[k] = float32(f.base[k])
			}
		} else {
			f.initAcc(acc)
		}
		for t, root := range f.roots {
			_ = t
			one[0] = f.leafIndex(f.walk64(root, row))
			if f.float32Sum {
				f.add32(one[:], o)
			} else {
				f.add64(one[:], acc)
			}
		}
		if !f.float32Sum {
			f.finish(acc, o)
		}
	}
	f.scratch.Put(accp)
}

func (f *Forest) accumulators(n int) *[]float64 {
	if p, ok := f.scratch.Get().(*[]float64); ok && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	s := make([]float64, n)
	return &s
}

func (f *Forest) initAcc(acc []float64) {
	v := 0.0
	switch f.agg {
	case Min:
		v = math.Inf(1)
	case Max:
		v = math.Inf(-1)
	}
	for i := range acc {
		acc[i] = v
	}
}

// finish aggregates float64 accumulators into out, adding the base.
func (f *Forest) finish(acc []float64, out []float32) {
	nt := f.numTargets
	inv := 1 / float64(len(f.roots))
	for i, v := range acc {
		switch f.agg {
		case Average:
			v *= inv
		case Min:
			if v == math.Inf(1) {
				v = 0 // no tree scored this target for this row
			}
		case Max:
			if v == math.Inf(-1) {
				v = 0
			}
		}
		out[i] = float32(v + f.base[i%nt])
	}
}

// add32 adds each row's leaf weights in float32 (rows of out are
// NumTargets apart).
func (f *Forest) add32(leaves []int32, out []float32) {
	nt := f.numTargets
	if f.leafShape == leavesSingle {
		// One weight per leaf: leaf l's is at l.
		w, tg := f.leafW32, f.leafTarget
		if nt == 1 {
			out = out[:len(leaves)]
			for r, l := range leaves {
				out[r] += w[l]
			}
			return
		}
		for r, l := range leaves {
			out[r*nt+int(tg[l])] += w[l]
		}
		return
	}
	for r, l := range leaves {
		o := out[r*nt : r*nt+nt]
		for k := f.leafOff[l]; k < f.leafOff[l+1]; k++ {
			o[f.leafTarget[k]] += f.leafW32[k]
		}
	}
}

func (f *Forest) add64(leaves []int32, acc []float64) {
	nt := f.numTargets
	if f.agg == Sum || f.agg == Average {
		switch f.leafShape {
		case leavesSingle:
			w, tg := f.leafW64, f.leafTarget
			for r, l := range leaves {
				acc[r*nt+int(tg[l])] += w[l]
			}
			return
		case leavesDense:
			// nt weights per leaf, targets 0..nt-1 in order.
			for r, l := range leaves {
				a := acc[r*nt : r*nt+nt]
				ws := f.leafW64[int(l)*nt : int(l)*nt+nt]
				for k := range a {
					a[k] += ws[k]
				}
			}
			return
		}
	}
	for r, l := range leaves {
		a := acc[r*nt : r*nt+nt]
		for k := f.leafOff[l]; k < f.leafOff[l+1]; k++ {
			w := f.leafW64[k]
			t := f.leafTarget[k]
			switch f.agg {
			case Min:
				a[t] = math.Min(a[t], w)
			case Max:
				a[t] = math.Max(a[t], w)
			default:
				a[t] += w
			}
		}
	}
}

// rowsByTrees scores fewer than four rows: each row walks every tree at
// once, one level at a time (the steps of different trees are independent,
// so the CPU overlaps their loads), deepest trees first so that level d
// only visits the trees deeper than d; leaves are then added in tree order.
func (f *Forest) rowsByTrees(x []float32, rows int, out []float32, acc []float64) {
	nf, nt := f.numFeatures, f.numTargets
	pos := f.positions()
	idx := *pos
	for r := 0; r < rows; r++ {
		row := x[r*nf : r*nf+nf]
		copy(idx, f.rootsByDepth)
		walkTreesVec(f.nodes, idx, f.deeper, row, !hasNaN(row))
		if f.float32Sum && f.leafShape == leavesSingle && nt == 1 {
			// The common XGBoost case: one float32 sum in tree order.
			sum, w := out[r], f.leafW32
			for _, j := range f.depthPos {
				sum += w[f.leafIndex(idx[j])]
			}
			out[r] = sum
			continue
		}
		// Back to tree order: idx[depthPos[t]] is tree t's leaf.
		leaves := idx[len(f.roots):]
		for t, j := range f.depthPos {
			leaves[t] = f.leafIndex(idx[j])
		}
		if f.float32Sum {
			f.add32one(leaves, out[r*nt:r*nt+nt])
		} else {
			f.add64one(leaves, acc[r*nt:r*nt+nt])
		}
	}
	f.posPool.Put(pos)
}

// walkTreesScalar moves one row down the trees pos[from:] level by level;
// deeper[d] is how many trees (the first ones of pos) are deeper than d.
func walkTreesScalar(nodes []node, pos []int32, from int, deeper []int32, row []float32, noNaN bool) {
	for _, n := range deeper {
		if int(n) <= from {
			break
		}
		if !noNaN {
			for j, i := range pos[from:n] {
				nd := &nodes[i]
				pos[from+j] = step(nd, row[nd.feat])
			}
			continue
		}
		base := unsafe.Pointer(unsafe.SliceData(nodes))
		x := unsafe.Pointer(unsafe.SliceData(row))
		for j, i := range pos[from:n] {
			nd := (*node)(unsafe.Add(base, uintptr(i)<<4))
			v := *(*float32)(unsafe.Add(x, uintptr(nd.feat)<<2))
			c := int32(1)
			if v < nd.thr32 {
				c = 0
			}
			pos[from+j] = nd.first + c&int32(nd.step)
		}
	}
}

// walkRowsScalar is the portable walk of rows (walkRowsFast for NaN-free
// rows, walkRows otherwise).
func walkRowsScalar(nodes []node, pos []int32, depth int32, x []float32, nf int, noNaN bool) {
	if noNaN {
		walkRowsFast(nodes, pos, depth, x, nf)
	} else {
		walkRows(nodes, pos, depth, x, nf)
	}
}

func (f *Forest) positions() *[]int32 {
	if p, ok := f.posPool.Get().(*[]int32); ok {
		return p
	}
	s := make([]int32, 2*len(f.roots))
	return &s
}

// add32one adds the weights of several leaves (in order) to one row.
func (f *Forest) add32one(leaves []int32, o []float32) {
	for _, l := range leaves {
		for k := f.leafOff[l]; k < f.leafOff[l+1]; k++ {
			o[f.leafTarget[k]] += f.leafW32[k]
		}
	}
}

func (f *Forest) add64one(leaves []int32, a []float64) {
	for _, l := range leaves {
		for k := f.leafOff[l]; k < f.leafOff[l+1]; k++ {
			w, t := f.leafW64[k], f.leafTarget[k]
			switch f.agg {
			case Min:
				a[t] = math.Min(a[t], w)
			case Max:
				a[t] = math.Max(a[t], w)
			default:
				a[t] += w
			}
		}
	}
}

// treeLeaves writes the leaf index each row of x reaches in tree t.
func (f *Forest) treeLeaves(t int, x []float32, rows int, leaves []int32, noNaN bool) {
	nf := f.numFeatures
	root := f.roots[t]
	if f.general {
		for r := 0; r < rows; r++ {
			leaves[r] = f.leafIndex(f.walkGeneral(root, x[r*nf:r*nf+nf]))
		}
		return
	}
	for r := range leaves {
		leaves[r] = root
	}
	walkRowsVec(f.nodes, leaves, f.depth[t], x, nf, noNaN)
	for r, p := range leaves {
		leaves[r] = f.leafIndex(p)
	}
}

func (f *Forest) leafIndex(pos int32) int32 { return int32(math.Float32bits(f.nodes[pos].thr32)) }

// step is one branch-free move down a "x < thr" node: to first when
// x < thr, else first+1; NaN goes where nan says; a leaf stays.
func step(n *node, v float32) int32 {
	c := int32(1)
	if v < n.thr32 {
		c = 0
	}
	if v != v {
		c = int32(n.nan)
	}
	return n.first + c&int32(n.step)
}

// walkRows moves rows of x (nf features each) down one tree, one level at a
// time for all rows: the rows' steps are independent, so the CPU overlaps
// their memory loads. pos holds each row's node, the root at first.
func walkRows(nodes []node, pos []int32, depth int32, x []float32, nf int) {
	for d := int32(0); d < depth; d++ {
		for r, i := range pos {
			n := &nodes[i]
			pos[r] = step(n, x[r*nf+int(n.feat)])
		}
	}
}

// walkRowsFast is walkRows for rows without NaN, without bounds checks:
// Build guarantees that every child index is inside nodes and every
// feature index below nf, and the caller that x holds len(pos) rows.
func walkRowsFast(nodes []node, pos []int32, depth int32, x []float32, nf int) {
	if len(pos) == 0 {
		return
	}
	base := unsafe.Pointer(unsafe.SliceData(nodes))
	x0 := unsafe.Pointer(unsafe.SliceData(x))
	stride := uintptr(nf) * 4
	for d := int32(0); d < depth; d++ {
		xr := x0
		for r, i := range pos {
			n := (*node)(unsafe.Add(base, uintptr(i)<<4))
			v := *(*float32)(unsafe.Add(xr, uintptr(n.feat)<<2))
			c := int32(1)
			if v < n.thr32 {
				c = 0
			}
			pos[r] = n.first + c&int32(n.step)
			xr = unsafe.Add(xr, stride)
		}
	}
}

// hasNaN reports whether x holds a NaN.
func hasNaN(x []float32) bool {
	for _, v := range x {
		if v != v {
			return true
		}
	}
	return false
}

// walkGeneral walks one row through a tree with any node kinds.
func (f *Forest) walkGeneral(i int32, x []float32) int32 {
	for {
		n := &f.nodes[i]
		if n.step == 0 {
			return i
		}
		v := x[n.feat]
		var second bool
		switch {
		case v != v:
			second = n.nan == 1
		case n.kind == kindLT:
			second = !(v < n.thr32)
		case n.kind == kindEQ:
			second = v != n.thr32
		case n.kind == kindNEQ:
			second = v == n.thr32
		case n.kind == kindTrue:
			second = false
		case n.kind == kindZero:
			if v >= -1e-35 && v <= 1e-35 {
				second = n.nan == 1
			} else {
				second = !(v <= n.thr32)
			}
		case n.kind == kindSet, n.kind == kindSetTrunc:
			second = !inSet(f.sets[int(f.thr64[i])], float64(v), n.kind == kindSetTrunc)
		}
		i = n.first
		if second {
			i++
		}
	}
}

func (f *Forest) walk64(i int32, x []float64) int32 {
	for {
		n := &f.nodes[i]
		if n.step == 0 {
			return i
		}
		v, t := x[n.feat], f.thr64[i]
		var second bool
		switch {
		case v != v:
			second = n.nan == 1
		case n.kind == kindLT:
			second = !(v < t)
		case n.kind == kindEQ:
			second = v != t
		case n.kind == kindNEQ:
			second = v == t
		case n.kind == kindTrue:
			second = false
		case n.kind == kindZero:
			if v >= -zeroThreshold && v <= zeroThreshold {
				second = n.nan == 1
			} else {
				second = !(v <= t)
			}
		case n.kind == kindSet, n.kind == kindSetTrunc:
			second = !inSet(f.sets[int(t)], v, n.kind == kindSetTrunc)
		}
		i = n.first
		if second {
			i++
		}
	}
}

// zeroThreshold bounds the values LightGBM's zero-as-missing splits treat
// as zero: its kZeroThreshold, the float32 nearest 1e-35.
const zeroThreshold = float64(float32(1e-35))

// inSet reports whether v, truncated toward zero to an int, is a category
// in s. A negative v is in no set (XGBoost), except with truncNeg for
// values in (-1, 0), which are category 0 (LightGBM).
func inSet(s bitset, v float64, truncNeg bool) bool {
	lo := 0.0
	if truncNeg {
		lo = -1
	}
	if !(v > lo || v == 0) || v > MaxCategory {
		return false
	}
	return s.has(int(v))
}
