package cache

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coalesce-ml/coalesce/tensor"
)

// BenchmarkDoHit measures a hit (key bytes of one 64-float input built,
// hashed, looked up and compared) from 64 goroutines at once over 1024
// stored keys, with one lock and with 16 shards: the exclusive lock a
// golang-lru Get takes is what sharding spreads.
func BenchmarkDoHit(b *testing.B) {
	for _, shards := range []int{1, 16} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			c := New(Config{MaxBytes: 64 << 20, Shards: shards}, nil)
			const n = 1024
			inputs := make([][]*tensor.Tensor, n)
			out := []*tensor.Tensor{tensor.New("y", tensor.FP32, []int64{1, 10})}
			for i := range inputs {
				in := tensor.New("x", tensor.FP32, []int64{1, 64})
				in.Float32s()[0] = float32(i)
				inputs[i] = []*tensor.Tensor{in}
				k := AcquireKey()
				k.Set("digits-mlp", "1", 1, inputs[i])
				c.Put(k, out)
				ReleaseKey(k)
			}
			var seq atomic.Int64
			deadline := time.Now().Add(time.Hour)
			fail := func() ([]*tensor.Tensor, error) { panic("BUG: a miss") }
			b.SetParallelism(32) // 64 goroutines on 2 cores
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				k := AcquireKey()
				defer ReleaseKey(k)
				i := int(seq.Add(1)) * 7919
				for pb.Next() {
					i++
					k.Set("digits-mlp", "1", 1, inputs[i%n])
					if _, st, _ := c.Do(k, deadline, fail); st != Hit {
						b.Errorf("status %v", st)
					}
				}
			})
		})
	}
}

// BenchmarkPut measures storing a new answer (copying it, evicting the
// oldest entry to make room) from 64 goroutines.
func BenchmarkPut(b *testing.B) {
	for _, shards := range []int{1, 16} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			c := New(Config{MaxBytes: 16 << 20, Shards: shards}, nil)
			out := []*tensor.Tensor{tensor.New("y", tensor.FP32, []int64{1, 10})}
			var seq atomic.Int64
			b.SetParallelism(32)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				k := AcquireKey()
				defer ReleaseKey(k)
				in := []*tensor.Tensor{tensor.New("x", tensor.FP32, []int64{1, 64})}
				for pb.Next() {
					in[0].Float32s()[0] = float32(seq.Add(1))
					k.Set("digits-mlp", "1", 1, in)
					c.Put(k, out)
				}
			})
		})
	}
}
