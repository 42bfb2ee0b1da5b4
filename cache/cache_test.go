package cache

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/VictoriaMetrics/metrics"

	"github.com/coalesce-ml/coalesce/tensor"
)

// req is one request's identity for the tests.
type req struct {
	model, version string
	gen            uint64
	inputs         []*tensor.Tensor
}

func baseReq() req {
	return req{model: "m", version: "1", gen: 7, inputs: []*tensor.Tensor{
		tensor.FromFloat32s("x", []int64{1, 4}, []float32{1, 2, 3, 4}),
		tensor.FromInt64s("y", []int64{1, 2}, []int64{5, 6}),
	}}
}

func (r req) key() *Key {
	k := AcquireKey()
	k.Set(r.model, r.version, r.gen, r.inputs)
	return k
}

// answer is a model's answer to r: its first input's bytes, doubled, in
// a tensor named after the request, so that a wrong answer shows.
func answer(r req) []*tensor.Tensor {
	d := append(slices.Clone(r.inputs[0].Data), r.inputs[0].Data...)
	return []*tensor.Tensor{{Name: "out", DType: tensor.Uint8, Shape: []int64{int64(len(d))}, Data: d},
		tensor.FromInt64s("gen", []int64{1}, []int64{int64(r.gen)})}
}

// do runs r through c with a backend that answers answer(r) and counts
// its calls.
func do(t *testing.T, c *Cache, r req, calls *atomic.Int64) ([]*tensor.Tensor, Status) {
	t.Helper()
	k := r.key()
	defer ReleaseKey(k)
	out, st, err := c.Do(k, time.Now().Add(time.Second), func() ([]*tensor.Tensor, error) {
		calls.Add(1)
		return answer(r), nil
	})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	return out, st
}

func equalOut(a, b []*tensor.Tensor) bool {
	return slices.EqualFunc(a, b, func(x, y *tensor.Tensor) bool {
		return x.Name == y.Name && x.DType == y.DType && slices.Equal(x.Shape, y.Shape) && slices.Equal(x.Data, y.Data)
	})
}

// TestKeyDifferencesMiss: a request that differs from a stored one in
// anything that identifies it is a miss, and gets its own answer.
func TestKeyDifferencesMiss(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *req)
	}{
		{"one byte of data", func(r *req) { r.inputs[0].Data[5] ^= 1 }},
		{"last byte of the last input", func(r *req) { r.inputs[1].Data[15] ^= 0x80 }},
		{"shape", func(r *req) { r.inputs[0].Shape = []int64{2, 2} }},
		{"rank", func(r *req) { r.inputs[0].Shape = []int64{1, 1, 4} }},
		{"datatype", func(r *req) { r.inputs[0].DType = tensor.Int32 }},
		{"input name", func(r *req) { r.inputs[0].Name = "z" }},
		{"version", func(r *req) { r.version = "2" }},
		{"generation", func(r *req) { r.gen = 8 }},
		{"model", func(r *req) { r.model = "n" }},
		{"bytes moved between name and data", func(r *req) {
			// "x" + data vs "x\x00..." : lengths are part of the key.
			r.inputs[0].Name = "x\x00\x00\x00"
			r.inputs[0].Data = r.inputs[0].Data[:12]
			r.inputs[0].Shape = []int64{1, 3}
		}},
		{"one input fewer", func(r *req) { r.inputs = r.inputs[:1] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(Config{MaxBytes: 1 << 20}, nil)
			var calls atomic.Int64
			base := baseReq()
			if _, st := do(t, c, base, &calls); st != Miss {
				t.Fatalf("first request: %v; want miss", st)
			}
			if out, st := do(t, c, base, &calls); st != Hit || !equalOut(out, answer(base)) {
				t.Fatalf("same request again: %v %v; want a hit with its answer", st, out)
			}
			other := baseReq()
			for i, in := range other.inputs {
				cp := *in
				cp.Data = slices.Clone(in.Data)
				other.inputs[i] = &cp
			}
			tt.change(&other)
			out, st := do(t, c, other, &calls)
			if st != Miss || calls.Load() != 2 {
				t.Errorf("changed request: %v after %d calls; want a miss and a second call", st, calls.Load())
			}
			if !equalOut(out, answer(other)) {
				t.Errorf("changed request got %v; want its own answer", out)
			}
		})
	}
}

// TestHashCollision forces every key onto one hash: each request must
// still get its own answer, whatever was stored under that hash.
func TestHashCollision(t *testing.T) {
	for _, dedup := range []bool{false, true} {
		t.Run(fmt.Sprintf("dedup=%v", dedup), func(t *testing.T) {
			c := New(Config{MaxBytes: 1 << 20, Dedup: dedup, Hash: func([]byte) uint64 { return 42 }}, nil)
			var calls atomic.Int64
			a, b := baseReq(), baseReq()
			b.inputs = []*tensor.Tensor{tensor.FromFloat32s("x", []int64{1, 4}, []float32{9, 9, 9, 9}), b.inputs[1]}
			for i, tt := range []struct {
				r    req
				want Status
			}{{a, Miss}, {a, Hit}, {b, Miss}, {b, Hit}, {a, Miss}, {a, Hit}} {
				out, st := do(t, c, tt.r, &calls)
				if st != tt.want || !equalOut(out, answer(tt.r)) {
					t.Errorf("request %d: %v %v; want %v with its own answer %v", i, st, out, tt.want, answer(tt.r))
				}
			}
		})
	}
}

// TestCollisionInFlight: a request whose hash equals that of a different
// request in flight computes alone instead of waiting for it.
func TestCollisionInFlight(t *testing.T) {
	c := New(Config{Dedup: true, Hash: func([]byte) uint64 { return 1 }}, nil)
	a, b := baseReq(), baseReq()
	b.gen++
	release := make(chan struct{})
	started := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		k := a.key()
		defer ReleaseKey(k)
		c.Do(k, time.Now().Add(5*time.Second), func() ([]*tensor.Tensor, error) {
			close(started)
			<-release
			return answer(a), nil
		})
	})
	<-started
	var calls atomic.Int64
	out, st := do(t, c, b, &calls)
	close(release)
	wg.Wait()
	if st != Miss || calls.Load() != 1 || !equalOut(out, answer(b)) {
		t.Errorf("b while a in flight under the same hash: %v, %d calls, %v; want its own miss", st, calls.Load(), out)
	}
}

// TestTTL expires entries on an injected clock.
func TestTTL(t *testing.T) {
	now := time.Unix(1000, 0)
	set := metrics.NewSet()
	met := NewMetrics(set, "m", "1")
	c := New(Config{MaxBytes: 1 << 20, TTL: time.Minute, Now: func() time.Time { return now }}, met)
	var calls atomic.Int64
	r := baseReq()
	step := func(advance time.Duration, want Status) {
		t.Helper()
		now = now.Add(advance)
		if _, st := do(t, c, r, &calls); st != want {
			t.Errorf("at +%v: %v; want %v", now.Sub(time.Unix(1000, 0)), st, want)
		}
	}
	step(0, Miss)
	step(59*time.Second, Hit)
	step(time.Second-1, Hit)
	step(1, Miss) // stored at 0, expired at 60s: computed again at 60s
	step(59*time.Second, Hit)
	step(2*time.Second, Miss)
	if got := met.evictions.Get(); got != 2 {
		t.Errorf("evictions = %d; want 2 (the two expiries)", got)
	}
	if c.Len() != 1 || met.entries.Load() != 1 {
		t.Errorf("Len() = %d, entries gauge %d; want 1", c.Len(), met.entries.Load())
	}
}

// TestByteBound inserts entries of random sizes from many goroutines and
// checks, all along, that the bytes in use never exceed the budget and
// that the accounting matches what is stored.
func TestByteBound(t *testing.T) {
	const max = 4 << 20
	set := metrics.NewSet()
	met := NewMetrics(set, "m", "1")
	c := New(Config{MaxBytes: max, Shards: 4}, met)
	var stop atomic.Bool
	var over atomic.Int64
	var watch sync.WaitGroup
	watch.Go(func() {
		for !stop.Load() {
			if b := c.Bytes(); b > max {
				over.Store(b)
			}
			if b := met.bytes.Load(); b > max {
				over.Store(b)
			}
			runtime.Gosched()
		}
	})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			k := AcquireKey()
			defer ReleaseKey(k)
			for i := range 400 {
				in := tensor.New("x", tensor.Uint8, []int64{int64(3 + rng.IntN(16<<10))})
				in.Data[0], in.Data[1], in.Data[2] = byte(g), byte(i), byte(i>>8)
				k.Set("m", "1", 1, []*tensor.Tensor{in})
				out := tensor.New("y", tensor.Uint8, []int64{int64(rng.IntN(96 << 10))})
				c.Put(k, []*tensor.Tensor{out})
				if b := c.Bytes(); b > max {
					over.Store(b)
				}
			}
		})
	}
	wg.Wait()
	stop.Store(true)
	watch.Wait()
	if b := over.Load(); b != 0 {
		t.Errorf("bytes in use reached %d; want at most %d", b, max)
	}
	var sum int64
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		var shardSum int64
		for _, it := range s.lru.Values() {
			shardSum += it.size
			n++
		}
		if shardSum != s.bytes || s.bytes > s.max {
			t.Errorf("shard %d: items sum to %d bytes, accounted %d, budget %d", i, shardSum, s.bytes, s.max)
		}
		sum += shardSum
	}
	if sum != met.bytes.Load() || int64(n) != met.entries.Load() {
		t.Errorf("gauges: %d bytes, %d entries; stored %d bytes, %d entries", met.bytes.Load(), met.entries.Load(), sum, n)
	}
	if sum < max/2 {
		t.Errorf("only %d of %d bytes in use after 3200 inserts; eviction frees too much", sum, max)
	}
	if met.evictions.Get() == 0 {
		t.Error("no evictions counted")
	}
}

// TestSizeCountsKeyAndOutputs: an entry's size covers its key, its
// outputs' data and the memory of its headers and bookkeeping.
func TestSizeCountsKeyAndOutputs(t *testing.T) {
	f := func(out []*tensor.Tensor, headers int64) {
		t.Helper()
		c := New(Config{MaxBytes: 1 << 20}, nil)
		k := baseReq().key()
		defer ReleaseKey(k)
		c.Put(k, out)
		data := int64(align8(len(k.Bytes())))
		for _, o := range out {
			data += int64(align8(len(o.Data)))
		}
		least := data + headers + lruOverhead
		if got := c.Bytes(); got < least || got > least+data/8 {
			t.Errorf("%d outputs: Bytes() = %d; want %d to %d", len(out), got, least, least+data/8)
		}
	}
	f([]*tensor.Tensor{tensor.New("abc", tensor.FP32, []int64{3, 5}), tensor.New("d", tensor.Int8, []int64{3})}, int64(unsafe.Sizeof(compact{})))
	many := make([]*tensor.Tensor, compactOutputs+1)
	for i := range many {
		many[i] = tensor.New("o", tensor.FP64, []int64{1, 2})
	}
	n := int64(len(many))
	f(many, int64(unsafe.Sizeof(item{}))+n*(int64(unsafe.Sizeof(tensor.Tensor{}))+8)+8*2*n+3*allocRounding)
	// A too-large entry is not stored at all.
	k := baseReq().key()
	defer ReleaseKey(k)
	small := New(Config{MaxBytes: 1000}, nil)
	small.Put(k, []*tensor.Tensor{tensor.New("big", tensor.Uint8, []int64{1000})})
	if small.Len() != 0 || small.Bytes() != 0 {
		t.Errorf("entry over budget stored: %d entries, %d bytes", small.Len(), small.Bytes())
	}
}

// TestStoredOutputsAreCopies: the cache owns what it stores; changing or
// reusing the model's buffers afterwards does not change a hit.
func TestStoredOutputsAreCopies(t *testing.T) {
	c := New(Config{MaxBytes: 1 << 20}, nil)
	r := baseReq()
	k := r.key()
	defer ReleaseKey(k)
	batch := tensor.FromFloat32s("y", []int64{2, 2}, []float32{1, 2, 3, 4})
	view := &tensor.Tensor{Name: "y", DType: tensor.FP32, Shape: []int64{1, 2}, Data: batch.Data[:8]}
	c.Put(k, []*tensor.Tensor{view})
	batch.Float32s()[0] = 99
	view.Shape[1] = 7
	out, ok := c.Get(k)
	if !ok || out[0].Float32s()[0] != 1 || out[0].Shape[1] != 2 || cap(out[0].Data) != 8 {
		t.Errorf("Get = %v %v; want the stored copy [1 2] of shape [1 2]", out, ok)
	}
}

// TestDedup: 64 identical concurrent requests make one call and get 64
// correct answers, with the cache on and off.
func TestDedup(t *testing.T) {
	for _, maxBytes := range []int64{0, 1 << 20} {
		t.Run(fmt.Sprintf("max_bytes=%d", maxBytes), func(t *testing.T) {
			set := metrics.NewSet()
			met := NewMetrics(set, "m", "1")
			c := New(Config{MaxBytes: maxBytes, Dedup: true}, met)
			r := baseReq()
			release := make(chan struct{})
			var calls atomic.Int64
			var wg sync.WaitGroup
			statuses := make([]Status, 64)
			outs := make([][]*tensor.Tensor, 64)
			for i := range 64 {
				wg.Go(func() {
					k := r.key()
					defer ReleaseKey(k)
					out, st, err := c.Do(k, time.Now().Add(10*time.Second), func() ([]*tensor.Tensor, error) {
						calls.Add(1)
						<-release
						return answer(r), nil
					})
					if err != nil {
						t.Errorf("request %d: %v", i, err)
					}
					statuses[i], outs[i] = st, out
				})
			}
			waitWaiters(t, c, r, 63)
			close(release)
			wg.Wait()
			if calls.Load() != 1 {
				t.Errorf("%d calls; want 1", calls.Load())
			}
			count := map[Status]int{}
			for i, out := range outs {
				count[statuses[i]]++
				if !equalOut(out, answer(r)) {
					t.Errorf("request %d got %v; want %v", i, out, answer(r))
				}
			}
			if count[Miss] != 1 || count[Shared] != 63 {
				t.Errorf("statuses %v; want 1 miss and 63 shared", count)
			}
			if met.shared.Get() != 63 || met.misses.Get() != 1 {
				t.Errorf("metrics: %d shared, %d misses; want 63 and 1", met.shared.Get(), met.misses.Get())
			}
		})
	}
}

// waitWaiters waits until n requests wait for r's flight.
func waitWaiters(t *testing.T, c *Cache, r req, n int32) {
	t.Helper()
	k := r.key()
	defer ReleaseKey(k)
	h := c.hash(k.Bytes())
	s := c.shard(h)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); runtime.Gosched() {
		s.mu.Lock()
		f := s.flights[h]
		s.mu.Unlock()
		if f != nil && f.waiters.Load() >= n {
			return
		}
	}
	t.Fatalf("%d requests never waited for the one in flight", n)
}

// TestWaiterDeadline: a waiter whose deadline passes gets ErrExpired at
// once; the leader and the other waiters go on and get the answer.
func TestWaiterDeadline(t *testing.T) {
	c := New(Config{Dedup: true}, nil)
	r := baseReq()
	release := make(chan struct{})
	var calls atomic.Int64
	fn := func() ([]*tensor.Tensor, error) {
		calls.Add(1)
		<-release
		return answer(r), nil
	}
	var wg sync.WaitGroup
	results := make(chan error, 2)
	for range 2 { // the leader and a patient waiter
		wg.Go(func() {
			k := r.key()
			defer ReleaseKey(k)
			out, _, err := c.Do(k, time.Now().Add(10*time.Second), fn)
			if err == nil && !equalOut(out, answer(r)) {
				err = fmt.Errorf("answer %v", out)
			}
			results <- err
		})
	}
	waitWaiters(t, c, r, 1)
	k := r.key()
	defer ReleaseKey(k)
	start := time.Now()
	_, st, err := c.Do(k, start.Add(20*time.Millisecond), fn)
	if !errors.Is(err, ErrExpired) || st != Shared {
		t.Errorf("impatient waiter: %v %v; want shared, ErrExpired", st, err)
	}
	if e := time.Since(start); e > 5*time.Second {
		t.Errorf("impatient waiter answered after %v", e)
	}
	close(release)
	wg.Wait()
	close(results)
	for err := range results {
		if err != nil {
			t.Errorf("leader or patient waiter: %v", err)
		}
	}
	if calls.Load() != 1 {
		t.Errorf("%d calls; want 1", calls.Load())
	}
}

// TestLeaderFailure: a leader's failure is shared with its waiters and
// never stored; a failure of the leader's own (Private) makes a waiter
// compute afresh.
func TestLeaderFailure(t *testing.T) {
	errBackend := errors.New("backend broke")
	errOwnDeadline := errors.New("leader's deadline")
	tests := []struct {
		name      string
		leaderErr error
		waiterErr error // what the waiter gets
		calls     int64 // backend calls in total
	}{
		{"backend failure is shared", errBackend, errBackend, 1},
		{"leader's own deadline: waiter computes afresh", errOwnDeadline, nil, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(Config{MaxBytes: 1 << 20, Dedup: true, Private: func(err error) bool { return errors.Is(err, errOwnDeadline) }}, nil)
			r := baseReq()
			release := make(chan struct{})
			var calls atomic.Int64
			var leaderErr error
			var wg sync.WaitGroup
			started := make(chan struct{})
			wg.Go(func() {
				k := r.key()
				defer ReleaseKey(k)
				_, _, leaderErr = c.Do(k, time.Now().Add(10*time.Second), func() ([]*tensor.Tensor, error) {
					calls.Add(1)
					close(started)
					<-release
					return nil, tt.leaderErr
				})
			})
			waitersDone := make(chan error)
			<-started
			go func() {
				k := r.key()
				defer ReleaseKey(k)
				out, _, err := c.Do(k, time.Now().Add(10*time.Second), func() ([]*tensor.Tensor, error) {
					calls.Add(1)
					return answer(r), nil
				})
				if err == nil && !equalOut(out, answer(r)) {
					err = fmt.Errorf("answer %v", out)
				}
				waitersDone <- err
			}()
			waitWaiters(t, c, r, 1)
			close(release)
			wg.Wait()
			if err := <-waitersDone; !errors.Is(err, tt.waiterErr) && err != tt.waiterErr {
				t.Errorf("waiter: %v; want %v", err, tt.waiterErr)
			}
			if !errors.Is(leaderErr, tt.leaderErr) {
				t.Errorf("leader: %v; want %v", leaderErr, tt.leaderErr)
			}
			if calls.Load() != tt.calls {
				t.Errorf("%d calls; want %d", calls.Load(), tt.calls)
			}
			wantLen := 0
			if tt.waiterErr == nil {
				wantLen = 1 // the waiter's own success
			}
			if c.Len() != wantLen {
				t.Errorf("%d entries stored; want %d (failures are never stored)", c.Len(), wantLen)
			}
		})
	}
}

// TestFailureNotCached: a failing call is not stored, so the next
// identical request calls again.
func TestFailureNotCached(t *testing.T) {
	c := New(Config{MaxBytes: 1 << 20, Dedup: true}, nil)
	k := baseReq().key()
	defer ReleaseKey(k)
	calls := 0
	for range 3 {
		_, st, err := c.Do(k, time.Now().Add(time.Second), func() ([]*tensor.Tensor, error) {
			calls++
			return nil, errors.New("broken")
		})
		if err == nil || st != Miss {
			t.Errorf("Do = %v, %v; want a miss with the error", st, err)
		}
	}
	if calls != 3 || c.Len() != 0 {
		t.Errorf("%d calls, %d entries; want 3 and 0", calls, c.Len())
	}
}

// TestLeaderPanic: waiters of a leader that panics get an error instead
// of waiting for their deadline.
func TestLeaderPanic(t *testing.T) {
	c := New(Config{Dedup: true}, nil)
	r := baseReq()
	release, started := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer func() { _ = recover() }()
		k := r.key()
		c.Do(k, time.Now().Add(10*time.Second), func() ([]*tensor.Tensor, error) { close(started); <-release; panic("boom") })
	})
	<-started
	done := make(chan error)
	go func() {
		k := r.key()
		defer ReleaseKey(k)
		_, _, err := c.Do(k, time.Now().Add(10*time.Second), func() ([]*tensor.Tensor, error) { return answer(r), nil })
		done <- err
	}()
	waitWaiters(t, c, r, 1)
	close(release)
	wg.Wait()
	if err := <-done; !errors.Is(err, errLeaderPanicked) {
		t.Errorf("waiter of a panicking leader: %v; want errLeaderPanicked", err)
	}
}

// TestClose drops every entry, stores nothing more and zeroes the gauges.
func TestClose(t *testing.T) {
	set := metrics.NewSet()
	met := NewMetrics(set, "m", "1")
	c := New(Config{MaxBytes: 1 << 20, Dedup: true}, met)
	var calls atomic.Int64
	r := baseReq()
	do(t, c, r, &calls)
	if c.Len() != 1 || met.bytes.Load() == 0 {
		t.Fatalf("before Close: %d entries, %d bytes", c.Len(), met.bytes.Load())
	}
	c.Close()
	if c.Len() != 0 || c.Bytes() != 0 || met.bytes.Load() != 0 || met.entries.Load() != 0 {
		t.Errorf("after Close: %d entries, %d bytes, gauges %d/%d; want 0", c.Len(), c.Bytes(), met.entries.Load(), met.bytes.Load())
	}
	if _, st := do(t, c, r, &calls); st != Miss {
		t.Errorf("after Close: %v; want miss", st)
	}
	if c.Len() != 0 {
		t.Errorf("a closed cache stored an entry")
	}
	met.Unregister()
	if names := set.ListMetricNames(); len(names) != 0 {
		t.Errorf("after Unregister: %v", names)
	}
}

// TestSetMaxBytes shrinks the budget: entries are evicted to fit.
func TestSetMaxBytes(t *testing.T) {
	c := New(Config{MaxBytes: 1 << 20, Shards: 1}, nil)
	k := AcquireKey()
	defer ReleaseKey(k)
	for i := range 100 {
		k.Set("m", "1", uint64(i), nil)
		c.Put(k, []*tensor.Tensor{tensor.New("y", tensor.Uint8, []int64{1000})})
	}
	if c.Len() != 100 {
		t.Fatalf("Len() = %d; want 100", c.Len())
	}
	c.SetMaxBytes(20000)
	if c.Bytes() > 20000 || c.Len() == 0 || c.MaxBytes() != 20000 {
		t.Errorf("after SetMaxBytes(20000): %d bytes, %d entries, max %d", c.Bytes(), c.Len(), c.MaxBytes())
	}
	// The most recent entries survive.
	k.Set("m", "1", 99, nil)
	if _, ok := c.Get(k); !ok {
		t.Error("the newest entry was evicted")
	}
}

func TestShardCount(t *testing.T) {
	f := func(shards int, maxBytes int64, want int) {
		t.Helper()
		if got := len(New(Config{MaxBytes: maxBytes, Shards: shards}, nil).shards); got != want {
			t.Errorf("Shards %d, MaxBytes %d: %d shards; want %d", shards, maxBytes, got, want)
		}
	}
	f(0, 64<<20, DefaultShards)
	f(0, 4<<20, 4)
	f(0, 1<<10, 1)
	f(5, 64<<20, 4)
	f(1, 64<<20, 1)
}

// TestAccountingMatchesHeap fills a cache with answers shaped like
// digits-mlp's (a 64-float input, three small outputs) and checks that
// the bytes it counts are what the heap holds for them, within 20 %, so
// that the budget bounds the memory.
func TestAccountingMatchesHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 32 MiB")
	}
	const budget = 32 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := New(Config{MaxBytes: budget}, nil)
	k := AcquireKey()
	in := []*tensor.Tensor{tensor.New("input", tensor.FP32, []int64{1, 64})}
	for i := 0; c.Len() < 1 || c.Bytes() < budget-(budget>>6); i++ {
		in[0].Float32s()[0] = float32(i)
		k.Set("digits-mlp", "1", 1, in)
		c.Put(k, []*tensor.Tensor{tensor.New("logits", tensor.FP32, []int64{1, 10}),
			tensor.New("probabilities", tensor.FP32, []int64{1, 10}), tensor.New("label", tensor.Int64, []int64{1})})
	}
	ReleaseKey(k)
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	counted := c.Bytes()
	t.Logf("%d entries: counted %d bytes, the heap holds %d more (%.2f×)", c.Len(), counted, held, float64(held)/float64(counted))
	if held > counted*12/10 || held < counted*7/10 {
		t.Errorf("the cache counts %d bytes for %d entries; the heap holds %d for them; want 70 %% to 120 %% of the count", counted, c.Len(), held)
	}
	runtime.KeepAlive(c)
}
