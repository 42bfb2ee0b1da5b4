package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

// simUpstreamCmd serves a simulated batched model server for the upstream
// benchmarks: KServe V2 JSON, any model name, whose every inference call
// costs a fixed time whatever its batch size (an accelerator's per-call
// cost), with a bounded number of calls running at once (the rest wait,
// as in a server with one execution queue). It answers one INT64 output
// per row ("label", 0) after reading the rows from inputs[0].shape[0], and
// 200 to GET .../ready. Its CPU cost per call is small, so that on a
// shared 2-core machine the comparison measures batching, not the
// simulator.
func simUpstreamCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench simupstream", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:18501", "listen address")
	cost := fs.Duration("cost", time.Millisecond, "time every inference call takes, whatever its rows")
	slots := fs.Int("concurrency", 1, "inference calls running at once")
	output := fs.String("output", "label", "name of the INT64 output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	sem := make(chan struct{}, *slots)
	var calls, rows atomic.Int64
	var pp fastjson.ParserPool
	srv := &fasthttp.Server{Name: "simupstream", Handler: func(c *fasthttp.RequestCtx) {
		if !c.IsPost() {
			if string(c.Path()) == "/metrics" {
				fmt.Fprintf(c, "sim_calls_total %d\nsim_rows_total %d\n", calls.Load(), rows.Load())
			}
			return // 200: ready, live
		}
		p := pp.Get()
		defer pp.Put(p)
		v, err := p.ParseBytes(c.PostBody())
		n := 0
		if err == nil {
			n = v.GetInt("inputs", "0", "shape", "0")
		}
		if n <= 0 {
			c.Error(`{"error":"want inputs[0].shape[0] rows"}`, fasthttp.StatusBadRequest)
			return
		}
		sem <- struct{}{}
		time.Sleep(*cost) // the simulated model: a per-call cost, no CPU
		<-sem
		calls.Add(1)
		rows.Add(int64(n))
		b := append([]byte(nil), `{"model_name":"sim","outputs":[{"name":`...)
		b = strconv.AppendQuote(b, *output)
		b = append(b, `,"datatype":"INT64","shape":[`...)
		b = strconv.AppendInt(b, int64(n), 10)
		b = append(b, `],"data":[0`...)
		for range n - 1 {
			b = append(b, ",0"...)
		}
		b = append(b, "]}]}"...)
		c.SetContentType("application/json")
		c.SetBody(b)
	}}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); srv.Shutdown() }() //nolint:errcheck // exiting
	fmt.Printf("simupstream on %s: %v per call, %d at once\n", ln.Addr(), *cost, *slots)
	return srv.Serve(ln)
}
