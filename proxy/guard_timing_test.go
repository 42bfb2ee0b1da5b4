package proxy

import (
	"net"
	"syscall"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/config"
)

// BenchmarkGuard measures what API keys and rate limits add to one
// request: the key check before routing and the model check and buckets
// before decoding, alone ("check") and through the whole handler on the
// fake model ("handler"); "off" is the default configuration. Every
// bucket is large enough never to refuse.
func BenchmarkGuard(b *testing.B) {
	on := func(c *config.Config) {
		big := config.Bucket{Rate: 1e9, Burst: 1 << 30}
		c.Rate.Key, c.Rate.Model, c.Rate.Global = big, big, big
	}
	client := func(c *config.Config) { c.Rate.Client = config.Bucket{Rate: 1e9, Burst: 1 << 30} }
	// Every request but the first is refused: the cost of a 429.
	refuse := func(c *config.Config) { c.Rate.Global = config.Bucket{Rate: 1e-9, Burst: 1} }
	cases := []struct {
		name    string
		keys    string
		edit    func(*config.Config)
		headers []string
	}{
		{"off", "", nil, nil},
		{"keys", keyFile(""), nil, []string{"X-API-Key", keyApp}},
		{"keys+limits", keyFile(""), on, []string{"Authorization", "Bearer " + keyApp}},
		{"client-limit", "", client, nil},
		{"refused", "", refuse, nil},
	}
	for _, c := range cases {
		b.Run(c.name+"/check", func(b *testing.B) {
			s, _, _, _ := guardServer(b, c.keys, c.edit, nil)
			var req fasthttp.Request
			req.Header.SetMethod("POST")
			req.SetRequestURI("/predict")
			for i := 0; i+1 < len(c.headers); i += 2 {
				req.Header.Set(c.headers[i], c.headers[i+1])
			}
			var ctx fasthttp.RequestCtx
			ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				if err := s.authenticate(&ctx, ctx.Path(), nil); err != nil {
					b.Fatal(err)
				}
				if err := s.admitModel(&ctx, "double"); err != nil && c.name != "refused" {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/handler", func(b *testing.B) {
			s, _, _, _ := guardServer(b, c.keys, c.edit, nil)
			var req fasthttp.Request
			req.Header.SetMethod("POST")
			req.SetRequestURI("/predict")
			req.SetBody(guardBody)
			for i := 0; i+1 < len(c.headers); i += 2 {
				req.Header.Set(c.headers[i], c.headers[i+1])
			}
			var ctx fasthttp.RequestCtx
			addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				ctx.Init(&req, addr, nil)
				s.Handler(&ctx)
				if want := map[bool]int{false: 200, true: 429}[c.name == "refused"]; ctx.Response.StatusCode() != want && b.N > 1 {
					b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
			}
		})
	}
}

// reportCPU reports the process's CPU time (user + system, getrusage)
// per iteration as cpu-ns/op: on a machine shared with other work, wall
// time per op measures the neighbours as much as the code. Call the
// function it returns when the loop is done.
func reportCPU(b *testing.B) func() {
	cpu := func() int64 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return ru.Utime.Nano() + ru.Stime.Nano()
	}
	start := cpu()
	return func() { b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op") }
}
