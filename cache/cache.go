package cache

import (
	"bytes"
	"errors"
	"hash/maphash"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/coalesce-ml/coalesce/tensor"
)

// Config configures a Cache. The zero value is a Cache that stores
// nothing and does not de-duplicate: Do then always calls its function.
type Config struct {
	// MaxBytes bounds the stored entries in bytes: key, output data and
	// headers, and an estimate of the bookkeeping per entry (see Size).
	// 0 stores nothing.
	MaxBytes int64
	// TTL is how long an entry may answer after it was stored; 0 means
	// until it is evicted.
	TTL time.Duration
	// Dedup makes a request identical to one in flight wait for that
	// one's answer instead of computing again.
	Dedup bool
	// Private reports whether a leader's error belongs to the leader
	// alone (its own deadline passed), so that its waiters compute
	// afresh instead of sharing the error. nil: every error is shared.
	Private func(error) bool
	// Shards is the number of independently locked LRU shards, rounded
	// down to a power of two; 0 means DefaultShards. Each shard holds
	// MaxBytes/Shards, so an entry larger than that is not stored; New
	// lowers the count so that a shard holds at least MinShardBytes.
	Shards int
	// Now is the clock TTLs are measured on; nil means time.Now.
	Now func() time.Time
	// Hash hashes key bytes to pick a shard and a slot; nil means a
	// maphash with a random seed per Cache. Tests inject a weak one to
	// force collisions.
	Hash func([]byte) uint64
}

// DefaultShards is the number of shards when Config.Shards is 0, and
// MinShardBytes the least budget New gives a shard.
const (
	DefaultShards = 16
	MinShardBytes = 1 << 20
)

// lruOverhead is what an entry costs the LRU: its list element (80
// bytes with the allocator's rounding) and its map slot (16 bytes, up to
// twice over while the map grows, with control bytes); allocRounding is
// what the allocator may add to an allocation of a few dozen bytes.
const (
	lruOverhead   = 128
	allocRounding = 16
)

// ErrExpired is returned to a request whose deadline passed while it
// waited for an identical request in flight; that request goes on.
var ErrExpired = errors.New("cache: deadline passed while waiting for an identical request")

// errLeaderPanicked is what waiters get when the function of the request
// they waited for panicked (the panic itself goes on in the leader).
var errLeaderPanicked = errors.New("cache: the identical request in flight failed")

// Status says how a request was answered.
type Status uint8

// The statuses, reported in the Coalesce-Cache response header.
const (
	Miss   Status = iota // computed for this request
	Hit                  // answered from the cache
	Shared               // answered by an identical request in flight
)

var statusNames = [...]string{Miss: "miss", Hit: "hit", Shared: "shared"}

func (s Status) String() string { return statusNames[s] }

// Cache is a byte-bounded response cache with in-flight de-duplication
// for one model version. Create it with New; it is safe for concurrent
// use and starts no goroutines.
type Cache struct {
	ttl     time.Duration
	dedup   bool
	private func(error) bool
	now     func() time.Time
	hash    func([]byte) uint64
	met     *Metrics
	shards  []shard
	mask    uint64
}

// shard is one lock's worth of the cache.
type shard struct {
	mu      sync.Mutex                    // guards the fields below
	lru     *simplelru.LRU[uint64, *item] // by key hash; nil when MaxBytes is 0
	bytes   int64                         // Σ item.size; never above max
	max     int64                         // this shard's share of MaxBytes
	flights map[uint64]*flight            // requests in flight by key hash; nil without Dedup
	closed  bool                          // Close ran: store nothing more
	_       [64]byte                      // keeps neighbouring shards' locks off one cache line
}

// item is one stored answer. It is immutable once stored.
type item struct {
	key     []byte           // the exact key bytes
	out     []*tensor.Tensor // every output, owning its data
	size    int64            // what it counts against the budget
	expires int64            // UnixNano; 0: never
}

// flight is one request being computed that others may wait for.
type flight struct {
	key     []byte        // the leader's key; read only while registered
	done    chan struct{} // closed once out and err are set
	waiters atomic.Int32  // requests that joined; see Waiters
	out     []*tensor.Tensor
	err     error
}

// New returns a Cache configured by cfg that records on met (nil: no
// metrics).
func New(cfg Config, met *Metrics) *Cache {
	c := &Cache{ttl: cfg.TTL, dedup: cfg.Dedup, private: cfg.Private, now: cfg.Now, hash: cfg.Hash, met: met}
	if c.now == nil {
		c.now = time.Now
	}
	if c.hash == nil {
		seed := maphash.MakeSeed()
		c.hash = func(b []byte) uint64 { return maphash.Bytes(seed, b) }
	}
	n := cfg.Shards
	if n <= 0 {
		n = DefaultShards
	}
	n = 1 << (bits.Len(uint(n)) - 1) // a power of two
	for n > 1 && cfg.MaxBytes/int64(n) < MinShardBytes {
		n /= 2
	}
	c.shards = make([]shard, n)
	c.mask = uint64(n - 1)
	for i := range c.shards {
		s := &c.shards[i]
		if cfg.MaxBytes > 0 {
			// The count bound is never reached: bytes bound the shard.
			s.lru, _ = simplelru.NewLRU[uint64, *item](math.MaxInt, nil)
			s.max = cfg.MaxBytes / int64(n)
		}
		if cfg.Dedup {
			s.flights = map[uint64]*flight{}
		}
	}
	return c
}

func (c *Cache) shard(h uint64) *shard { return &c.shards[h&c.mask] }

// Do answers the request whose key is k: from a stored entry (Hit), by
// waiting for an identical request in flight (Shared), or by calling fn
// (Miss), whose successful outputs it stores. The returned tensors are
// shared with other requests and must not be modified. A waiter whose
// deadline passes gets ErrExpired; the request it waited for goes on.
// Do does not retain k.
func (c *Cache) Do(k *Key, deadline time.Time, fn func() ([]*tensor.Tensor, error)) ([]*tensor.Tensor, Status, error) {
	kb := k.b
	h := c.hash(kb)
	s := c.shard(h)
	var now int64
	for {
		if c.ttl > 0 {
			now = c.now().UnixNano()
		}
		s.mu.Lock()
		if out, ok := c.getLocked(s, h, kb, now); ok {
			s.mu.Unlock()
			c.met.hit()
			return out, Hit, nil
		}
		var f *flight
		wait := false
		if s.flights != nil {
			switch g := s.flights[h]; {
			case g == nil:
				f = &flight{key: kb, done: make(chan struct{})}
				s.flights[h] = f
			case bytes.Equal(g.key, kb):
				f, wait = g, true
				f.waiters.Add(1)
			}
			// Otherwise another request with the same hash is in
			// flight: compute alone, without registering.
		}
		s.mu.Unlock()
		if !wait {
			out, err := c.lead(s, h, kb, f, fn)
			return out, Miss, err
		}
		out, err, ok := f.wait(deadline)
		switch {
		case !ok:
			return nil, Shared, ErrExpired
		case err == nil:
			c.met.share()
			return out, Shared, nil
		case c.private != nil && c.private(err) && time.Now().Before(deadline):
			// The leader failed for a reason of its own: this
			// request, whose deadline has not passed, starts over.
			continue
		}
		return nil, Shared, err
	}
}

// lead computes a request with fn, stores a successful answer and hands
// the outcome to the waiters of f (nil: none can join).
func (c *Cache) lead(s *shard, h uint64, kb []byte, f *flight, fn func() ([]*tensor.Tensor, error)) (out []*tensor.Tensor, err error) {
	finished := false
	defer func() {
		if !finished { // fn panicked: release the waiters, let the panic go on
			c.finish(s, h, nil, f, nil, errLeaderPanicked)
		}
	}()
	out, err = fn()
	var it *item
	if err == nil && s.lru != nil {
		it = c.newItem(kb, out) // copies outside the lock
	}
	finished = true
	c.finish(s, h, it, f, out, err)
	c.met.miss()
	return out, err
}

// finish stores it (if not nil), unregisters f and wakes its waiters.
func (c *Cache) finish(s *shard, h uint64, it *item, f *flight, out []*tensor.Tensor, err error) {
	s.mu.Lock()
	if it != nil {
		c.addLocked(s, h, it)
	}
	if f != nil {
		if s.flights[h] == f {
			delete(s.flights, h)
		}
		f.key = nil
	}
	s.mu.Unlock()
	if f != nil {
		f.out, f.err = out, err
		close(f.done)
	}
}

// wait waits for f's outcome until deadline; ok is false when the
// deadline came first.
func (f *flight) wait(deadline time.Time) (out []*tensor.Tensor, err error, ok bool) {
	select {
	case <-f.done:
		return f.out, f.err, true
	default:
	}
	d := time.Until(deadline)
	if d <= 0 {
		return nil, nil, false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-f.done:
		return f.out, f.err, true
	case <-t.C:
		return nil, nil, false
	}
}

// Get returns the stored outputs for k, if any, without computing or
// waiting. The tensors must not be modified.
func (c *Cache) Get(k *Key) ([]*tensor.Tensor, bool) {
	h := c.hash(k.b)
	s := c.shard(h)
	var now int64
	if c.ttl > 0 {
		now = c.now().UnixNano()
	}
	s.mu.Lock()
	out, ok := c.getLocked(s, h, k.b, now)
	s.mu.Unlock()
	if ok {
		c.met.hit()
	}
	return out, ok
}

// getLocked looks k's bytes kb up by their hash h; now is the clock in
// UnixNano when entries expire.
func (c *Cache) getLocked(s *shard, h uint64, kb []byte, now int64) ([]*tensor.Tensor, bool) {
	if s.lru == nil {
		return nil, false
	}
	it, ok := s.lru.Get(h)
	if !ok || !bytes.Equal(it.key, kb) {
		// Absent, or a different request with the same hash: a miss,
		// never another request's answer.
		return nil, false
	}
	if it.expires != 0 && now >= it.expires {
		s.lru.Remove(h)
		s.bytes -= it.size
		c.met.stored(-1, -it.size, 1)
		return nil, false
	}
	return it.out, true
}

// Put stores out as the answer to k (replacing what k's hash slot held),
// copying the outputs. Outputs larger than a shard's budget are not
// stored, nor is anything after Close.
func (c *Cache) Put(k *Key, out []*tensor.Tensor) {
	h := c.hash(k.b)
	s := c.shard(h)
	if s.lru == nil {
		return
	}
	it := c.newItem(k.b, out)
	s.mu.Lock()
	c.addLocked(s, h, it)
	s.mu.Unlock()
}

// addLocked stores it under h, evicting the least recently used entries
// until it fits: the shard's bytes never exceed its budget.
func (c *Cache) addLocked(s *shard, h uint64, it *item) {
	if s.closed || it.size > s.max {
		return
	}
	var entries, freed int64
	if old, ok := s.lru.Peek(h); ok {
		s.lru.Remove(h)
		entries, freed = entries-1, freed+old.size
		s.bytes -= old.size
	}
	evicted := 0
	for s.bytes+it.size > s.max {
		_, old, ok := s.lru.RemoveOldest()
		if !ok {
			break
		}
		s.bytes -= old.size
		entries, freed = entries-1, freed+old.size
		evicted++
	}
	s.lru.Add(h, it)
	s.bytes += it.size
	c.met.stored(entries+1, it.size-freed, evicted)
}

// newItem copies key bytes kb and the outputs into one aligned block,
// and the item with the outputs' headers into another (for answers of up
// to compactOutputs outputs). Its expiry counts from now; its size counts
// both, with the allocator's rounding, and the LRU's bookkeeping.
func (c *Cache) newItem(kb []byte, out []*tensor.Tensor) *item {
	n := align8(len(kb))
	dims := 0
	for _, t := range out {
		n += align8(len(t.Data))
		dims += len(t.Shape)
	}
	block := tensor.Alloc(n)
	var it *item
	var headers []tensor.Tensor
	var ptrs []*tensor.Tensor
	var shapes []int64
	var size int64
	if len(out) <= compactOutputs && dims <= compactDims {
		cp := new(compact)
		it, headers, ptrs, shapes = &cp.it, cp.hdr[:len(out)], cp.ptrs[:len(out):len(out)], cp.shapes[:0:dims]
		size = int64(unsafe.Sizeof(compact{}))
	} else {
		it, headers, ptrs, shapes = new(item), make([]tensor.Tensor, len(out)), make([]*tensor.Tensor, len(out)), make([]int64, 0, dims)
		size = int64(unsafe.Sizeof(item{})) + int64(len(out))*int64(unsafe.Sizeof(tensor.Tensor{})+8) + int64(8*dims) + 3*allocRounding
	}
	// Size classes waste at most 1/8 of a small allocation; large ones
	// are rounded to pages.
	size += int64(n+n/8) + lruOverhead
	it.key, it.out = block[:len(kb):len(kb)], ptrs
	copy(it.key, kb)
	off := align8(len(kb))
	for i, t := range out {
		d := block[off : off+len(t.Data) : off+len(t.Data)]
		copy(d, t.Data)
		off += align8(len(t.Data))
		shape := shapes[len(shapes) : len(shapes)+len(t.Shape) : len(shapes)+len(t.Shape)]
		shapes = append(shapes, t.Shape...)
		// Names are the model's output names, shared, not copied.
		headers[i] = tensor.Tensor{Name: t.Name, DType: t.DType, Shape: shape, Data: d}
		ptrs[i] = &headers[i]
	}
	if c.ttl > 0 {
		it.expires = c.now().Add(c.ttl).UnixNano()
	}
	it.size = size
	return it
}

// compact is an item and the headers of its outputs in one allocation,
// for answers of up to compactOutputs outputs with compactDims
// dimensions in all (most models').
type compact struct {
	it     item
	hdr    [compactOutputs]tensor.Tensor
	ptrs   [compactOutputs]*tensor.Tensor
	shapes [compactDims]int64
}

const (
	compactOutputs = 4
	compactDims    = 8
)

func align8(n int) int { return (n + 7) &^ 7 }

// SetMaxBytes changes the byte budget, evicting least recently used
// entries until the cache fits. A Cache created with MaxBytes 0 stays
// without storage.
func (c *Cache) SetMaxBytes(n int64) {
	per := n / int64(len(c.shards))
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		if s.lru != nil {
			s.max = per
			var entries, freed int64
			evicted := 0
			for s.bytes > s.max {
				_, old, ok := s.lru.RemoveOldest()
				if !ok {
					break
				}
				s.bytes -= old.size
				entries, freed = entries-1, freed+old.size
				evicted++
			}
			c.met.stored(entries, -freed, evicted)
		}
		s.mu.Unlock()
	}
}

// Close drops every entry and stores nothing more: the answers of a
// retired version become unreachable and their memory free. Requests in
// flight still finish, and de-duplication goes on for them.
func (c *Cache) Close() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.closed = true
		if s.lru != nil {
			c.met.stored(-int64(s.lru.Len()), -s.bytes, 0)
			s.lru.Purge()
			s.bytes = 0
		}
		s.mu.Unlock()
	}
}

// Waiters returns the number of requests that joined an identical one
// still in flight, including those that since gave up at their deadline
// (for tests and debugging; it takes every shard's lock).
func (c *Cache) Waiters() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for _, f := range s.flights {
			n += int(f.waiters.Load())
		}
		s.mu.Unlock()
	}
	return n
}

// Len returns the number of stored entries.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		if s.lru != nil {
			n += s.lru.Len()
		}
		s.mu.Unlock()
	}
	return n
}

// Bytes returns the bytes the stored entries count against the budget.
func (c *Cache) Bytes() int64 {
	var n int64
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += s.bytes
		s.mu.Unlock()
	}
	return n
}

// MaxBytes returns the byte budget (the sum of the shards' shares).
func (c *Cache) MaxBytes() int64 {
	var n int64
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += s.max
		s.mu.Unlock()
	}
	return n
}
