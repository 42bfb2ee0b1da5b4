package cpu

import (
	"slices"
	"strings"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/tensor"
)

// einsumSpec is a parsed Einsum equation: per operand and for the output,
// one label per dim. Ellipsis dims get the labels '0', '1', ... (digits
// cannot appear in an equation), right-aligned across operands.
type einsumSpec struct {
	ins  [][]byte
	out  []byte
	size map[byte]int
}

// parseEinsum parses eq for operands of the given shapes.
func parseEinsum(eq string, shapes [][]int64) (*einsumSpec, error) {
	eq = strings.ReplaceAll(eq, " ", "")
	lhs, rhs, explicit := strings.Cut(eq, "->")
	terms := strings.Split(lhs, ",")
	if len(terms) != len(shapes) {
		return nil, invalidf("equation %q has %d operands, the node %d inputs", eq, len(terms), len(shapes))
	}
	sp := &einsumSpec{size: map[byte]int{}}
	maxEll := 0
	ells := make([]int, len(terms))
	for i, t := range terms {
		letters := strings.Count(strings.ReplaceAll(t, "...", ""), "") - 1
		if strings.Contains(t, "...") {
			ells[i] = len(shapes[i]) - letters
			if ells[i] < 0 {
				return nil, invalidf("operand %d (%q) has rank %d", i, t, len(shapes[i]))
			}
			maxEll = max(maxEll, ells[i])
		} else if letters != len(shapes[i]) {
			return nil, invalidf("operand %d (%q) has rank %d", i, t, len(shapes[i]))
		}
	}
	if maxEll > 10 {
		return nil, unsupportedf("ellipsis of %d dims", maxEll)
	}
	ellLabels := func(n int) []byte {
		var b []byte
		for k := maxEll - n; k < maxEll; k++ {
			b = append(b, byte('0'+k))
		}
		return b
	}
	expand := func(t string, n int) ([]byte, error) {
		var out []byte
		for i := 0; i < len(t); i++ {
			switch ch := t[i]; {
			case strings.HasPrefix(t[i:], "..."):
				out = append(out, ellLabels(n)...)
				i += 2
			case ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z':
				out = append(out, ch)
			default:
				return nil, invalidf("equation %q: character %q", eq, ch)
			}
		}
		return out, nil
	}
	count := map[byte]int{}
	for i, t := range terms {
		labels, err := expand(t, ells[i])
		if err != nil {
			return nil, err
		}
		for d, l := range labels {
			n := int(shapes[i][d])
			count[l]++
			switch s, ok := sp.size[l]; {
			case !ok || s == 1:
				sp.size[l] = n
			case n != s && n != 1:
				return nil, invalidf("equation %q: label %c has sizes %d and %d", eq, l, s, n)
			}
		}
		sp.ins = append(sp.ins, labels)
	}
	if explicit {
		out, err := expand(rhs, maxEll)
		if err != nil {
			return nil, err
		}
		for i, l := range out {
			if _, ok := sp.size[l]; !ok || slices.Contains(out[:i], l) {
				return nil, invalidf("equation %q: output label %c unknown or repeated", eq, l)
			}
		}
		sp.out = out
	} else {
		sp.out = ellLabels(maxEll)
		var once []byte
		for l, n := range count {
			if n == 1 && (l < '0' || l > '9') {
				once = append(once, l)
			}
		}
		slices.Sort(once)
		sp.out = append(sp.out, once...)
	}
	return sp, nil
}

// compileEinsum compiles Einsum on FP32, FP64, INT32 and INT64: any
// equation (ellipsis, implicit output, repeated labels for diagonals,
// sums over labels of one operand). A two-operand FP32 contraction
// without diagonals or one-sided sums, the form exporters emit for
// attention and bilinear layers, is a batched product on the GEMM
// kernels after permuting the operands to [batch, M, K] and
// [batch, K, N]; everything else is a loop over the labels' product,
// accumulated in float64.
func compileEinsum(c *opCtx) (kernel, error) {
	eq, err := c.n.attrs.Str("equation", "")
	if err != nil {
		return nil, err
	}
	if !c.n.attrs.Has("equation") {
		return nil, invalidf("attribute equation is required")
	}
	var shapes [][]int64
	dt := c.input(0).dtype
	for i, in := range c.in {
		if in == nil || in.dtype != dt {
			return nil, invalidf("input %d missing or not %s", i, dt)
		}
		shapes = append(shapes, in.shape)
	}
	sp, err := parseEinsum(eq, shapes)
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(sp.out))
	for i, l := range sp.out {
		out[i] = int64(sp.size[l])
	}
	if err := checkShape(out); err != nil {
		return nil, err
	}
	c.setOut(0, dt, out)
	if dt == tensor.FP32 {
		if k := sp.gemm(c.ks, shapes); k != nil {
			return k, nil
		}
	}
	switch dt {
	case tensor.FP32:
		return einsumLoop[float32](sp, shapes), nil
	case tensor.FP64:
		return einsumLoop[float64](sp, shapes), nil
	case tensor.Int32:
		return einsumLoop[int32](sp, shapes), nil
	case tensor.Int64:
		return einsumLoop[int64](sp, shapes), nil
	}
	return nil, unsupportedf("datatype %s", dt)
}

// labelStrides returns, for each label of all, the element stride of a
// tensor of shape whose dims carry labels (0 for a label it lacks or
// a broadcast dim of 1; repeated labels add up: a diagonal).
func labelStrides(all, labels []byte, shape []int64) []int {
	st := contiguousStrides(shape)
	out := make([]int, len(all))
	for d, l := range labels {
		if shape[d] == 1 {
			continue
		}
		out[slices.Index(all, l)] += st[d]
	}
	return out
}

func einsumLoop[T number](sp *einsumSpec, shapes [][]int64) kernel {
	all := slices.Clone(sp.out)
	for _, labels := range sp.ins {
		for _, l := range labels {
			if !slices.Contains(all, l) {
				all = append(all, l)
			}
		}
	}
	dims := make([]int, len(all))
	for i, l := range all {
		dims[i] = sp.size[l]
	}
	var strides [][]int
	for i, labels := range sp.ins {
		strides = append(strides, labelStrides(all, labels, shapes[i]))
	}
	outStr := labelStrides(all, sp.out, func() []int64 {
		s := make([]int64, len(sp.out))
		for i, l := range sp.out {
			s[i] = int64(sp.size[l])
		}
		return s
	}())
	total := 1
	for _, d := range dims {
		total *= d
	}
	return kernelFunc(func(in, outs []*tensor.Tensor) error {
		y := viewAs[T](outs[0].Data)
		clear(y)
		if total == 0 {
			return nil
		}
		xs := make([][]T, len(in))
		for i, t := range in {
			xs[i] = viewAs[T](t.Data)
		}
		acc := make([]float64, len(y))
		offs := make([]int, len(in))
		idx := make([]int, len(all))
		oo := 0
		for range total {
			p := 1.0
			for i, x := range xs {
				p *= float64(x[offs[i]])
			}
			acc[oo] += p
			for d := len(all) - 1; d >= 0; d-- {
				idx[d]++
				oo += outStr[d]
				for i := range offs {
					offs[i] += strides[i][d]
				}
				if idx[d] < dims[d] {
					break
				}
				oo -= outStr[d] * dims[d]
				for i := range offs {
					offs[i] -= strides[i][d] * dims[d]
				}
				idx[d] = 0
			}
		}
		for i, v := range acc {
			y[i] = T(v)
		}
		return nil
	})
}

// gemm returns a kernel computing a two-operand contraction as batched
// products, or nil when the equation has another form.
func (sp *einsumSpec) gemm(ks *sgemm.Kernels, shapes [][]int64) kernel {
	if len(sp.ins) != 2 {
		return nil
	}
	a, b := sp.ins[0], sp.ins[1]
	for i, labels := range sp.ins {
		for d, l := range labels {
			if slices.Contains(labels[:d], l) || int(shapes[i][d]) != sp.size[l] {
				return nil // a diagonal or a broadcast dim
			}
		}
	}
	var batch, m, n, k []byte
	for _, l := range a {
		inB, inOut := slices.Contains(b, l), slices.Contains(sp.out, l)
		switch {
		case inB && inOut:
			batch = append(batch, l)
		case inOut:
			m = append(m, l)
		case inB:
			k = append(k, l)
		default:
			return nil // summed over A alone
		}
	}
	for _, l := range b {
		if !slices.Contains(a, l) {
			if !slices.Contains(sp.out, l) {
				return nil
			}
			n = append(n, l)
		}
	}
	size := func(ls []byte) int {
		p := 1
		for _, l := range ls {
			p *= sp.size[l]
		}
		return p
	}
	nb, M, N, K := size(batch), size(m), size(n), size(k)
	pa := permutation(a, concat(batch, m, k), shapes[0])
	pb := permutation(b, concat(batch, k, n), shapes[1])
	cLabels := concat(batch, m, n)
	cShape := make([]int64, len(cLabels))
	for i, l := range cLabels {
		cShape[i] = int64(sp.size[l])
	}
	pc := permutation(cLabels, sp.out, cShape)
	sc := new(sgemm.Scratch)
	return kernelFunc(func(in, out []*tensor.Tensor) error {
		bufA, bufB, bufC := sc.Get(nb*M*K), sc.Get(nb*K*N), sc.Get(nb*M*N)
		defer func() { sc.Put(bufA); sc.Put(bufB); sc.Put(bufC) }()
		A := pa.apply((*bufA)[:nb*M*K], viewAs[float32](in[0].Data))
		B := pb.apply((*bufB)[:nb*K*N], viewAs[float32](in[1].Data))
		C := (*bufC)[:nb*M*N]
		y := viewAs[float32](out[0].Data)
		if pc.identity {
			C = y
		}
		for t := range nb {
			ks.Sgemm(sc, false, false, M, N, K, 1, A[t*M*K:], K, B[t*K*N:], N, 0, C[t*M*N:], N, 0)
		}
		if !pc.identity {
			pc.apply(y, C)
		}
		return nil
	})
}

func concat(parts ...[]byte) []byte { return slices.Concat(parts...) }

// perm copies a tensor whose dims carry labels from into the label order
// to (a transpose), or passes it through when the orders agree.
type perm struct {
	identity bool
	dims     []int // in the target order
	strides  []int // source strides in the target order
}

func permutation(from, to []byte, shape []int64) *perm {
	p := &perm{identity: slices.Equal(from, to)}
	st := contiguousStrides(shape)
	for _, l := range to {
		d := slices.Index(from, l)
		p.dims = append(p.dims, int(shape[d]))
		p.strides = append(p.strides, st[d])
	}
	return p
}

// apply returns src permuted, in dst unless the permutation is the
// identity.
func (p *perm) apply(dst, src []float32) []float32 {
	if p.identity {
		return src
	}
	r := len(p.dims)
	if len(dst) == 0 {
		return dst
	}
	var idx [maxRank]int
	off := 0
	for o := range dst {
		dst[o] = src[off]
		for d := r - 1; d >= 0; d-- {
			idx[d]++
			off += p.strides[d]
			if idx[d] < p.dims[d] {
				break
			}
			off -= p.strides[d] * p.dims[d]
			idx[d] = 0
		}
	}
	return dst
}
