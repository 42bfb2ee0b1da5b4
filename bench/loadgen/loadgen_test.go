package loadgen

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/valyala/fasthttp"
)

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name       string
		raw        string
		status     int
		closeAfter bool
		wantErr    bool
		rest       string // what must remain unread
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloNEXT", 200, false, false, "NEXT"},
		{"chunked", "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nTrailer: 1\r\n\r\nNEXT", 201, false, false, "NEXT"},
		{"connection close", "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}", 503, true, false, ""},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", 200, true, false, ""},
		{"http/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nxNEXT", 200, false, false, "NEXT"},
		{"body to EOF", "HTTP/1.1 200 OK\r\n\r\nall of it", 200, true, false, ""},
		{"no body on 204", "HTTP/1.1 204 No Content\r\n\r\nNEXT", 204, false, false, "NEXT"},
		{"case-insensitive headers", "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nCONNECTION: CLOSE\r\n\r\nok", 200, true, false, ""},
		{"garbage", "SSH-2.0-OpenSSH\r\n\r\n", 0, true, true, ""},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 200, true, true, ""},
		{"truncated body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 200, true, true, ""},
		{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 200, true, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tt.raw))
			status, closeAfter, err := readResponse(br)
			if (err != nil) != tt.wantErr {
				t.Fatalf("readResponse() error = %v; want error %v", err, tt.wantErr)
			}
			if status != tt.status || (!tt.wantErr && closeAfter != tt.closeAfter) {
				t.Errorf("readResponse() = %d, close %v; want %d, close %v", status, closeAfter, tt.status, tt.closeAfter)
			}
			if !tt.wantErr {
				rest := make([]byte, 64)
				n, _ := br.Read(rest)
				if string(rest[:n]) != tt.rest {
					t.Errorf("left unread %q; want %q", rest[:n], tt.rest)
				}
			}
		})
	}
}

func TestSummarizeMergedHistograms(t *testing.T) {
	a, b := NewHistogram(), NewHistogram()
	for v := int64(1); v <= 500; v++ {
		a.RecordValue(v * 10) // 10µs .. 5ms
	}
	for v := int64(501); v <= 1000; v++ {
		b.RecordValue(v * 10) // 5.01ms .. 10ms
	}
	m := NewHistogram()
	m.Merge(a)
	m.Merge(b)
	p := Summarize(m)
	within := func(name string, got, want float64) {
		t.Helper()
		if got < want || got > want*1.001+1 { // HDR: upper bound of an equivalent bucket
			t.Errorf("%s = %v; want %v (+0.1%%)", name, got, want)
		}
	}
	within("p50", p.P50, 5000)
	within("p90", p.P90, 9000)
	within("p99", p.P99, 9900)
	within("p99.9", p.P999, 9990)
	within("max", p.Max, 10000)
	if p.Mean < 5004 || p.Mean > 5006+5 {
		t.Errorf("mean = %v; want 5005", p.Mean)
	}
	if got := Summarize(NewHistogram()); got != (Percentiles{}) {
		t.Errorf("Summarize(empty) = %+v; want zeros", got)
	}
}

// testServer serves POST /ok (200), /shed (503), /fail (500) and counts
// requests; stall, when set, blocks requests until it is closed.
type testServer struct {
	addr  string
	count atomic.Int64
	slow  atomic.Int64 // requests to /slow
	stall atomic.Pointer[chan struct{}]
}

func startTestServer(t *testing.T) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{addr: ln.Addr().String()}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ts.count.Add(1)
		if ch := ts.stall.Load(); ch != nil {
			<-*ch
		}
		switch string(ctx.Path()) {
		case "/ok":
			ctx.SetBodyString(`{"prediction":[0]}`)
		case "/shed":
			ctx.SetStatusCode(503)
		case "/slow":
			ts.slow.Add(1)
			time.Sleep(20 * time.Millisecond)
		default:
			ctx.SetStatusCode(500)
		}
	}}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { srv.Shutdown() })
	return ts
}

func TestClosedLoopCounts(t *testing.T) {
	ts := startTestServer(t)
	reqs := []Request{
		NewRequest("POST", ts.addr, "/ok", []byte(`{}`)),
		NewRequest("POST", ts.addr, "/ok", []byte(`{}`)),
		NewRequest("POST", ts.addr, "/shed", []byte(`{}`)),
		NewRequest("POST", ts.addr, "/fail", []byte(`{}`)),
	}
	res, err := Run(context.Background(), Config{Addr: ts.addr, Requests: reqs, Connections: 4,
		Warmup: 100 * time.Millisecond, Duration: 400 * time.Millisecond, MaxRequests: 2000})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.OK+res.Shed+res.Errors["500"] != res.Requests {
		t.Fatalf("requests %d = ok %d + shed %d + 500s %d?", res.Requests, res.OK, res.Shed, res.Errors["500"])
	}
	// Each connection walks the mix in order: half OK, a quarter each shed and failed.
	if q := float64(res.Shed) / float64(res.Requests); q < 0.2 || q > 0.3 {
		t.Errorf("shed share = %.2f; want about 0.25", q)
	}
	if res.Latency.TotalCount() != res.Requests {
		t.Errorf("histogram holds %d values; want %d", res.Latency.TotalCount(), res.Requests)
	}
	if served := ts.count.Load(); served <= res.Requests {
		t.Errorf("server saw %d requests, figures count %d; the warm-up must not be counted", served, res.Requests)
	}
	// The window is 0.4s, stretched by at most the last answer in flight.
	if res.Seconds <= 0 || res.Seconds > 0.4+5 {
		t.Errorf("Seconds = %v; want about 0.4", res.Seconds)
	}
	if res.ClientCPU <= 0 {
		t.Errorf("ClientCPU = %v; want > 0", res.ClientCPU)
	}
}

func TestMaxRequestsStopsTheRun(t *testing.T) {
	ts := startTestServer(t)
	reqs := []Request{NewRequest("POST", ts.addr, "/ok", []byte(`{}`))}
	res, err := Run(context.Background(), Config{Addr: ts.addr, Requests: reqs, Connections: 3,
		Duration: time.Minute, MaxRequests: 300})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests < 300 || res.Requests > 300+3 {
		t.Errorf("Requests = %d; want 300 (+ at most one in flight per connection)", res.Requests)
	}
	if res.Seconds >= 60 {
		t.Errorf("Seconds = %v; want the run to stop at 300 requests", res.Seconds)
	}
}

func TestDialErrorsAreCounted(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	res, err := Run(context.Background(), Config{Addr: addr, Requests: []Request{NewRequest("GET", addr, "/", nil)},
		Connections: 2, Duration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors["dial: connection refused"] == 0 || len(res.Errors) != 1 || res.OK != 0 || res.Requests != 0 {
		t.Errorf("result = %+v; want only dial errors, connection refused", res)
	}
}

// TestOpenLoopShowsQueueing stalls the server for 300ms in the middle of
// a run. The open loop keeps its schedule, so every arrival during the
// stall waits for it and the figures show it; the closed loop stops
// sending while it waits, so only the requests in flight see it.
func TestOpenLoopShowsQueueing(t *testing.T) {
	ts := startTestServer(t)
	reqs := []Request{NewRequest("POST", ts.addr, "/ok", []byte(`{}`))}
	slow := func(mode Mode) int64 {
		t.Helper()
		go func() {
			time.Sleep(300 * time.Millisecond) // into the measured window
			ch := make(chan struct{})
			ts.stall.Store(&ch)
			time.Sleep(300 * time.Millisecond)
			ts.stall.Store(nil)
			close(ch)
		}()
		res, err := Run(context.Background(), Config{Addr: ts.addr, Requests: reqs, Mode: mode,
			Connections: 2, Rate: 200, Warmup: 100 * time.Millisecond, Duration: 900 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if mode == Open && (res.Offered != 200 || res.Errors["unsent"] != 0) {
			t.Errorf("open loop offered %v, unsent %d; want 200 and none", res.Offered, res.Errors["unsent"])
		}
		n, served := slowAnswers(res.Latency), slowAnswers(res.Service)
		t.Logf("%v loop: %d requests, %d waited ≥100ms (%d from their send), p99 %.1f ms, max %.1f ms", mode, res.Requests, n,
			served, float64(res.Latency.ValueAtQuantile(99))/1000, float64(res.Latency.Max())/1000)
		if res.Service.TotalCount() != res.Latency.TotalCount() {
			t.Errorf("%v loop: %d service latencies, %d latencies; want one of each per answer", mode, res.Service.TotalCount(), res.Latency.TotalCount())
		}
		// From their send, only the requests in flight when the stall
		// began waited: one per connection (the stall may catch a
		// connection twice at its edges).
		if served > 4 {
			t.Errorf("%v loop: %d requests waited ≥100ms from their send; want at most the 2 connections' requests in flight", mode, served)
		}
		return n
	}
	open := slow(Open)
	closed := slow(Closed)
	// About 200 req/s × 0.2s of arrivals wait 100ms or more in the open loop.
	if open < 20 {
		t.Errorf("open loop: %d requests waited ≥100ms; want the stall's arrivals (about 40) to show queueing", open)
	}
	if closed >= open {
		t.Errorf("closed loop saw %d slow requests, open loop %d; want the open loop to show more", closed, open)
	}
}

// slowAnswers counts the latencies of h of 100 ms or more.
func slowAnswers(h *hdrhistogram.Histogram) int64 {
	n := int64(0)
	for _, b := range h.Distribution() {
		if b.From >= 100_000 {
			n += b.Count
		}
	}
	return n
}

// TestWindowStretchesToLastAnswer stalls the server across the end of the
// measured window: the request sent before the end is answered after it,
// and throughput is counted over the time it took to answer.
func TestWindowStretchesToLastAnswer(t *testing.T) {
	ts := startTestServer(t)
	reqs := []Request{NewRequest("POST", ts.addr, "/ok", []byte(`{}`))}
	ch := make(chan struct{})
	go func() {
		time.Sleep(150 * time.Millisecond)
		ts.stall.Store(&ch)
		time.Sleep(500 * time.Millisecond) // until ~350 ms past the window's end
		ts.stall.Store(nil)
		close(ch)
	}()
	res, err := Run(context.Background(), Config{Addr: ts.addr, Requests: reqs, Connections: 1, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Seconds < 0.45 {
		t.Errorf("Seconds = %.3f; want the window stretched to the answer that came ~0.65 s after the start", res.Seconds)
	}
}

// TestSwitchback: a switchback run sends each block's requests to its
// arm's path, and files each arm's answers apart, without the settling
// start of each block.
func TestSwitchback(t *testing.T) {
	ts := startTestServer(t)
	ok := []Request{NewRequest("POST", ts.addr, "/ok", []byte(`{}`))}
	slow := []Request{NewRequest("POST", ts.addr, "/slow", []byte(`{}`))}
	sw := &Switch{Requests: slow, Block: 50 * time.Millisecond, Settle: 10 * time.Millisecond}
	res, err := Run(context.Background(), Config{Addr: ts.addr, Requests: ok, Mode: Open, Connections: 16, Rate: 400,
		Poisson: true, Warmup: 100 * time.Millisecond, Duration: time.Second, Switch: sw})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Arms) != 2 {
		t.Fatalf("%d arms; want 2", len(res.Arms))
	}
	a0, a1 := res.Arms[0], res.Arms[1]
	t.Logf("%d requests; arm 0 %d (p50 %d µs), arm 1 %d (min %d µs); %d sent to /slow", res.Requests, a0.Requests,
		a0.Service.ValueAtQuantile(50), a1.Requests, a1.Service.Min(), ts.slow.Load())
	if a0.Requests == 0 || a1.Requests == 0 || a0.Latency.TotalCount() != a0.Requests || a1.Service.TotalCount() != a1.Requests {
		t.Fatalf("arms of %d and %d requests (latencies %d, %d); want both arms measured, a latency per request", a0.Requests, a1.Requests, a0.Latency.TotalCount(), a1.Service.TotalCount())
	}
	if m := a1.Service.Min(); m < 20_000 {
		t.Errorf("arm 1's fastest answer took %d µs; want every one from /slow (20 ms)", m)
	}
	if p := a0.Service.ValueAtQuantile(50); p >= 20_000 {
		t.Errorf("arm 0's p50 = %d µs; want its requests sent to /ok, not /slow (20 ms)", p)
	}
	// A block's first 10 ms of 50 settle: the arms hold about 80 % of
	// the measured answers, and never all of them.
	if n := a0.Requests + a1.Requests; n >= res.Requests || float64(n) < 0.6*float64(res.Requests) {
		t.Errorf("arms hold %d of %d answers; want about 80 %% (settling times left out)", n, res.Requests)
	}
	if s := ts.slow.Load(); s < a1.Requests {
		t.Errorf("/slow served %d requests, fewer than arm 1's %d", s, a1.Requests)
	}

	for _, bad := range []Config{
		{Addr: ts.addr, Requests: ok, Mode: Closed, Connections: 1, Duration: time.Second, Switch: sw},
		{Addr: ts.addr, Requests: ok, Mode: Open, Rate: 1, Connections: 1, Duration: time.Second, NewConn: func(int) Conn { return nil },
			Switch: &Switch{Requests: slow, Block: time.Second, Addr: ts.addr}},
		{Addr: ts.addr, Requests: ok, Mode: Open, Rate: 1, Connections: 1, Duration: time.Second, Switch: &Switch{Block: time.Second}},
		{Addr: ts.addr, Requests: ok, Mode: Open, Rate: 1, Connections: 1, Duration: time.Second, Switch: &Switch{Requests: slow, Block: time.Second, Settle: time.Second}},
	} {
		if _, err := Run(context.Background(), bad); err == nil {
			t.Errorf("Run with switch %+v in a %v loop = nil error; want one", *bad.Switch, bad.Mode)
		}
	}
}

// TestSwitchbackAddr: with Switch.Addr, arm 1's requests go to that
// server and arm 0's to the run's.
func TestSwitchbackAddr(t *testing.T) {
	ts0, ts1 := startTestServer(t), startTestServer(t)
	ok := []Request{NewRequest("POST", ts0.addr, "/ok", []byte(`{}`))}
	sw := &Switch{Requests: ok, Block: 50 * time.Millisecond, Settle: 10 * time.Millisecond, Addr: ts1.addr}
	res, err := Run(context.Background(), Config{Addr: ts0.addr, Requests: ok, Mode: Open, Connections: 4, Rate: 400,
		Poisson: true, Warmup: 100 * time.Millisecond, Duration: time.Second, Switch: sw})
	if err != nil {
		t.Fatal(err)
	}
	a0, a1 := res.Arms[0], res.Arms[1]
	n0, n1 := ts0.count.Load(), ts1.count.Load()
	t.Logf("arm 0 %d, arm 1 %d measured; servers answered %d and %d", a0.Requests, a1.Requests, n0, n1)
	if a0.Requests == 0 || a1.Requests == 0 || n0 < a0.Requests || n1 < a1.Requests {
		t.Errorf("arms of %d and %d requests, servers answered %d and %d; want each arm's requests on its own server", a0.Requests, a1.Requests, n0, n1)
	}
	if total := n0 + n1; n0 > total*3/4 || n1 > total*3/4 {
		t.Errorf("servers answered %d and %d; want about half each", n0, n1)
	}
}
