package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/bench/report"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/grpcserver"
	"github.com/coalesce-ml/coalesce/internal/app"
	"github.com/coalesce-ml/coalesce/proxy"
)

// TestRunGRPC measures a real gRPC front end (grpcserver on a
// proxy.Server serving ../models) with bench run -protocol grpc and
// grpc-typed, over one shared channel and one per stream, with grpc-go's
// client and the lean one, and checks that
// the report holds successful calls under the protocol's name.
func TestRunGRPC(t *testing.T) {
	cfg := config.Default()
	cfg.Models.Repository = modelsDir
	cfg.HTTP.RequestTimeout = 10 * time.Second
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg, err := backends.LoadRepository(modelsDir, app.Loaders(&cfg, metrics.NewSet(), log))
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(&cfg, "test", reg, metrics.NewSet(), log)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background()) //nolint:errcheck // test teardown
	g := grpcserver.New(&cfg, p)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(ln) //nolint:errcheck // returns at Stop
	defer g.Stop()
	for _, args := range [][]string{
		{"-protocol", "grpc"},
		{"-protocol", "grpc", "-grpc-conns", "0", "-grpc-window", "1048576"},
		{"-protocol", "grpc-typed", "-grpc-conns", "2"},
		{"-protocol", "grpc", "-grpc-client", "lean"},
		{"-protocol", "grpc-typed", "-grpc-client", "lean", "-grpc-conns", "0"},
	} {
		out := t.TempDir()
		err := runCmd(context.Background(), append(args, "-addr", ln.Addr().String(), "-models", modelsDir, "-c", "1,4",
			"-warmup", "50ms", "-d", "300ms", "-n", "300", "-out", out))
		if err != nil {
			t.Fatalf("bench run %v: %v", args, err)
		}
		files, _ := filepath.Glob(filepath.Join(out, "*", "results.json"))
		if len(files) != 1 {
			t.Fatalf("bench run %v wrote %v; want one results.json", args, files)
		}
		raw, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		var r report.Report
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatal(err)
		}
		if len(r.Runs) != 2 {
			t.Fatalf("bench run %v: %d runs; want 2 (c=1, c=4)", args, len(r.Runs))
		}
		for _, run := range r.Runs {
			if run.Protocol != args[1] || run.OK == 0 || run.OK != run.Requests || run.Latency.P50 <= 0 {
				t.Errorf("bench run %v: run %+v; want every call of protocol %s answered, with latencies", args, run, args[1])
			}
		}
	}
}
