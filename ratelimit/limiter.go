// Package ratelimit decides whether a request may go on under token
// buckets (golang.org/x/time/rate): one per caller (an API key, with its
// tier's rule, or a client address), one per model and one global. It
// only decides; the caller answers 429 or, in shadow mode, counts.
//
// The tables of callers and models are bounded (see table), so that a
// flood of distinct addresses cannot exhaust memory.
package ratelimit

import (
	"math"
	"net/netip"
	"time"

	"golang.org/x/time/rate"
)

// Rule is a token bucket: Rate tokens per second, holding at most Burst.
// A zero Rate means no limit.
type Rule struct {
	Rate  float64
	Burst int
}

// On reports whether the rule limits anything.
func (r Rule) On() bool { return r.Rate > 0 }

// Scope names the bucket that refused a request.
type Scope uint8

// The scopes, in the order a request is checked: its caller's bucket
// (Key or Client) first, so that a caller refused by its own bucket
// spends nothing of the shared ones; then the model's; then the global.
const (
	ScopeNone   Scope = iota // allowed
	ScopeKey                 // the API key's bucket (its tier's rule)
	ScopeClient              // the client address's bucket (auth off)
	ScopeModel               // the model's bucket
	ScopeGlobal              // the server's bucket
)

var scopeNames = [...]string{"", "key", "client", "model", "global"}

// String returns the scope's metric label value ("key", "model", ...).
func (s Scope) String() string { return scopeNames[s] }

// Decision is the outcome of one check. When Scope is ScopeNone the
// request may go on and the other fields are zero.
type Decision struct {
	Scope      Scope
	Limit      int           // the refusing bucket's burst
	Remaining  int           // whole tokens left in it (0 on refusal)
	RetryAfter time.Duration // until it holds one token again
}

// Allowed reports whether the request may go on.
func (d Decision) Allowed() bool { return d.Scope == ScopeNone }

// Config configures a Limiter. Zero rules limit nothing.
type Config struct {
	Global Rule // the whole server
	Model  Rule // each model, separately
	Client Rule // each client address, when requests carry no key
	// MaxCallers bounds the callers (keys and addresses, each) tracked;
	// 0 means 65536.
	MaxCallers int
	// IdleTimeout forgets a caller unseen this long (0: only MaxCallers
	// does).
	IdleTimeout time.Duration
	// Now is the clock (nil: time.Now); tests inject one.
	Now func() time.Time
}

// Limiter holds the buckets. Create it with New; it is safe for
// concurrent use.
type Limiter struct {
	cfg     Config
	now     func() time.Time
	global  *rate.Limiter // nil: no global rule
	models  *table[string]
	keys    *table[string]
	clients *table[netip.Addr]
}

// New returns a Limiter for cfg.
func New(cfg Config) *Limiter {
	if cfg.MaxCallers <= 0 {
		cfg.MaxCallers = 65536
	}
	l := &Limiter{cfg: cfg, now: cfg.Now}
	if l.now == nil {
		l.now = time.Now
	}
	if cfg.Global.On() {
		l.global = rate.NewLimiter(rate.Limit(cfg.Global.Rate), cfg.Global.Burst)
		l.global.SetBurstAt(l.now(), cfg.Global.Burst)
	}
	// Model names come from the configuration: the bound is a backstop.
	l.models = newTable[string](4096, 0)
	l.keys = newTable[string](cfg.MaxCallers, cfg.IdleTimeout)
	l.clients = newTable[netip.Addr](cfg.MaxCallers, cfg.IdleTimeout)
	return l
}

// AllowKey checks one request of the key named name, whose bucket follows
// rule r (a zero rule: the key is not limited), for model ("" when the
// request names none).
func (l *Limiter) AllowKey(name string, r Rule, model string) Decision {
	if !r.On() && !l.cfg.Model.On() && l.global == nil {
		return Decision{} // nothing to check: not even the clock
	}
	now := l.now()
	if r.On() {
		if d := take(l.keys.get(name, r, now), now, ScopeKey); !d.Allowed() {
			return d
		}
	}
	return l.shared(model, now)
}

// AllowClient checks one request from addr (Config.Client's rule) for
// model. Behind a proxy or load balancer every request has the same
// address, so this is meaningful only when clients connect directly.
func (l *Limiter) AllowClient(addr netip.Addr, model string) Decision {
	now := l.now()
	if l.cfg.Client.On() {
		if d := take(l.clients.get(addr, l.cfg.Client, now), now, ScopeClient); !d.Allowed() {
			return d
		}
	}
	return l.shared(model, now)
}

// shared checks the model's and the global bucket.
func (l *Limiter) shared(model string, now time.Time) Decision {
	if l.cfg.Model.On() && model != "" {
		if d := take(l.models.get(model, l.cfg.Model, now), now, ScopeModel); !d.Allowed() {
			return d
		}
	}
	if l.global != nil {
		return take(l.global, now, ScopeGlobal)
	}
	return Decision{}
}

// Callers returns the number of keys and client addresses tracked.
func (l *Limiter) Callers() int { return l.keys.len() + l.clients.len() }

// maxRetry caps Decision.RetryAfter.
const maxRetry = 24 * time.Hour

// take spends one token of lim at now, or describes the refusal.
func take(lim *rate.Limiter, now time.Time, s Scope) Decision {
	if lim.AllowN(now, 1) {
		return Decision{}
	}
	d := Decision{Scope: s, Limit: lim.Burst()}
	tokens := lim.TokensAt(now)
	if r := float64(lim.Limit()); r > 0 {
		// Capped at a day, so that a tiny configured rate cannot
		// overflow a Duration (or promise a retry years away).
		wait := min((1-tokens)/r, maxRetry.Seconds())
		d.RetryAfter = time.Duration(math.Ceil(wait * float64(time.Second)))
	}
	return d
}
