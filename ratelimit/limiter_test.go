package ratelimit

import (
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// clock is an injected clock that moves only when told.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{t: time.Unix(1_000_000, 0)} }
func allowN(l *Limiter, name string, r Rule, n int) (ok int, last Decision) {
	for range n {
		last = l.AllowKey(name, r, "m")
		if last.Allowed() {
			ok++
		}
	}
	return ok, last
}

func TestBurstThenRefusalThenRefill(t *testing.T) {
	c := newClock()
	l := New(Config{Now: c.now})
	r := Rule{Rate: 10, Burst: 5}
	if ok, d := allowN(l, "a", r, 8); ok != 5 || d.Scope != ScopeKey || d.Limit != 5 || d.Remaining != 0 {
		t.Fatalf("8 requests at once: %d allowed, last %+v; want 5 allowed, then refused by the key's bucket of 5", ok, d)
	} else if d.RetryAfter != 100*time.Millisecond {
		t.Errorf("RetryAfter = %v; want 100ms (one token at 10/s)", d.RetryAfter)
	}
	c.add(99 * time.Millisecond)
	if d := l.AllowKey("a", r, "m"); d.Allowed() {
		t.Fatalf("after 99ms: allowed; want refused (0.99 tokens)")
	}
	c.add(time.Millisecond)
	if d := l.AllowKey("a", r, "m"); !d.Allowed() {
		t.Fatalf("after 100ms: %+v; want allowed (1 token)", d)
	}
	c.add(time.Hour)
	if ok, _ := allowN(l, "a", r, 10); ok != 5 {
		t.Errorf("after an hour idle: %d allowed; want 5 (the bucket holds at most burst)", ok)
	}
}

func TestPerKeyIndependence(t *testing.T) {
	c := newClock()
	l := New(Config{Now: c.now})
	r := Rule{Rate: 1, Burst: 2}
	if ok, _ := allowN(l, "a", r, 5); ok != 2 {
		t.Fatalf("key a: %d allowed; want 2", ok)
	}
	if ok, _ := allowN(l, "b", r, 5); ok != 2 {
		t.Errorf("key b after a was refused: %d allowed; want 2 (its own bucket)", ok)
	}
	if ok, _ := allowN(l, "c", Rule{}, 100); ok != 100 {
		t.Errorf("key without a rule: %d of 100 allowed; want all", ok)
	}
}

func TestSharedScopes(t *testing.T) {
	c := newClock()
	l := New(Config{Now: c.now, Model: Rule{Rate: 1, Burst: 3}, Global: Rule{Rate: 1, Burst: 4}})
	key := Rule{Rate: 1, Burst: 1}
	f := func(name, model string, want Scope) {
		t.Helper()
		if d := l.AllowKey(name, key, model); d.Scope != want {
			t.Fatalf("AllowKey(%s, %s).Scope = %v; want %q", name, model, d.Scope, want)
		}
	}
	f("a", "m1", ScopeNone)
	f("a", "m1", ScopeKey) // refused by its own bucket: spends nothing shared
	f("b", "m1", ScopeNone)
	f("c", "m1", ScopeNone)
	f("d", "m1", ScopeModel)  // m1's 3 tokens are gone; the global is not spent
	f("e", "m2", ScopeNone)   // the global's 4th token
	f("f", "m2", ScopeGlobal) // none left
}

func TestClientScope(t *testing.T) {
	c := newClock()
	l := New(Config{Now: c.now, Client: Rule{Rate: 1, Burst: 2}})
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	for i, want := range []Scope{ScopeNone, ScopeNone, ScopeClient} {
		if d := l.AllowClient(a, "m"); d.Scope != want {
			t.Fatalf("request %d from a: scope %v; want %q", i, d.Scope, want)
		}
	}
	if d := l.AllowClient(b, "m"); !d.Allowed() {
		t.Errorf("b after a was refused: %+v; want allowed", d)
	}
}

func TestRuleChange(t *testing.T) {
	c := newClock()
	l := New(Config{Now: c.now})
	if ok, _ := allowN(l, "a", Rule{Rate: 1, Burst: 1}, 3); ok != 1 {
		t.Fatalf("%d allowed; want 1", ok)
	}
	c.add(time.Second)
	// A reload raised the key's tier: the bucket follows.
	if ok, _ := allowN(l, "a", Rule{Rate: 100, Burst: 10}, 20); ok < 1 || ok > 10 {
		t.Errorf("after the rule grew: %d allowed; want 1..10", ok)
	}
	c.add(time.Second)
	if ok, _ := allowN(l, "a", Rule{Rate: 100, Burst: 10}, 20); ok != 10 {
		t.Errorf("a second later: %d allowed; want 10", ok)
	}
}

func TestEvictionBound(t *testing.T) {
	c := newClock()
	const max = 1024
	l := New(Config{Now: c.now, MaxCallers: max, Client: Rule{Rate: 1, Burst: 1}})
	r := Rule{Rate: 1, Burst: 1}
	for i := range 100_000 {
		l.AllowKey("key-"+strconv.Itoa(i), r, "")
		l.AllowClient(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), "")
		c.add(time.Microsecond)
	}
	if n := l.Callers(); n > 2*max {
		t.Errorf("after 100k distinct keys and addresses: %d callers tracked; want at most %d", n, 2*max)
	}
	// The most recent callers are still tracked (their buckets are empty).
	if d := l.AllowKey("key-99999", r, ""); d.Allowed() {
		t.Errorf("the last key seen was forgotten; want its empty bucket kept")
	}
}

func TestIdleEviction(t *testing.T) {
	c := newClock()
	l := New(Config{Now: c.now, IdleTimeout: time.Minute})
	r := Rule{Rate: 0.001, Burst: 1}
	for i := range 100 {
		l.AllowKey("k"+strconv.Itoa(i), r, "")
	}
	c.add(2 * time.Minute)
	for i := range 16 * 8 { // touch every shard
		l.AllowKey("n"+strconv.Itoa(i), r, "")
	}
	if n := l.keys.len(); n != 128 {
		t.Errorf("after the old keys idled 2 minutes: %d tracked; want only the 128 new ones", n)
	}
}

func TestRetryAfterCapped(t *testing.T) {
	c := newClock()
	l := New(Config{Now: c.now, Global: Rule{Rate: 1e-12, Burst: 1}})
	l.AllowKey("a", Rule{}, "")
	if d := l.AllowKey("a", Rule{}, ""); d.Scope != ScopeGlobal || d.RetryAfter != maxRetry {
		t.Errorf("at 1e-12/s: %+v; want refused by the global bucket, RetryAfter capped at %v", d, maxRetry)
	}
}

func TestNothingOn(t *testing.T) {
	l := New(Config{Now: func() time.Time { panic("BUG: the clock was read with no rule on") }})
	if d := l.AllowKey("a", Rule{}, "m"); !d.Allowed() {
		t.Errorf("no rule: %+v; want allowed", d)
	}
}
