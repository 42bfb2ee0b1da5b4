package cpu

// bcast iterates a binary operation over numpy-broadcast operands: the
// output's dims are coalesced (size-1 dims dropped, adjacent dims merged
// where both operands are contiguous across them), so the innermost run is
// as long as possible and each operand is either contiguous (stride 1) or
// constant (stride 0) along it.
type bcast struct {
	dims   []int // coalesced output dims, outermost first; at least one
	sa, sb []int // element strides of the operands per dim (0 = broadcast)
}

func newBcast(a, b, out []int64) *bcast {
	fa, fb := broadcastStrides(a, out), broadcastStrides(b, out)
	bc := &bcast{}
	for i, d := range out {
		if d == 1 {
			continue
		}
		if k := len(bc.dims) - 1; k >= 0 &&
			bc.sa[k] == fa[i]*int(d) && bc.sb[k] == fb[i]*int(d) {
			bc.dims[k] *= int(d) // merge into the previous dim
			bc.sa[k], bc.sb[k] = fa[i], fb[i]
			continue
		}
		bc.dims = append(bc.dims, int(d))
		bc.sa = append(bc.sa, fa[i])
		bc.sb = append(bc.sb, fb[i])
	}
	if len(bc.dims) == 0 {
		bc.dims, bc.sa, bc.sb = []int{1}, []int{1}, []int{1}
	}
	return bc
}

// binFns are the three inner loops of one binary operation: vector-vector,
// vector-scalar and scalar-vector. d and the vector operands have the
// same length; the scalar operand has length 1.
type binFns[T any] struct {
	vv, vs, sv func(d, a, b []T)
}

// run computes out = a op b over the broadcast.
func (fns binFns[T]) run(bc *bcast, a, b, out []T) {
	bc.walk(len(out), func(o, offA, offB, n, sa, sb int) {
		d := out[o : o+n]
		switch {
		case sa != 0 && sb != 0:
			fns.vv(d, a[offA:offA+n], b[offB:offB+n])
		case sa != 0:
			fns.vs(d, a[offA:offA+n], b[offB:offB+1])
		default:
			fns.sv(d, a[offA:offA+1], b[offB:offB+n])
		}
	})
}

// walk calls f for each innermost run of the broadcast over an output of
// total elements: the run's output offset o, the operands' offsets, the
// run length n and the operands' strides along it (1, or 0 when
// broadcast).
func (bc *bcast) walk(total int, f func(o, offA, offB, n, sa, sb int)) {
	r := len(bc.dims)
	inner := bc.dims[r-1]
	ia, ib := bc.sa[r-1], bc.sb[r-1]
	var idx [maxRank]int
	offA, offB := 0, 0
	for o := 0; o+inner <= total; o += inner {
		f(o, offA, offB, inner, min(ia, 1), min(ib, 1))
		for k := r - 2; k >= 0; k-- {
			idx[k]++
			offA += bc.sa[k]
			offB += bc.sb[k]
			if idx[k] < bc.dims[k] {
				break
			}
			offA -= bc.sa[k] * bc.dims[k]
			offB -= bc.sb[k] * bc.dims[k]
			idx[k] = 0
		}
	}
}
