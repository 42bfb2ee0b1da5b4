package cache_test

import (
	"fmt"
	"time"

	"github.com/coalesce-ml/coalesce/cache"
	"github.com/coalesce-ml/coalesce/tensor"
)

// A model version's cache: the first request runs the model, the same
// input again is answered from memory, a different one runs again.
func Example() {
	c := cache.New(cache.Config{MaxBytes: 1 << 20, Dedup: true}, nil)
	model := func(in []*tensor.Tensor) func() ([]*tensor.Tensor, error) {
		return func() ([]*tensor.Tensor, error) {
			fmt.Println("  model runs")
			y := tensor.FromFloat32s("y", in[0].Shape, in[0].Float32s())
			for i := range y.Float32s() {
				y.Float32s()[i] *= 2
			}
			return []*tensor.Tensor{y}, nil
		}
	}
	k := cache.AcquireKey()
	defer cache.ReleaseKey(k)
	for _, x := range [][]float32{{1, 2}, {1, 2}, {1, 3}} {
		in := []*tensor.Tensor{tensor.FromFloat32s("x", []int64{1, 2}, x)}
		k.Set("double", "1", 1, in) // model, version, load generation, inputs
		out, st, err := c.Do(k, time.Now().Add(time.Second), model(in))
		fmt.Println(x, "->", out[0].Float32s(), st, err)
	}
	fmt.Println(c.Len(), "entries")
	// Output:
	//   model runs
	// [1 2] -> [2 4] miss <nil>
	// [1 2] -> [2 4] hit <nil>
	//   model runs
	// [1 3] -> [2 6] miss <nil>
	// 2 entries
}
