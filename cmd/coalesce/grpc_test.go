package main

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/coalesce-ml/coalesce/proto/inferencepb"
)

// TestGRPCServe runs the binary with grpc.addr: it serves the KServe V2
// gRPC API beside HTTP, turns its health NOT_SERVING on SIGTERM during
// the drain delay, and exits 0.
func TestGRPCServe(t *testing.T) {
	addr := freeAddr(t)
	s := startServer(t, "--grpc.addr", addr, "--shutdown.drain_delay", "2s")
	// The start-up line is written after the listeners serve, so the
	// readiness startServer waited for can come first.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(s.stdout.String(), `"grpc":"`+addr+`"`); {
		if time.Now().After(deadline) {
			t.Errorf("start-up log does not name the gRPC address %s: %s", addr, s.stdout)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := inferencepb.NewGRPCInferenceServiceClient(conn).ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "iris-logreg",
		Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 4},
			Contents: &inferencepb.InferTensorContents{Fp32Contents: []float32{6.3, 3.3, 6.0, 2.5}}}},
		Outputs: []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{{Name: "label"}}})
	if err != nil || len(resp.GetOutputs()) != 1 || resp.GetOutputs()[0].GetContents().GetInt64Contents()[0] != 2 {
		t.Fatalf("ModelInfer(iris-logreg) = %v, %v; want label 2", resp, err)
	}
	hc := healthpb.NewHealthClient(conn)
	if r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Health/Check = %v, %v; want SERVING", r, err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		}
		if err != nil {
			t.Fatalf("Health/Check during the drain delay: %v; want NOT_SERVING", err)
		}
		time.Sleep(10 * time.Millisecond) // polling the probe, as Kubernetes does
	}
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Fatal("no exit within 30s of SIGTERM")
	}
	if s.exitCode != 0 {
		t.Errorf("exit code %d after SIGTERM; want 0: %s", s.exitCode, s.stderr)
	}
}
