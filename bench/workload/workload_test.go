package workload

import (
	"bytes"
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/coalesce-ml/coalesce/bench/internal/inproc"
	"github.com/coalesce-ml/coalesce/bench/loadgen"
	"github.com/coalesce-ml/coalesce/proto/inferencepb"
)

const modelsDir = "../../models"

// TestEveryProtocolIsServed sends each protocol's pool, with a batch mix
// and repeats, to a real Coalesce server: every request must succeed.
func TestEveryProtocolIsServed(t *testing.T) {
	addr, _ := inproc.Start(t, modelsDir)
	for _, proto := range []string{Predict, V2JSON, V2Binary, TFS} {
		for _, model := range []string{"digits-mlp", "iris-logreg"} {
			reqs, err := Build(Spec{Model: model, ModelsDir: modelsDir, Protocol: proto, Batch: []int{1, 2, 5}, RepeatShare: 0.3, Count: 40}, addr)
			if err != nil {
				t.Fatal(err)
			}
			res, err := loadgen.Run(context.Background(), loadgen.Config{Addr: addr, Requests: reqs, Connections: 2,
				Duration: 10 * time.Second, MaxRequests: int64(len(reqs))})
			if err != nil {
				t.Fatal(err)
			}
			if res.OK != res.Requests || res.Requests < int64(len(reqs)) {
				t.Errorf("%s %s: %d OK of %d answered (errors %v); want all of %d", proto, model, res.OK, res.Requests, res.Errors, len(reqs))
			}
		}
	}
}

func TestRepeatShare(t *testing.T) {
	distinct := func(share float64) int {
		reqs, err := Build(Spec{Model: "digits-mlp", ModelsDir: modelsDir, Protocol: Predict, RepeatShare: share, Count: 400, Seed: 1}, "h")
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, r := range reqs {
			seen[string(r.Body)] = true
		}
		return len(seen)
	}
	if n := distinct(0); n != 400 {
		t.Errorf("share 0: %d distinct bodies of 400; want all distinct", n)
	}
	if n := distinct(1); n > HotSet {
		t.Errorf("share 1: %d distinct bodies; want at most the hot set of %d", n, HotSet)
	}
	if n := distinct(0.5); n < 150 || n > 250+HotSet {
		t.Errorf("share 0.5: %d distinct bodies of 400; want about 200 + the hot set", n)
	}
}

func TestBuildErrors(t *testing.T) {
	for _, spec := range []Spec{
		{Model: "digits-mlp", ModelsDir: modelsDir, Protocol: "thrift"},
		{Model: "nope", ModelsDir: modelsDir, Protocol: Predict},
		{Model: "digits-mlp", ModelsDir: modelsDir, Protocol: Predict, Batch: []int{0}},
		{Model: "digits-mlp", ModelsDir: modelsDir, Protocol: Predict, RepeatShare: 2},
	} {
		if _, err := Build(spec, "h"); err == nil {
			t.Errorf("Build(%+v) = nil error", spec)
		}
	}
	for _, p := range []string{GRPC, GRPCTyped} {
		reqs, err := Build(Spec{Model: "iris-logreg", ModelsDir: modelsDir, Protocol: p, Batch: []int{2}, Count: 1}, "h")
		if err != nil {
			t.Fatal(err)
		}
		var m inferencepb.ModelInferRequest
		if err := proto.Unmarshal(reqs[0].Body, &m); err != nil || reqs[0].Path != "/inference.GRPCInferenceService/ModelInfer" {
			t.Fatalf("%s request %s: %v", p, reqs[0].Path, err)
		}
		in := m.GetInputs()[0]
		n := len(m.GetRawInputContents())
		if p == GRPCTyped {
			n = len(in.GetContents().GetFp32Contents())
		} else if n == 1 {
			n = len(m.GetRawInputContents()[0])
		}
		want := 2 * 4 // 2 rows of 4 features: FP32 values, or their bytes / 4
		if p == GRPC {
			want *= 4
		}
		if m.GetModelName() != "iris-logreg" || in.GetName() != "input" || in.GetDatatype() != "FP32" || len(in.GetShape()) != 2 || in.GetShape()[0] != 2 || n != want {
			t.Errorf("%s request = %v; want 2 rows of iris-logreg's input (%d values or bytes)", p, &m, want)
		}
	}
	reqs, _ := Build(Spec{Model: "iris-logreg", ModelsDir: modelsDir, Protocol: Predict, Path: "/predict", Count: 1}, "h")
	if !bytes.HasPrefix(reqs[0].Body, []byte(`{"features":[`)) || reqs[0].Path != "/predict" {
		t.Errorf("predict request = %s %s", reqs[0].Path, reqs[0].Body)
	}
}
