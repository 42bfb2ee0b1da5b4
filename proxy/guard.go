package proxy

import (
	"bytes"
	"net/netip"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/auth"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/internal/filewatch"
	"github.com/coalesce-ml/coalesce/ratelimit"
)

// guard is the data plane's protection ahead of decoding: API keys
// (package auth) and rate limits (package ratelimit). Handler
// authenticates every request but health probes before routing (401);
// serveInfer, once routing has resolved the model and before it decodes
// the body, checks the key's access to the model (403) and the buckets
// (429). Its fields are set by New and not changed afterwards.
type guard struct {
	keys    *auth.Store        // nil: authentication off
	lim     *ratelimit.Limiter // nil: no rate limits
	keyRule ratelimit.Rule     // ratelimit.key, for keys whose tier the key file does not define
	shadow  bool               // ratelimit.shadow: count, don't refuse
	admin   bool               // auth.admin_plane
	tls     *certPair          // nil: plain HTTP
	watch   *filewatch.Watcher // nil: no reload on change

	// Authentication failures by reason; nil when auth is off.
	missing, invalid, forbidden *metrics.Counter
	counters                    sync.Map // limitedKey → *metrics.Counter
}

// identityKey is the RequestCtx user value holding the request's
// *auth.Identity from Handler to serveInfer.
type identityKey struct{}

// newGuard builds the guard of cfg on set; it reads the key file and the
// TLS pair, whose errors stop start-up.
func (s *Server) newGuard(cfg *config.Config) error {
	g := &s.guard
	var files []string
	if p := cfg.Auth.KeysFile; p != "" {
		ks, err := auth.Open(p)
		if err != nil {
			return err
		}
		g.keys, g.admin = ks, cfg.Auth.AdminPlane
		g.missing = s.set.GetOrCreateCounter(`coalesce_auth_failures_total{reason="missing"}`)
		g.invalid = s.set.GetOrCreateCounter(`coalesce_auth_failures_total{reason="invalid"}`)
		g.forbidden = s.set.GetOrCreateCounter(`coalesce_auth_failures_total{reason="forbidden"}`)
		s.set.GetOrCreateGauge(`coalesce_auth_keys`, func() float64 { return float64(ks.Len()) })
		files = append(files, p)
	}
	r := cfg.Rate
	rule := func(b config.Bucket) ratelimit.Rule { return ratelimit.Rule{Rate: b.Rate, Burst: b.Burst} }
	g.keyRule, g.shadow = rule(r.Key), r.Shadow
	if r.Global.Rate > 0 || r.Model.Rate > 0 || r.Key.Rate > 0 || r.Client.Rate > 0 || g.keys != nil {
		// With keys, tiers in the key file may set limits the
		// configuration does not.
		g.lim = ratelimit.New(ratelimit.Config{
			Global: rule(r.Global), Model: rule(r.Model), Client: rule(r.Client),
			MaxCallers: r.MaxCallers, IdleTimeout: r.IdleTimeout,
		})
	}
	if cfg.TLS.CertFile != "" {
		g.tls = &certPair{certFile: cfg.TLS.CertFile, keyFile: cfg.TLS.KeyFile}
		if err := g.tls.load(); err != nil {
			return err
		}
		files = append(files, cfg.TLS.CertFile, cfg.TLS.KeyFile)
	}
	if len(files) > 0 && cfg.Auth.ReloadInterval > 0 {
		g.watch = filewatch.New(cfg.Auth.ReloadInterval, func() { _ = s.Reload() }, files...)
	}
	return nil
}

// Reload re-reads the key file and the TLS certificate and key, as on
// SIGHUP: what fails to load keeps what is in force, and is logged (never
// with key material) and returned.
func (s *Server) Reload() error {
	g := &s.guard
	var first error
	if g.keys != nil {
		if err := g.keys.Reload(); err != nil {
			s.set.GetOrCreateCounter(`coalesce_auth_reloads_total{result="error"}`).Inc()
			s.log.Error("key file not reloaded; the keys in force stay", "err", err)
			first = err
		} else {
			s.set.GetOrCreateCounter(`coalesce_auth_reloads_total{result="ok"}`).Inc()
			s.log.Info("key file reloaded", "path", g.keys.Path(), "keys", g.keys.Len())
		}
	}
	if g.tls != nil {
		if err := g.tls.load(); err != nil {
			s.log.Error("TLS certificate not reloaded; the pair in force stays", "err", err)
			if first == nil {
				first = err
			}
		} else {
			s.log.Info("TLS certificate reloaded", "cert_file", g.tls.certFile)
		}
	}
	return first
}

// isHealth reports whether path is a health probe, open without a key.
func isHealth(path []byte) bool {
	return bytes.Equal(path, []byte("/v2/health/live")) || bytes.Equal(path, []byte("/v2/health/ready"))
}

// authenticate checks the request's key, before routing, and keeps its
// identity for serveInfer. Health probes need none. checked is the
// identity headerReceived already found for the key (nil: not checked
// yet).
func (s *Server) authenticate(ctx *fasthttp.RequestCtx, path []byte, checked *auth.Identity) error {
	g := &s.guard
	if g.keys == nil || isHealth(path) {
		return nil
	}
	id := checked
	if id == nil {
		var err error
		if id, err = s.identify(ctx); err != nil {
			return err
		}
	}
	ctx.SetUserValue(identityKey{}, id)
	return nil
}

// identify returns the identity of the request's key or an
// errUnauthorized, counting the failure.
func (s *Server) identify(ctx *fasthttp.RequestCtx) (*auth.Identity, error) {
	h := &ctx.Request.Header
	return s.identifyKey(h.Peek(fasthttp.HeaderAuthorization), h.Peek("X-API-Key"))
}

// identifyKey is identify of the credentials a request sent: the values
// of Authorization and X-API-Key (nil when absent), over HTTP or as gRPC
// metadata.
func (s *Server) identifyKey(authorization, apiKey []byte) (*auth.Identity, error) {
	g := &s.guard
	id, err := g.keys.Check(auth.FromHeaders(authorization, apiKey))
	switch err {
	case nil:
		return id, nil
	case auth.ErrNoKey:
		g.missing.Inc()
		return nil, errUnauthorized{}
	}
	g.invalid.Inc()
	return nil, errUnauthorized{invalid: true}
}

// adminAuth is the admin plane's check when auth.admin_plane is on: a key
// marked admin: true, except for health probes.
func (s *Server) adminAuth(ctx *fasthttp.RequestCtx) error {
	if !s.guard.admin || isHealth(ctx.Path()) {
		return nil
	}
	return s.requireAdmin(ctx)
}

// requireAdmin checks that the request's key is valid (401) and marked
// admin (403).
func (s *Server) requireAdmin(ctx *fasthttp.RequestCtx) error {
	id, err := s.identify(ctx)
	if err != nil {
		return err
	}
	if !id.Admin {
		s.guard.forbidden.Inc()
		return errForbidden{key: id.Name}
	}
	return nil
}

// repositoryAuth guards the repository API, which changes what is
// served: with API keys on (auth.keys_file) it takes a key marked admin
// even when auth.admin_plane leaves the rest of the admin plane open
// (adminAuth has checked it already when it does not).
func (s *Server) repositoryAuth(ctx *fasthttp.RequestCtx) error {
	if s.guard.keys == nil || s.guard.admin {
		return nil
	}
	return s.requireAdmin(ctx)
}

// admitModel is serveInfer's check once the model is known and before
// the body is decoded: the key may call it (403), and every bucket the
// request passes has a token (429; in shadow mode only counted).
func (s *Server) admitModel(ctx *fasthttp.RequestCtx, model string) error {
	id, err := s.access(ctx, model)
	if err != nil {
		return err
	}
	if s.guard.lim == nil {
		return nil
	}
	return s.limit(id, clientAddr(ctx), model)
}

// limit takes a token from every bucket a request of id (nil when auth is
// off) from client to model passes, or returns an errLimited (in shadow
// mode it only counts).
func (s *Server) limit(id *auth.Identity, client netip.Addr, model string) error {
	g := &s.guard
	if g.lim == nil {
		return nil
	}
	var d ratelimit.Decision
	if id != nil {
		r := g.keyRule
		if id.HasRule {
			r = ratelimit.Rule{Rate: id.Rule.Rate, Burst: id.Rule.Burst}
		}
		d = g.lim.AllowKey(id.Name, r, model)
	} else {
		d = g.lim.AllowClient(client, model)
	}
	if d.Allowed() {
		return nil
	}
	var label string // the tier (from the key file, never the key) or the model
	switch d.Scope {
	case ratelimit.ScopeKey:
		label = id.Tier
	case ratelimit.ScopeModel:
		label = model
	}
	s.limitedCounter(limitedKey{d.Scope, label, g.shadow}).Inc()
	if g.shadow {
		return nil
	}
	return errLimited{d: d, model: model}
}

// limitedKey names one series of coalesce_ratelimited_total or, shadow,
// coalesce_ratelimit_shadow_total.
type limitedKey struct {
	scope  ratelimit.Scope
	label  string // tier for ScopeKey, model for ScopeModel, else ""
	shadow bool
}

// limitedCounter returns key's counter, created on first use and then
// found without building its name: under a flood of refusals this is the
// hot path. Tiers and models come from the key file and the
// configuration, so the series stay few.
func (s *Server) limitedCounter(k limitedKey) *metrics.Counter {
	if c, ok := s.guard.counters.Load(k); ok {
		return c.(*metrics.Counter)
	}
	name := "coalesce_ratelimited_total"
	if k.shadow {
		name = "coalesce_ratelimit_shadow_total"
	}
	name += `{scope="` + k.scope.String() + `"`
	switch k.scope {
	case ratelimit.ScopeKey:
		name += `,tier="` + k.label + `"`
	case ratelimit.ScopeModel:
		name += `,model="` + k.label + `"`
	}
	c := s.set.GetOrCreateCounter(name + "}")
	s.guard.counters.Store(k, c)
	return c
}

// access returns the request's identity (nil when auth is off) or an
// errForbidden when its key may not call model.
func (s *Server) access(ctx *fasthttp.RequestCtx, model string) (*auth.Identity, error) {
	g := &s.guard
	if g.keys == nil {
		return nil, nil
	}
	id, _ := ctx.UserValue(identityKey{}).(*auth.Identity)
	return s.allows(id, model)
}

// allows returns id, or an errForbidden when its key may not call model.
// id is nil only when auth is off.
func (s *Server) allows(id *auth.Identity, model string) (*auth.Identity, error) {
	g := &s.guard
	if g.keys == nil {
		return nil, nil
	}
	if id == nil {
		return nil, errUnauthorized{} // not reached: callers authenticate first
	}
	if !id.Allows(model) {
		g.forbidden.Inc()
		return nil, errForbidden{key: id.Name, model: model}
	}
	return id, nil
}

// modelAccess is Handler's check of a request that was answered about
// model without inference (metadata, readiness): its key must be allowed
// to call it. The answer is replaced, so nothing of it leaks.
func (s *Server) modelAccess(ctx *fasthttp.RequestCtx, model string) error {
	_, err := s.access(ctx, model)
	return err
}

// clientAddr is the request's peer address (X-Forwarded-For is not
// trusted: any client can set it), an IPv6 address reduced to its /64:
// one host usually holds a whole /64 and could otherwise take a fresh
// bucket with every address of it.
func clientAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	a, _ := netip.AddrFromSlice(ctx.RemoteIP())
	return clientKey(a)
}

func clientKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return a
}

// retrySeconds rounds a wait up to whole seconds, at least 1, for
// Retry-After (RFC 9110 §10.2.3 allows only whole seconds).
func retrySeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}
