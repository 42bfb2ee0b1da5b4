package ratelimit

import (
	"hash/maphash"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// shards of a table: callers rarely contend on one mutex.
const shards = 16

// table maps callers to their buckets, bounded: each shard holds at most
// max entries in least-recently-seen order; inserting into a full shard
// forgets its least recently seen caller, and entries idle longer than
// idle are forgotten first. A forgotten caller starts again with a full
// bucket, so the bound is a trade: memory that a flood of distinct callers
// cannot grow, against a bucket reset for callers quiet long enough to be
// the least recent among max others.
type table[K comparable] struct {
	seed   maphash.Seed
	max    int           // entries per shard, >= 1
	idle   time.Duration // 0: only the bound evicts
	shards [shards]shard[K]
}

type shard[K comparable] struct {
	mu         sync.Mutex // guards m, head, tail
	m          map[K]*node[K]
	head, tail *node[K] // most and least recently seen
}

type node[K comparable] struct {
	key        K
	lim        *rate.Limiter
	rule       Rule
	seen       time.Time
	prev, next *node[K]
}

func newTable[K comparable](max int, idle time.Duration) *table[K] {
	per := (max + shards - 1) / shards
	if per < 1 {
		per = 1
	}
	t := &table[K]{seed: maphash.MakeSeed(), max: per, idle: idle}
	for i := range t.shards {
		t.shards[i].m = map[K]*node[K]{}
	}
	return t
}

// get returns k's bucket at time now, creating it with rule r or updating
// its rule when r changed (a key file reload may change a tier).
func (t *table[K]) get(k K, r Rule, now time.Time) *rate.Limiter {
	sh := &t.shards[maphash.Comparable(t.seed, k)%shards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if n, ok := sh.m[k]; ok {
		n.seen = now
		sh.unlink(n)
		sh.pushFront(n)
		if n.rule != r {
			n.rule = r
			n.lim.SetLimitAt(now, rate.Limit(r.Rate))
			n.lim.SetBurstAt(now, r.Burst)
		}
		return n.lim
	}
	for sh.tail != nil && (len(sh.m) >= t.max || (t.idle > 0 && now.Sub(sh.tail.seen) > t.idle)) {
		old := sh.tail
		sh.unlink(old)
		delete(sh.m, old.key)
	}
	n := &node[K]{key: k, lim: rate.NewLimiter(rate.Limit(r.Rate), r.Burst), rule: r, seen: now}
	// A new bucket starts full at now, not at the zero time.
	n.lim.SetBurstAt(now, r.Burst)
	sh.m[k] = n
	sh.pushFront(n)
	return n.lim
}

// len returns the number of callers tracked.
func (t *table[K]) len() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

func (sh *shard[K]) unlink(n *node[K]) {
	if n.prev != nil {
		n.prev.next = n.next
	} else {
		sh.head = n.next
	}
	if n.next != nil {
		n.next.prev = n.prev
	} else {
		sh.tail = n.prev
	}
	n.prev, n.next = nil, nil
}

func (sh *shard[K]) pushFront(n *node[K]) {
	n.next = sh.head
	if sh.head != nil {
		sh.head.prev = n
	}
	sh.head = n
	if sh.tail == nil {
		sh.tail = n
	}
}
