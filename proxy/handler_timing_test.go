package proxy

import (
	"net"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkHandler measures one request through the data-plane handler
// (decode, batcher, fake model, encode, metrics) without the network, per
// protocol; allocs/op is the request path's allocation count.
func BenchmarkHandler(b *testing.B) {
	s, _, _ := testServer(b)
	cases := []struct{ name, path, body string }{
		{"predict", "/predict", `{"features":[1,5,2,3]}`},
		{"v2", "/v2/models/double/infer", `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,5,2,3]}]}`},
		{"tfs", "/v1/models/double:predict", `{"instances":[[1,5,2,3]]}`},
		// Strings (BYTES) in and out, and a map output (Keys).
		{"v2-bytes", "/v2/models/strs/infer", `{"inputs":[{"name":"s","shape":[1,2],"datatype":"BYTES","data":["setosa","virginica"]}]}`},
		{"predict-map", "/predict?model=zip", `{"features":[1,5,2]}`},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var req fasthttp.Request
			req.Header.SetMethod("POST")
			req.SetRequestURI(c.path)
			req.SetBodyString(c.body)
			var ctx fasthttp.RequestCtx
			addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
			b.ReportAllocs()
			for b.Loop() {
				ctx.Init(&req, addr, nil) // copies the request and restarts ctx.Time()
				s.Handler(&ctx)
				if ctx.Response.StatusCode() != 200 {
					b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
			}
		})
	}
}
