package cpu

import (
	"strings"
	"testing"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx/onnxtest"
	"github.com/coalesce-ml/coalesce/tensor"
)

// refEinsum evaluates an explicit equation without ellipsis by brute
// force over every assignment of the labels.
func refEinsum(eq string, xs ...ref) ref {
	lhs, rhs, _ := strings.Cut(eq, "->")
	terms := strings.Split(lhs, ",")
	size := map[byte]int64{}
	var labels []byte
	for i, t := range terms {
		for d := range len(t) {
			if _, ok := size[t[d]]; !ok {
				labels = append(labels, t[d])
			}
			size[t[d]] = xs[i].shape[d]
		}
	}
	var outShape []int64
	for d := range len(rhs) {
		outShape = append(outShape, size[rhs[d]])
	}
	out := newRef(outShape...)
	var walk func(k int, val map[byte]int)
	walk = func(k int, val map[byte]int) {
		if k == len(labels) {
			p := 1.0
			for i, t := range terms {
				flat := 0
				for d := range len(t) {
					flat = flat*int(xs[i].shape[d]) + val[t[d]]
				}
				p *= xs[i].data[flat]
			}
			flat := 0
			for d := range len(rhs) {
				flat = flat*int(outShape[d]) + val[rhs[d]]
			}
			out.data[flat] += p
			return
		}
		for v := range int(size[labels[k]]) {
			val[labels[k]] = v
			walk(k+1, val)
		}
	}
	walk(0, map[byte]int{})
	return out
}

func TestEinsum(t *testing.T) {
	tests := []struct {
		eq     string
		shapes [][]int64
		refEq  string // the equation refEinsum evaluates (explicit, no ellipsis)
	}{
		{"bij,bjk->bik", [][]int64{sh(2, 3, 4), sh(2, 4, 5)}, ""},
		{"bhqd,bhkd->bhqk", [][]int64{sh(2, 2, 3, 4), sh(2, 2, 5, 4)}, ""},
		{"bhqk,bhkd->bqhd", [][]int64{sh(1, 2, 3, 5), sh(1, 2, 5, 4)}, ""},
		{"ij,kj->ik", [][]int64{sh(3, 4), sh(6, 4)}, ""},
		{"i,j->ij", [][]int64{sh(3), sh(4)}, ""},
		{"i,i->", [][]int64{sh(5), sh(5)}, ""},
		{"ij->ji", [][]int64{sh(3, 4)}, ""},
		{"ii->i", [][]int64{sh(4, 4)}, ""},
		{"bii->bi", [][]int64{sh(2, 3, 3)}, ""},
		{"ij->", [][]int64{sh(3, 4)}, ""},
		{"ij,jk", [][]int64{sh(3, 4), sh(4, 2)}, "ij,jk->ik"},
		{"...ij,...jk->...ik", [][]int64{sh(2, 3, 4), sh(2, 4, 5)}, "aij,ajk->aik"},
		{"bn,anm,bm->ba", [][]int64{sh(2, 3), sh(4, 3, 5), sh(2, 5)}, ""},
		{"ij,jk->ik", [][]int64{sh(3, 4), sh(4, 2)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.eq, func(t *testing.T) {
			r := newRand()
			var args []arg
			var refs []ref
			for i, s := range tt.shapes {
				x := randTensor(r, tensor.FP32, s...)
				args = append(args, in(string(rune('a'+i)), x))
				refs = append(refs, toRef(x))
			}
			eq := tt.refEq
			if eq == "" {
				eq = tt.eq
			}
			outs := runModel(t, oneNode(13, "Einsum", args, 1, onnxtest.AttrString("equation", tt.eq)), graphInputs(args)...)
			expectCloseTol(t, outs[0], refEinsum(eq, refs...), 1e-5)
		})
	}
}
