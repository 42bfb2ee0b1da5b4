// Package loadgen generates HTTP load and measures latency honestly.
//
// Two load models: a closed loop (N connections, each sends its next
// request when the previous answer arrives, like wrk) and an open loop (a
// constant or Poisson arrival rate spread over N connections; latency is
// measured from each request's intended send time, so a server that
// stalls shows its queueing delay instead of hiding it: no coordinated
// omission, like wrk2). A warm-up period is excluded from the figures, and
// every run is bounded in time and request count.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Mode is a load model.
type Mode int

// The load models.
const (
	Closed Mode = iota // N connections, each waits for its answer
	Open               // requests arrive at a set rate, whatever the answers do
)

func (m Mode) String() string {
	if m == Open {
		return "open"
	}
	return "closed"
}

// Config describes one run. The zero value of an optional field says what
// it does.
type Config struct {
	Addr string // host:port
	// Requests is the mix to send; connection i starts at a different
	// offset and walks it in order, so connections send different bodies.
	Requests    []Request
	Mode        Mode
	Connections int // at least 1
	// Rate is the total arrival rate in requests/s (open loop only).
	Rate float64
	// Poisson draws exponential gaps between arrivals instead of a
	// constant interval (open loop only).
	Poisson  bool
	Warmup   time.Duration // sent but not measured
	Duration time.Duration // measured; must be positive
	// MaxRequests stops the run once this many requests were measured;
	// 0 means no limit other than Duration.
	MaxRequests int64
	// Timeout bounds each request; 0 means 10s.
	Timeout time.Duration
	// Drain is how long an open loop that fell behind may keep sending its
	// backlog after Duration; requests still unsent then are counted as
	// errors "unsent". 0 means 2s.
	Drain time.Duration
	// Progress receives a live line every second; nil means none.
	Progress io.Writer
	Label    string // shown in the progress line
	Seed     uint64 // for Poisson gaps
	// NewConn, when set, makes worker i's connection instead of the
	// built-in HTTP/1.1 one to Addr (e.g. a gRPC stream, package
	// bench/grpcload); Run closes each. Its Do gets the request's deadline
	// and must return by it.
	NewConn func(i int) Conn
	// MeasureStart, when set, is called once when the warm-up ends (on
	// its own goroutine), so that a caller can snapshot server-side
	// counters, and the measured window begins when it returns: a scrape
	// of /metrics takes milliseconds, in which a fast server answers
	// hundreds of requests that would otherwise count on the client but
	// fall before the server's snapshot. Requests sent while it runs are
	// warm-up.
	MeasureStart func()
	// Switch, when set, makes an open loop a switchback experiment (see
	// Switch).
	Switch *Switch
}

// Switch alternates an open loop between two arms in blocks of time, so
// that a comparison of two servers' or two models' latencies sees the
// same machine: noise that lasts longer than a block (another process, a
// neighbour on the host) falls on both arms alike, where runs of one arm
// after the other each catch their own. The request intended at offset t
// from the run's start belongs to arm (t / Block) mod 2: arm 0 sends from
// Config.Requests, arm 1 from Switch.Requests. A request intended within
// Settle of its block's start is sent but left out of the arms' figures
// (it may still feel the other arm's after-effects: a shadow's queued
// work, a cache); every request counts in Result's other figures. With
// Addr set, arm 1's requests go to that server instead (each worker then
// holds a connection to both): two processes compared on the same
// machine, e.g. a server with a shadow against one without.
type Switch struct {
	Requests      []Request
	Block, Settle time.Duration
	Addr          string // arm 1's server; "" means Config.Addr
}

// Arm is one arm's figures in a switchback run (Config.Switch): its
// answered measured requests outside the settling time, their latency
// from the intended send time and from the send.
type Arm struct {
	Requests         int64
	Latency, Service *hdrhistogram.Histogram
}

// Result holds the figures of one run.
type Result struct {
	// Seconds is the measured window, stretched to the last answer of a
	// request sent within it when that came later.
	Seconds  float64
	Requests int64 // answered within the window, any status
	OK       int64 // 2xx
	Shed     int64 // 429 and 503
	// Errors counts other outcomes: status codes ("500"), the cause of
	// requests that got no answer (errorKind: "dial: connection refused",
	// "net: timeout", ...), and "unsent" for open-loop arrivals that could
	// not be sent in time.
	Errors map[string]int64
	// Latency of every answered request, in microseconds (open loop: from
	// the intended send time).
	Latency *hdrhistogram.Histogram
	// Service is the same answers' latency from the moment each request
	// was sent, in microseconds: in a closed loop the same as Latency; in
	// an open loop it leaves out the client's own lateness (a Go timer
	// sleeping under a millisecond may fire up to ~1 ms late when the
	// process is idle) and any wait behind the connection's previous
	// request, so it is the server's and the network's part alone, and
	// hides coordinated omission: read it only next to Latency.
	Service *hdrhistogram.Histogram
	// ShedLatency holds the 429 and 503 answers alone: how fast the server
	// refused load.
	ShedLatency *hdrhistogram.Histogram
	Offered     float64 // open loop: intended arrivals per second
	ClientCPU   float64 // seconds of CPU this process used during the run
	// Arms holds a switchback run's two arms (Config.Switch); nil
	// otherwise.
	Arms []Arm
}

// Throughput returns OK answers per second.
func (r *Result) Throughput() float64 {
	if r.Seconds <= 0 {
		return 0
	}
	return float64(r.OK) / r.Seconds
}

// Latency histograms track 1µs to 100s with 3 significant figures.
const maxLatencyUS = 100_000_000

// NewHistogram returns an empty latency histogram in microseconds.
func NewHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(1, maxLatencyUS, 3) }

// Conn sends the requests of one worker, one at a time: Run calls Do
// only from the worker's goroutine.
type Conn interface {
	// Do sends req and waits for its answer until deadline. It returns
	// the answer's status as an HTTP status (a gRPC front end maps its
	// codes: ResourceExhausted 429, Unavailable 503, ...; 2xx is a
	// success, 429 and 503 are shed load), or 0 and the error when no
	// answer came; a *DialError when nothing could be sent.
	Do(req *Request, deadline time.Time) (status int, err error)
	// Close releases the connection; Run calls it once, when the worker
	// is done.
	Close()
}

// httpConn is the built-in Conn: a lean HTTP/1.1 connection.
type httpConn struct {
	conn
	slack time.Duration
}

func (c *httpConn) Do(req *Request, deadline time.Time) (int, error) {
	return c.do(req, deadline, c.slack)
}

func (c *httpConn) Close() { c.close() }

// worker is one connection's state and figures.
type worker struct {
	c  Conn
	c1 Conn // a switchback run's arm 1 when Switch.Addr is set (otherwise c)

	mu       sync.Mutex // guards the fields below; the progress line reads them
	hist     *hdrhistogram.Histogram
	service  *hdrhistogram.Histogram
	shedHist *hdrhistogram.Histogram
	interval *hdrhistogram.Histogram // since the last progress line
	requests int64
	ok, shed int64
	errors   map[string]int64
	lastEnd  time.Time // when the last measured answer arrived
	arms     [2]Arm    // switchback runs only
}

// run is the shared state of one Run.
type run struct {
	cfg Config
	// windowStart and windowEnd bound the measured window in UnixNano;
	// both are math.MaxInt64 (nothing measured, no end) until it begins.
	// windowEnd is stored before windowStart and read after it.
	windowStart, windowEnd atomic.Int64
	stop                   atomic.Bool
	measured               atomic.Int64
	stopAt                 atomic.Int64 // UnixNano when MaxRequests was reached
	timeout, drain         time.Duration
}

// window returns the measured window; both ends are in 2262 until it
// begins.
func (r *run) window() (start, end time.Time) {
	start = time.Unix(0, r.windowStart.Load())
	return start, time.Unix(0, r.windowEnd.Load())
}

// Run performs one run and returns its figures. It returns early, with
// the figures so far, when ctx ends.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := check(&cfg); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, timeout: cfg.Timeout, drain: cfg.Drain}
	if r.timeout == 0 {
		r.timeout = 10 * time.Second
	}
	if r.drain == 0 {
		r.drain = 2 * time.Second
	}
	workers := make([]*worker, cfg.Connections)
	for i := range workers {
		var c Conn = &httpConn{conn: conn{addr: cfg.Addr}, slack: r.timeout / 4}
		if cfg.NewConn != nil {
			c = cfg.NewConn(i)
		}
		workers[i] = &worker{c: c, c1: c, hist: NewHistogram(), service: NewHistogram(), shedHist: NewHistogram(), interval: NewHistogram(), errors: map[string]int64{}}
		if sw := cfg.Switch; sw != nil {
			if sw.Addr != "" {
				workers[i].c1 = &httpConn{conn: conn{addr: sw.Addr}, slack: r.timeout / 4}
			}
			for a := range workers[i].arms {
				workers[i].arms[a] = Arm{Latency: NewHistogram(), Service: NewHistogram()}
			}
		}
	}
	cpu0 := cpuSeconds()
	start := time.Now()
	r.windowStart.Store(math.MaxInt64)
	r.windowEnd.Store(math.MaxInt64)
	begin := func(at time.Time) {
		r.windowEnd.Store(at.Add(cfg.Duration).UnixNano())
		r.windowStart.Store(at.UnixNano())
	}
	if cfg.MeasureStart == nil {
		begin(start.Add(cfg.Warmup))
	}

	stopCtx := context.AfterFunc(ctx, func() { r.stop.Store(true) })
	defer stopCtx()
	var hook sync.WaitGroup // MeasureStart has returned
	if cfg.MeasureStart != nil {
		hook.Add(1)
		t := time.AfterFunc(time.Until(start.Add(cfg.Warmup)), func() {
			defer hook.Done()
			cfg.MeasureStart()
			begin(time.Now())
		})
		defer func() {
			if t.Stop() { // never ran: the run was cancelled during warm-up
				hook.Done()
			}
			hook.Wait()
		}()
	}
	done := make(chan struct{}) // closed when every worker returned
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.c.Close()
			if w.c1 != w.c {
				defer w.c1.Close()
			}
			if cfg.Mode == Open {
				r.open(i, w, start)
			} else {
				r.closed(i, w)
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	if cfg.Progress != nil {
		r.progress(workers, done)
	}
	<-done

	res := &Result{Latency: NewHistogram(), Service: NewHistogram(), ShedLatency: NewHistogram(), Errors: map[string]int64{}, ClientCPU: cpuSeconds() - cpu0}
	if cfg.Switch != nil {
		res.Arms = []Arm{{Latency: NewHistogram(), Service: NewHistogram()}, {Latency: NewHistogram(), Service: NewHistogram()}}
	}
	var lastEnd time.Time
	for _, w := range workers {
		for a := range res.Arms {
			res.Arms[a].Requests += w.arms[a].Requests
			res.Arms[a].Latency.Merge(w.arms[a].Latency)
			res.Arms[a].Service.Merge(w.arms[a].Service)
		}
		if w.lastEnd.After(lastEnd) {
			lastEnd = w.lastEnd
		}
		res.Latency.Merge(w.hist)
		res.Service.Merge(w.service)
		res.ShedLatency.Merge(w.shedHist)
		res.Requests += w.requests
		res.OK += w.ok
		res.Shed += w.shed
		for k, v := range w.errors {
			res.Errors[k] += v
		}
	}
	measureStart, end := r.window()
	if at := r.stopAt.Load(); at != 0 && time.Unix(0, at).Before(end) {
		end = time.Unix(0, at)
	}
	if now := time.Now(); now.Before(end) { // cancelled early
		end = now
	}
	// Answers that arrive after the window (an open loop that fell
	// behind) stretch it: throughput is what was answered per second of
	// answering, never more than the server really delivered.
	if lastEnd.After(end) && r.stopAt.Load() == 0 {
		end = lastEnd
	}
	res.Seconds = end.Sub(measureStart).Seconds()
	if res.Seconds < 0 {
		res.Seconds = 0
	}
	if cfg.Mode == Open {
		res.Offered = cfg.Rate
	}
	return res, ctx.Err()
}

func check(cfg *Config) error {
	switch {
	case cfg.Addr == "":
		return errors.New("loadgen: no address")
	case len(cfg.Requests) == 0:
		return errors.New("loadgen: no requests to send")
	case cfg.Connections < 1:
		return fmt.Errorf("loadgen: %d connections; want at least 1", cfg.Connections)
	case cfg.Duration <= 0:
		return errors.New("loadgen: duration must be positive")
	case cfg.Mode == Open && !(cfg.Rate > 0):
		return errors.New("loadgen: open loop needs a positive rate")
	case cfg.Switch == nil:
	case cfg.Mode != Open:
		return errors.New("loadgen: a switchback run needs an open loop")
	case len(cfg.Switch.Requests) == 0:
		return errors.New("loadgen: a switchback run needs arm 1's requests")
	case cfg.Switch.Addr != "" && cfg.NewConn != nil:
		return errors.New("loadgen: a switchback run to a second address needs the built-in HTTP connections")
	case cfg.Switch.Block <= 0 || cfg.Switch.Settle < 0 || cfg.Switch.Settle >= cfg.Switch.Block:
		return fmt.Errorf("loadgen: switchback block %v, settle %v; want a positive block longer than the settling time", cfg.Switch.Block, cfg.Switch.Settle)
	}
	return nil
}

// closed runs connection i of a closed loop: send, wait for the answer,
// send the next, until the window ends.
func (r *run) closed(i int, w *worker) {
	n := len(r.cfg.Requests)
	idx := i * n / r.cfg.Connections
	for !r.stop.Load() {
		t0 := time.Now()
		if _, end := r.window(); !t0.Before(end) {
			return
		}
		req := &r.cfg.Requests[idx%n]
		idx++
		status, err := w.c.Do(req, t0.Add(r.timeout))
		r.record(w, t0, t0, time.Now(), status, err, -1)
		var de *DialError
		if errors.As(err, &de) {
			pause(time.Millisecond) // the server is not listening: don't spin
		}
	}
}

// open runs connection i of an open loop. Its arrivals are a share of the
// total rate, phase-shifted so that connections interleave; a request is
// sent at its intended time or, when the connection is behind, at once,
// and its latency counts from the intended time.
func (r *run) open(i int, w *worker, start time.Time) {
	n := len(r.cfg.Requests)
	idx := i * n / r.cfg.Connections
	perConn := r.cfg.Rate / float64(r.cfg.Connections)
	rng := rand.New(rand.NewPCG(r.cfg.Seed, uint64(i)))
	gap := func() time.Duration {
		if r.cfg.Poisson {
			return time.Duration(rng.ExpFloat64() / perConn * float64(time.Second))
		}
		return time.Duration(float64(time.Second) / perConn)
	}
	next := start.Add(time.Duration(float64(i) / r.cfg.Rate * float64(time.Second)))
	if r.cfg.Poisson {
		next = start.Add(gap())
	}
	for _, end := r.window(); next.Before(end); _, end = r.window() {
		if r.stop.Load() {
			return
		}
		now := time.Now()
		if now.Before(next) {
			pause(next.Sub(now))
		} else if now.After(end.Add(r.drain)) {
			// Too far behind: count what is left of the schedule as unsent.
			unsent := int64(0)
			begin, _ := r.window()
			for ; next.Before(end); next = next.Add(gap()) {
				if !next.Before(begin) {
					unsent++
				}
			}
			w.mu.Lock()
			w.errors["unsent"] += unsent
			w.mu.Unlock()
			return
		}
		req, arm, c := &r.cfg.Requests[idx%n], -1, w.c
		if sw := r.cfg.Switch; sw != nil {
			off := next.Sub(start)
			block := int(off/sw.Block) % 2
			if block == 1 {
				req, c = &sw.Requests[idx%len(sw.Requests)], w.c1
			}
			if off%sw.Block >= sw.Settle {
				arm = block
			}
		}
		idx++
		sent := time.Now()
		status, err := c.Do(req, sent.Add(r.timeout))
		r.record(w, next, sent, time.Now(), status, err, arm)
		next = next.Add(gap())
	}
}

// record files one outcome under w: a request meant to leave at intended,
// sent at sent, answered (or failed) at end, of a switchback run's arm
// (-1: none, or settling). Only requests whose intended time falls in the
// measured window count; every answer feeds the live line.
func (r *run) record(w *worker, intended, sent, end time.Time, status int, err error, arm int) {
	us := clampUS(end.Sub(intended))
	answered := err == nil || status > 0
	from, to := r.window()
	measured := !intended.Before(from) && intended.Before(to)
	w.mu.Lock()
	if answered {
		w.interval.RecordValue(us)
	}
	if !measured {
		w.mu.Unlock()
		return
	}
	switch {
	case answered:
		w.requests++
		w.hist.RecordValue(us)
		w.service.RecordValue(clampUS(end.Sub(sent)))
		if arm >= 0 {
			a := &w.arms[arm]
			a.Requests++
			a.Latency.RecordValue(us)
			a.Service.RecordValue(clampUS(end.Sub(sent)))
		}
		if end.After(w.lastEnd) {
			w.lastEnd = end
		}
		switch {
		case status >= 200 && status < 300:
			w.ok++
		case status == 429 || status == 503:
			w.shed++
			w.shedHist.RecordValue(us)
		default:
			w.errors[strconv.Itoa(status)]++
		}
	default:
		w.errors[errorKind(err)]++
	}
	w.mu.Unlock()
	if m := r.cfg.MaxRequests; m > 0 && r.measured.Add(1) == m {
		r.stopAt.Store(time.Now().UnixNano())
		r.stop.Store(true)
	}
}

// clampUS returns d in whole microseconds, within what a latency
// histogram holds.
func clampUS(d time.Duration) int64 {
	return min(max(d.Microseconds(), 1), maxLatencyUS)
}

// errorKind names the cause of a request that got no answer, from a
// small set so that the counts stay few: "dial: connection refused",
// "timeout", "net: connection reset by peer", "net: EOF",
// "malformed response", ...
func errorKind(err error) string {
	var de *DialError
	var ne net.Error
	var dns *net.DNSError
	var errno syscall.Errno
	prefix := "net"
	if errors.As(err, &de) {
		prefix = "dial"
	}
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return prefix + ": timeout"
	case errors.As(err, &dns):
		if dns.IsNotFound {
			return prefix + ": no such host"
		}
		return prefix + ": DNS lookup failed"
	case errors.As(err, &errno):
		return prefix + ": " + errno.Error()
	case errors.Is(err, errMalformed):
		return "malformed response"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return prefix + ": unexpected EOF (connection closed mid-response)"
	case errors.Is(err, io.EOF):
		return prefix + ": EOF (connection closed before a response)"
	}
	return prefix + ": other error"
}

// progress writes a live line every second until done is closed.
func (r *run) progress(workers []*worker, done <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	merged := NewHistogram()
	start := time.Now()
	last := start
	for {
		select {
		case <-done:
			fmt.Fprintln(r.cfg.Progress)
			return
		case now := <-tick.C:
			merged.Reset()
			for _, w := range workers {
				w.mu.Lock()
				merged.Merge(w.interval)
				w.interval.Reset()
				w.mu.Unlock()
			}
			phase := "measure"
			if start, _ := r.window(); now.Before(start) {
				phase = "warm-up"
			}
			rps := float64(merged.TotalCount()) / now.Sub(last).Seconds()
			last = now
			fmt.Fprintf(r.cfg.Progress, "\r%-40s %5.1fs %-7s %9.0f req/s  p99 %8.3f ms   ",
				r.cfg.Label, now.Sub(start).Seconds(), phase, rps, float64(merged.ValueAtQuantile(99))/1000)
		}
	}
}

// pause sleeps for d.
func pause(d time.Duration) {
	t := time.NewTimer(d)
	<-t.C
}

// cpuSeconds returns the CPU time (user + system) this process used.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return math.NaN()
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// Percentiles are latency figures in microseconds.
type Percentiles struct {
	P50, P90, P99, P999, Max, Mean float64
}

// Summarize returns the percentiles of a latency histogram (zeros when it
// is empty). HDR histograms report the highest value equivalent to the
// bucket a percentile falls in, so figures are upper bounds within 0.1%.
func Summarize(h *hdrhistogram.Histogram) Percentiles {
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	return Percentiles{
		P50:  float64(h.ValueAtQuantile(50)),
		P90:  float64(h.ValueAtQuantile(90)),
		P99:  float64(h.ValueAtQuantile(99)),
		P999: float64(h.ValueAtQuantile(99.9)),
		Max:  float64(h.Max()),
		Mean: h.Mean(),
	}
}
