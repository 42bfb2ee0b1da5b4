package cpu

import (
	"math"
	"testing"

	"github.com/coalesce-ml/coalesce/tensor"
)

func TestGlobalPools(t *testing.T) {
	r := newRand()
	x := randTensor(r, tensor.FP32, 2, 3, 4, 5)
	xr := toRef(x)
	for _, op := range []string{"GlobalAveragePool", "GlobalMaxPool"} {
		t.Run(op, func(t *testing.T) {
			want := newRef(2, 3, 1, 1)
			for p := range 6 {
				acc := math.Inf(-1)
				if op == "GlobalAveragePool" {
					acc = 0
				}
				for _, v := range xr.data[p*20 : (p+1)*20] {
					if op == "GlobalAveragePool" {
						acc += v / 20
					} else {
						acc = max(acc, v)
					}
				}
				want.data[p] = acc
			}
			outs := runModel(t, oneNode(13, op, []arg{in("x", x)}, 1), x)
			expectClose(t, outs[0], want)
		})
	}
}

func TestNot(t *testing.T) {
	x := &tensor.Tensor{DType: tensor.Bool, Shape: sh(2, 2), Data: []byte{0, 1, 1, 0}}
	outs := runModel(t, oneNode(13, "Not", []arg{in("x", x)}, 1), x)
	if got := outs[0].Data; got[0] != 1 || got[1] != 0 || got[2] != 0 || got[3] != 1 {
		t.Fatalf("Not([0 1 1 0]) = %v; want [1 0 0 1]", got)
	}
}
