package forest

import (
	"math"
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
	var leaves [blockRows]int32
	for r0 := 0; r0 < rows; r0 += blockRows {
		n := min(blockRows, rows-r0)
		xb := x[r0*nf : (r0+n)*nf]
		if acc != nil {
			f.initAcc(acc[:n*nt])
		}
		if n < 4 && len(f.roots) >= 4 && !f.general {
			f.rowsByTrees(xb, n, out[r0*nt:], acc)
		} else {
			for t := range f.roots {
				f.treeLeaves(t, xb, n, leaves[:n])
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
	for r, l := range leaves {
		o := out[r*nt : r*nt+nt]
		for k := f.leafOff[l]; k < f.leafOff[l+1]; k++ {
			o[f.leafTarget[k]] += f.leafW32[k]
		}
	}
}

func (f *Forest) add64(leaves []int32, acc []float64) {
	nt := f.numTargets
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

// rowsByTrees scores fewer than four rows by walking four trees at a time
// per row; leaves are added in tree order.
func (f *Forest) rowsByTrees(x []float32, rows int, out []float32, acc []float64) {
	nf, nt := f.numFeatures, f.numTargets
	var ls [4]int32
	for r := 0; r < rows; r++ {
		row := x[r*nf : r*nf+nf]
		t := 0
		for ; t+4 <= len(f.roots); t += 4 {
			d := max(f.depth[t], f.depth[t+1], f.depth[t+2], f.depth[t+3])
			ls[0], ls[1], ls[2], ls[3] = walk4(f.nodes, f.roots[t], f.roots[t+1], f.roots[t+2], f.roots[t+3], d, row, row, row, row)
			for i := range ls {
				ls[i] = f.leafIndex(ls[i])
			}
			f.addRow(ls[:], r, out, acc, nt)
		}
		for ; t < len(f.roots); t++ {
			ls[0] = f.leafIndex(walk1(f.nodes, f.roots[t], f.depth[t], row))
			f.addRow(ls[:1], r, out, acc, nt)
		}
	}
}

func (f *Forest) addRow(ls []int32, r int, out []float32, acc []float64, nt int) {
	for _, l := range ls {
		if f.float32Sum {
			f.add32([]int32{l}, out[r*nt:r*nt+nt])
		} else {
			f.add64([]int32{l}, acc[r*nt:r*nt+nt])
		}
	}
}

// treeLeaves writes the leaf index each row of x reaches in tree t.
func (f *Forest) treeLeaves(t int, x []float32, rows int, leaves []int32) {
	nf := f.numFeatures
	root := f.roots[t]
	if f.general {
		for r := 0; r < rows; r++ {
			leaves[r] = f.leafIndex(f.walkGeneral(root, x[r*nf:r*nf+nf]))
		}
		return
	}
	d := f.depth[t]
	r := 0
	for ; r+4 <= rows; r += 4 {
		a, b, c, e := walk4(f.nodes, root, root, root, root, d,
			x[r*nf:r*nf+nf], x[(r+1)*nf:(r+1)*nf+nf], x[(r+2)*nf:(r+2)*nf+nf], x[(r+3)*nf:(r+3)*nf+nf])
		leaves[r], leaves[r+1], leaves[r+2], leaves[r+3] = f.leafIndex(a), f.leafIndex(b), f.leafIndex(c), f.leafIndex(e)
	}
	for ; r < rows; r++ {
		leaves[r] = f.leafIndex(walk1(f.nodes, root, d, x[r*nf:r*nf+nf]))
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

func walk1(nodes []node, i, depth int32, x []float32) int32 {
	for d := int32(0); d < depth; d++ {
		n := &nodes[i]
		i = step(n, x[n.feat])
	}
	return i
}

// walk4 runs four independent walks of the same depth bound, so that their
// memory latencies overlap.
func walk4(nodes []node, i0, i1, i2, i3, depth int32, x0, x1, x2, x3 []float32) (int32, int32, int32, int32) {
	for d := int32(0); d < depth; d++ {
		n0, n1, n2, n3 := &nodes[i0], &nodes[i1], &nodes[i2], &nodes[i3]
		i0 = step(n0, x0[n0.feat])
		i1 = step(n1, x1[n1.feat])
		i2 = step(n2, x2[n2.feat])
		i3 = step(n3, x3[n3.feat])
	}
	return i0, i1, i2, i3
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
		case n.kind == kindSet:
			second = !inSet(f.sets[int(f.thr64[i])], float64(v))
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
			if v >= -1e-35 && v <= 1e-35 {
				second = n.nan == 1
			} else {
				second = !(v <= t)
			}
		case n.kind == kindSet:
			second = !inSet(f.sets[int(t)], v)
		}
		i = n.first
		if second {
			i++
		}
	}
}

// inSet reports whether v is a non-negative integer-valued category in s
// (LightGBM truncates the value to an int first).
func inSet(s bitset, v float64) bool {
	if !(v >= 0) || v > MaxCategory {
		return false
	}
	return s.has(int(v))
}
