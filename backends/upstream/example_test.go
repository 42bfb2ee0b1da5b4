package upstream_test

import (
	"fmt"
	"net"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/backends/upstream"
	"github.com/coalesce-ml/coalesce/config"
)

// A KServe V2 upstream with its tensors configured loads without waiting
// for its replicas; it is not ready until one answers its probe.
func ExampleNew() {
	cfg := config.UpstreamModel{
		Protocol:  config.ProtoKServeV2,
		Endpoints: []string{"http://10.0.0.5:8000", "http://10.0.0.6:8000"},
		Model:     "resnet",
		Inputs:    []config.TensorConfig{{Name: "x", DataType: "FP32", Dims: []int64{64}}},
		Outputs:   []config.TensorConfig{{Name: "y", DataType: "FP32", Dims: []int64{10}}},
	}
	p := config.DefaultUpstream()
	cfg.Client, cfg.Breaker, cfg.Ejection, cfg.Retry, cfg.Probe = p.Client, p.Breaker, p.Ejection, p.Retry, p.Probe
	if err := cfg.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	down := func(string) (net.Conn, error) { return nil, net.ErrClosed } // no network here
	b, err := upstream.New(&cfg, backends.LoadOptions{Model: "resnet", Version: "1", MaxBatchSize: 32}, upstream.Options{Dial: down})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()
	m := b.Metadata()
	fmt.Println(m.Platform, m.MaxBatchSize, m.Concurrency, m.Inputs[0].Shape, b.Ready())
	// Output: upstream_kserve-v2 32 8 [-1 64] false
}
