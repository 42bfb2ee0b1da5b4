package grpcserver_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestGrpcurl runs README's grpcurl commands when grpcurl is installed
// (go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3): the
// listing through reflection, the health check and ModelInfer, without
// the proto file.
func TestGrpcurl(t *testing.T) {
	bin, err := exec.LookPath("grpcurl")
	if err != nil {
		t.Skip("grpcurl is not installed")
	}
	h := startShipped(t, shippedConfig())
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, append([]string{"-plaintext"}, append(args[:len(args)-1:len(args)-1], h.addr, args[len(args)-1])...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("grpcurl %v: %v\n%s", args, err, out)
		}
		return strings.Join(strings.Fields(string(out)), " ")
	}
	list := func() string {
		out, err := exec.Command(bin, "-plaintext", h.addr, "list").CombinedOutput()
		if err != nil {
			t.Fatalf("grpcurl list: %v\n%s", err, out)
		}
		return strings.Join(strings.Fields(string(out)), " ")
	}()
	if want := "grpc.health.v1.Health grpc.reflection.v1.ServerReflection grpc.reflection.v1alpha.ServerReflection inference.GRPCInferenceService"; list != want {
		t.Errorf("grpcurl list = %q; want %q", list, want)
	}
	if got, want := run("-d", `{"service":"inference.GRPCInferenceService"}`, "grpc.health.v1.Health/Check"), `{ "status": "SERVING" }`; got != want {
		t.Errorf("grpcurl Health/Check = %s; want %s", got, want)
	}
	got := run("-d", `{"model_name":"iris-logreg","inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"contents":{"fp32_contents":[6.3,3.3,6.0,2.5]}}],"outputs":[{"name":"label"}]}`,
		"inference.GRPCInferenceService/ModelInfer")
	if want := `{ "modelName": "iris-logreg", "modelVersion": "1", "outputs": [ { "name": "label", "datatype": "INT64", "shape": [ "1" ], "contents": { "int64Contents": [ "2" ] } } ] }`; got != want {
		t.Errorf("grpcurl ModelInfer = %s; want %s", got, want)
	}
}
