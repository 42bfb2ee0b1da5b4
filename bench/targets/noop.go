package targets

import (
	"context"
	"net"
	"net/http"

	"github.com/valyala/fasthttp"
)

// noopReply is the fixed answer of the no-op server: the shape of a
// /predict answer, without a model behind it.
const noopReply = `{"prediction":[0]}`

// NewNoopServer returns the HTTP ceiling of this machine: a bare fasthttp
// server that answers POST /predict with {"prediction":[0]} once it has
// read the whole request body (fasthttp reads it before calling the
// handler), 404 for any other path and 405 with "Allow: POST" for another
// method on /predict. Nothing else happens per request: no JSON parsing,
// no model, no metrics. Its Shutdown stops it.
func NewNoopServer() *fasthttp.Server {
	return &fasthttp.Server{
		Name: "noop-fasthttp",
		Handler: func(ctx *fasthttp.RequestCtx) {
			if string(ctx.Path()) != "/predict" {
				ctx.SetStatusCode(fasthttp.StatusNotFound)
				return
			}
			if !ctx.IsPost() {
				ctx.Response.Header.Set("Allow", fasthttp.MethodPost)
				ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
				return
			}
			ctx.SetContentType("application/json")
			ctx.SetBodyString(noopReply)
		},
	}
}

// ServeNoop serves NewNoopServer's handler on ln until ln is closed, when
// it returns nil; connections already open are served until their clients
// close them. The bench tool calls it in its "noop" mode.
func ServeNoop(ln net.Listener) error {
	return NewNoopServer().Serve(ln)
}

// StartNoop runs `bin args... --addr A`, a process that serves ServeNoop
// on A, a free 127.0.0.1 port; the bench tool passes its own executable
// and []string{"noop"}. It returns once POST /predict answers 200, bounded
// by ctx and by 60s. The Target has no MetricsURL.
func StartNoop(ctx context.Context, bin string, args ...string) (*Target, error) {
	return startRetrying(ctx, func() (spec, error) {
		addrs, err := freeAddrs(1)
		if err != nil {
			return spec{}, err
		}
		return spec{
			name:  "noop-fasthttp",
			path:  bin,
			args:  append(append([]string(nil), args...), "--addr", addrs[0]),
			addr:  addrs[0],
			ready: probe(http.MethodPost, "http://"+addrs[0]+"/predict", "application/json", []byte(`{"features":[0]}`)),
		}, nil
	})
}
