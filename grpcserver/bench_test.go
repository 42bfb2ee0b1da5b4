package grpcserver_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/proto/inferencepb"
)

// BenchmarkModelInfer compares one row of digits-mlp over gRPC ModelInfer
// (raw and typed contents) with HTTP V2 binary tensors, both over TCP on
// 127.0.0.1 into one server with the default batching: sequentially (one
// call at a time: latency) and from 64 goroutines (throughput; gRPC
// multiplexes them on one connection, HTTP/1.1 takes up to 64
// connections). Run the variants interleaved and compare medians:
//
//	go test -run '^$' -bench ModelInfer -benchmem -count 6 ./grpcserver
func BenchmarkModelInfer(b *testing.B) {
	cfg := shippedConfig()
	cfg.Batching = config.Default().Batching
	h := startShipped(b, cfg)
	g := readGoldenB(b, "digits-mlp")
	row := g.Data[:64]
	raw := golden{Name: g.Name, Datatype: g.Datatype, Shape: []int64{1, 64}, Data: row}.raw()
	rawReq := &inferencepb.ModelInferRequest{ModelName: "digits-mlp",
		Inputs:           []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 64}}},
		RawInputContents: [][]byte{raw}}
	typedReq := &inferencepb.ModelInferRequest{ModelName: "digits-mlp",
		Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 64},
			Contents: &inferencepb.InferTensorContents{Fp32Contents: row}}}}
	hdr := `{"parameters":{"binary_data_output":true},"inputs":[{"name":"input","datatype":"FP32","shape":[1,64],"parameters":{"binary_data_size":256}}]}`
	body := append([]byte(hdr), raw...)
	hdrLen := strconv.Itoa(len(hdr))
	uri := "http://" + h.http.Addr + "/v2/models/digits-mlp/infer"

	grpcCall := func(req *inferencepb.ModelInferRequest) func(b *testing.B) {
		return func(b *testing.B) {
			if _, err := h.infer.ModelInfer(context.Background(), req); err != nil {
				b.Fatal(err)
			}
		}
	}
	httpCall := func(b *testing.B) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.Header.SetMethod("POST")
		req.SetRequestURI(uri)
		req.Header.Set("Inference-Header-Content-Length", hdrLen)
		req.SetBody(body)
		if err := h.http.Do(req, resp); err != nil || resp.StatusCode() != 200 {
			b.Fatalf("HTTP: %v %d %s", err, resp.StatusCode(), resp.Body())
		}
	}
	variants := []struct {
		name string
		call func(*testing.B)
	}{
		{"grpc-raw", grpcCall(rawReq)},
		{"grpc-typed", grpcCall(typedReq)},
		{"http-v2-binary", httpCall},
	}
	for _, v := range variants {
		b.Run(v.name+"/c1", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v.call(b)
			}
		})
	}
	for _, v := range variants {
		b.Run(v.name+"/c64", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(max(1, 64/maxProcs()))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					v.call(b)
				}
			})
		})
	}
}
