package proxy

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestAdminNotFound: an unknown admin path says what exists, and pprof
// while it is off says how to turn it on rather than a bare 404.
func TestAdminNotFound(t *testing.T) {
	s, _, set := testServer(t)
	f := func(pprofOn bool, path string, status int, want string) {
		t.Helper()
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(path)
		s.AdminHandler(set, pprofOn)(&ctx)
		if ctx.Response.StatusCode() != status || !strings.Contains(string(ctx.Response.Body()), want) {
			t.Errorf("GET %s (pprof %v) = %d %s; want %d containing %q", path, pprofOn, ctx.Response.StatusCode(), ctx.Response.Body(), status, want)
		}
	}
	f(false, "/debug/pprof/", 404, "pprof is off; start with --admin.pprof")
	f(false, "/debug/pprof/heap", 404, "admin.pprof: true")
	f(false, "/nope", 404, `no admin endpoint \"/nope\"; want /metrics`)
	f(true, "/nope", 404, "or /debug/pprof/")
	f(true, "/debug/pprof/", 200, "Types of profiles available")
	f(false, "/"+strings.Repeat("x", 5000), 404, "…")
}
