package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"strconv"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/coalesce-ml/coalesce/bench/grpcload"
	"github.com/coalesce-ml/coalesce/bench/loadgen"
	"github.com/coalesce-ml/coalesce/bench/report"
	"github.com/coalesce-ml/coalesce/bench/targets"
)

// server is what a measurement needs to know of a server under test.
type server struct {
	name       string
	addr       string // host:port
	pid        int    // 0 = unknown: no server CPU figures
	metricsURL string // "" = no server view
}

func fromTarget(t *targets.Target) server {
	return server{name: t.Name, addr: t.Addr, pid: t.PID, metricsURL: t.MetricsURL}
}

// load is one measurement's traffic and load level.
type load struct {
	scenario, protocol string
	reqs               []loadgen.Request
	mode               loadgen.Mode
	level              float64 // connections, or requests/s
	conns              int     // open loop: connections
	poisson            bool
	warmup, duration   time.Duration
	maxRequests        int64
	rep                int
	// grpc, when set, sends reqs as gRPC calls (bench/grpcload) on
	// channels made for this run; Channels 0 means one per connection.
	grpc *grpcload.Config
	// sw, when set, makes an open loop a switchback run between reqs
	// (arm 0) and sw.Requests (arm 1).
	sw *loadgen.Switch
}

// measure runs one load against one server and returns its figures,
// with the server's CPU and /metrics deltas when it exposes them.
func measure(ctx context.Context, s server, l load, progress io.Writer) (report.Run, error) {
	cfg := loadgen.Config{
		Addr: s.addr, Requests: l.reqs, Mode: l.mode,
		Warmup: l.warmup, Duration: l.duration, MaxRequests: l.maxRequests,
		Timeout: 5 * time.Second, Progress: progress, Seed: uint64(l.rep) + 1,
		Label: fmt.Sprintf("%s %s %s=%s #%d", s.name, l.scenario, levelWord(l.mode), strconv.FormatFloat(l.level, 'f', -1, 64), l.rep+1),
	}
	if l.mode == loadgen.Open {
		cfg.Rate, cfg.Connections, cfg.Poisson = l.level, l.conns, l.poisson
	} else {
		cfg.Connections = int(l.level)
	}
	cfg.Switch = l.sw
	if l.grpc != nil {
		gc := *l.grpc
		if gc.Channels == 0 {
			gc.Channels = cfg.Connections
		}
		gc.Channels = min(gc.Channels, cfg.Connections)
		c, err := grpcload.New(gc)
		if err != nil {
			return report.Run{}, err
		}
		defer c.Close()
		cfg.NewConn = c.Conn
	}
	// Server-side figures are taken when the warm-up ends, so that they
	// cover the measured window only.
	var before *targets.Metrics
	cpu0 := -1.0
	cfg.MeasureStart = func() {
		if s.metricsURL != "" {
			if m, err := targets.Scrape(ctx, s.metricsURL); err == nil { // a missing view is not fatal
				before = &m
			}
		}
		if s.pid > 0 {
			if c, err := targets.CPUSeconds(s.pid); err == nil {
				cpu0 = c
			}
		}
	}
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return report.Run{}, err
	}
	run := report.Run{
		Target: s.name, Scenario: l.scenario, Protocol: l.protocol, Mode: l.mode.String(),
		Level: l.level, Rep: l.rep, Seconds: res.Seconds, Requests: res.Requests, OK: res.OK,
		Shed: res.Shed, Errors: res.Errors, Throughput: res.Throughput(), Offered: res.Offered,
		ClientCPU: res.ClientCPU, ServerCPU: -1,
	}
	if len(run.Errors) == 0 {
		run.Errors = nil
	}
	run.Latency = latencyOf(res.Latency)
	run.ServiceLatency = latencyOf(res.Service)
	run.ShedLatency = latencyOf(res.ShedLatency)
	for i, a := range res.Arms {
		reqs, addr := l.reqs, ""
		if i == 1 {
			reqs, addr = l.sw.Requests, l.sw.Addr
		}
		run.Arms = append(run.Arms, report.Arm{Addr: addr, Path: reqs[0].Path, Requests: a.Requests, Latency: latencyOf(a.Latency), ServiceLatency: latencyOf(a.Service)})
	}
	if cpu0 >= 0 {
		if c, err := targets.CPUSeconds(s.pid); err == nil {
			run.ServerCPU = c - cpu0
		}
	}
	if before != nil {
		if after, err := targets.Scrape(ctx, s.metricsURL); err == nil {
			run.Server = maps.Clone(targets.Summary(targets.Delta(*before, after)))
		}
	}
	return run, nil
}

func levelWord(m loadgen.Mode) string {
	if m == loadgen.Open {
		return "rate"
	}
	return "c"
}

// latencyOf summarises a latency histogram for a report.
func latencyOf(h *hdrhistogram.Histogram) report.Latency {
	p := loadgen.Summarize(h)
	return report.Latency{P50: p.P50, P90: p.P90, P99: p.P99, P999: p.P999, Max: p.Max, Mean: p.Mean}
}
