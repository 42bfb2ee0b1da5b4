package grpcserver_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/VictoriaMetrics/metrics"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/grpcserver"
	"github.com/coalesce-ml/coalesce/internal/app"
	"github.com/coalesce-ml/coalesce/proto/inferencepb"
	"github.com/coalesce-ml/coalesce/proxy"
)

// Serve the shipped models over gRPC and classify one iris flower.
func Example() {
	cfg := config.Default()
	cfg.Models.Repository = "../models"
	set, log := metrics.NewSet(), slog.New(slog.DiscardHandler)
	reg, err := backends.LoadRepository(cfg.Models.Repository, app.Loaders(&cfg, set, log))
	if err != nil {
		panic(err)
	}
	p, err := proxy.New(&cfg, "example", reg, set, log)
	if err != nil {
		panic(err)
	}
	defer p.Close(context.Background())
	g := grpcserver.New(&cfg, p)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go g.Serve(ln) //nolint:errcheck // returns at Shutdown
	defer g.Shutdown(context.Background())

	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	resp, err := inferencepb.NewGRPCInferenceServiceClient(conn).ModelInfer(context.Background(), &inferencepb.ModelInferRequest{
		ModelName: "iris-logreg",
		Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 4},
			Contents: &inferencepb.InferTensorContents{Fp32Contents: []float32{6.3, 3.3, 6.0, 2.5}}}},
		Outputs: []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{{Name: "label"}},
	})
	if err != nil {
		panic(err)
	}
	out := resp.GetOutputs()[0]
	fmt.Println(resp.GetModelName(), resp.GetModelVersion(), out.GetName(), out.GetDatatype(), out.GetShape(), out.GetContents().GetInt64Contents())
	// Output: iris-logreg 1 label INT64 [1] [2]
}
