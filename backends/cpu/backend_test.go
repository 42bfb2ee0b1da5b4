package cpu

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx/onnxtest"
	"github.com/coalesce-ml/coalesce/backends/cpu/internal/sgemm"
	"github.com/coalesce-ml/coalesce/tensor"
)

var _ backends.Backend = (*Backend)(nil)

// testMLP loads mlpModel with 8 inputs, 16 hidden units and 4 classes.
func testMLP(t testing.TB, opts Options) *Backend {
	t.Helper()
	r := newRand()
	be, err := LoadBytes(mlpModel(randTensor(r, tensor.FP32, 16, 8), randTensor(r, tensor.FP32, 16),
		randTensor(r, tensor.FP32, 16, 4), randTensor(r, tensor.FP32, 4)), opts)
	if err != nil {
		t.Fatal(err)
	}
	return be
}

func TestMetadata(t *testing.T) {
	be := testMLP(t, Options{MaxBatchSize: 32, Concurrency: 3})
	want := &backends.Metadata{
		Platform: "onnx_onnxv1",
		Inputs:   []backends.TensorSpec{{Name: "x", DType: tensor.FP32, Shape: sh(-1, 8)}},
		Outputs: []backends.TensorSpec{
			{Name: "logits", DType: tensor.FP32, Shape: sh(-1, 4)},
			{Name: "probabilities", DType: tensor.FP32, Shape: sh(-1, 4)},
			{Name: "label", DType: tensor.Int64, Shape: sh(-1)},
		},
		MaxBatchSize: 32,
		Concurrency:  3,
		Info:         map[string]string{"engine": "pure-go", "kernels": sgemm.Available()[0].Name()},
	}
	if got := be.Metadata(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Metadata() = %+v\nwant %+v", got, want)
	}
	for _, ks := range sgemm.Available() {
		be := testMLP(t, Options{Kernels: ks.Name()})
		if got := be.Metadata().Info["kernels"]; got != ks.Name() {
			t.Fatalf("with Options.Kernels %q: Info[kernels] = %q", ks.Name(), got)
		}
	}
	if _, err := LoadBytes(syntheticDigits(), Options{Kernels: "sse"}); err == nil || !strings.Contains(err.Error(), `kernels "sse" not available`) {
		t.Fatalf("Options.Kernels sse: error %v, want not available", err)
	}
	if be := testMLP(t, Options{}); be.Metadata().Concurrency < 1 {
		t.Fatalf("default Concurrency = %d", be.Metadata().Concurrency)
	}
	// MaxBatchSize 1: only one probe, dynamic dims come from the declaration.
	if got := testMLP(t, Options{MaxBatchSize: 1}).Metadata().Outputs[2].Shape; !reflect.DeepEqual(got, sh(-1)) {
		t.Fatalf("MaxBatchSize=1: label shape %v, want [-1]", got)
	}
}

func TestInferInvalidInput(t *testing.T) {
	be := testMLP(t, Options{MaxBatchSize: 4})
	ok := tensor.New("x", tensor.FP32, sh(2, 8))
	short := tensor.New("x", tensor.FP32, sh(2, 8))
	short.Data = short.Data[:60]
	f := func(name string, inputs []*tensor.Tensor, want string) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			_, err := be.Infer(context.Background(), inputs)
			if !errors.Is(err, backends.ErrInvalidInput) || !strings.Contains(err.Error(), want) {
				t.Fatalf("Infer = %v, want ErrInvalidInput containing %q", err, want)
			}
		})
	}
	f("count", []*tensor.Tensor{ok, ok}, "got 2 inputs, want 1")
	f("nil", []*tensor.Tensor{nil}, `input "x" is missing`)
	f("dtype", []*tensor.Tensor{tensor.New("x", tensor.FP64, sh(2, 8))}, `input "x" is FP64, want FP32`)
	f("inner dim", []*tensor.Tensor{tensor.New("x", tensor.FP32, sh(2, 9))}, `input "x" has shape [2 9], want [-1 8]`)
	f("rank", []*tensor.Tensor{tensor.New("x", tensor.FP32, sh(16))}, `input "x" has shape [16], want [-1 8]`)
	f("empty batch", []*tensor.Tensor{tensor.New("x", tensor.FP32, sh(0, 8))}, `input "x" has shape [0 8]`)
	f("max batch", []*tensor.Tensor{tensor.New("x", tensor.FP32, sh(5, 8))}, "batch size 5 exceeds the maximum 4")
	f("data length", []*tensor.Tensor{short}, `input "x": tensor "x": 60 bytes of data`)

	two, err := LoadBytes(onnxtest.NewModel(13).Input("a", onnx.TypeFloat, "N", 2).Input("b", onnx.TypeFloat, "N", 2).Output("y").
		Node("add", "Add", []string{"a", "b"}, []string{"y"}).Bytes(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = two.Infer(context.Background(), []*tensor.Tensor{tensor.New("a", tensor.FP32, sh(2, 2)), tensor.New("b", tensor.FP32, sh(3, 2))})
	if !errors.Is(err, backends.ErrInvalidInput) || !strings.Contains(err.Error(), `input "b" has batch size 3, input "a" has 2`) {
		t.Fatalf("batch mismatch: Infer = %v", err)
	}
}

func TestInferContext(t *testing.T) {
	be := testMLP(t, Options{Concurrency: 1})
	x := tensor.New("x", tensor.FP32, sh(1, 8))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := be.Infer(ctx, []*tensor.Tensor{x}); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: Infer = %v, want context.Canceled", err)
	}
	// Hold the only worker: a call must wait, then give up at its deadline.
	w := <-be.workers
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := be.Infer(ctx, []*tensor.Tensor{x}); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting for a worker") {
		t.Fatalf("busy: Infer = %v, want DeadlineExceeded while waiting", err)
	}
	be.workers <- w
	if _, err := be.Infer(context.Background(), []*tensor.Tensor{x}); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

// TestInferConcurrent runs many goroutines with mixed batch sizes on a
// backend with fewer workers than callers (run with -race) and checks
// every answer against a serial run.
func TestInferConcurrent(t *testing.T) {
	be := testMLP(t, Options{Concurrency: 3})
	r := newRand()
	type job struct {
		x    *tensor.Tensor
		want []*tensor.Tensor
	}
	jobs := make([]job, 24)
	for i := range jobs {
		x := randTensor(r, tensor.FP32, int64(1+i%7), 8)
		want, err := be.Infer(context.Background(), []*tensor.Tensor{x})
		if err != nil {
			t.Fatal(err)
		}
		jobs[i] = job{x, want}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8*len(jobs))
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range jobs {
				j := jobs[(k+g)%len(jobs)]
				got, err := be.Infer(context.Background(), []*tensor.Tensor{j.x})
				if err != nil {
					errs <- err
					return
				}
				for o := range got {
					if !reflect.DeepEqual(got[o].Data, j.want[o].Data) {
						errs <- fmt.Errorf("output %d differs from the serial run", o)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestInferOwnership(t *testing.T) {
	be := testMLP(t, Options{Concurrency: 1})
	x := randTensor(newRand(), tensor.FP32, 3, 8)
	before := x.Clone()
	a, err := be.Infer(context.Background(), []*tensor.Tensor{x})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(x, before) {
		t.Fatal("Infer modified its input")
	}
	keep := a[0].Clone()
	for i := range a[0].Data { // the caller owns the outputs: scribble on them
		a[0].Data[i] = 0xff
	}
	b, err := be.Infer(context.Background(), []*tensor.Tensor{x})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(b[0], keep) {
		t.Fatal("second call's output differs after the caller modified the first")
	}
	if &a[0].Data[0] == &b[0].Data[0] {
		t.Fatal("two calls returned the same output memory")
	}
	if names := []string{b[0].Name, b[1].Name, b[2].Name}; !reflect.DeepEqual(names, []string{"logits", "probabilities", "label"}) {
		t.Fatalf("output names %v", names)
	}
}

func TestInferMisalignedInput(t *testing.T) {
	be := testMLP(t, Options{Concurrency: 1})
	x := randTensor(newRand(), tensor.FP32, 2, 8)
	want, err := be.Infer(context.Background(), []*tensor.Tensor{x})
	if err != nil {
		t.Fatal(err)
	}
	buf := tensor.Alloc(len(x.Data) + 1)
	odd := &tensor.Tensor{Name: "x", DType: tensor.FP32, Shape: x.Shape, Data: buf[1:]}
	copy(odd.Data, x.Data)
	got, err := be.Infer(context.Background(), []*tensor.Tensor{odd})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatal("misaligned input gives a different answer")
	}
}

// TestInferPanicBecomesError runs an integer division by zero, which
// panics inside the kernel: Infer must return an error naming the node and
// the backend must keep working.
func TestInferPanicBecomesError(t *testing.T) {
	be, err := LoadBytes(onnxtest.NewModel(13).Input("a", onnx.TypeInt64, "N").Input("b", onnx.TypeInt64, "N").Output("y").
		Node("/div", "Div", []string{"a", "b"}, []string{"y"}).Bytes(), Options{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = be.Infer(context.Background(), []*tensor.Tensor{i64(sh(2), 1, 2), i64(sh(2), 1, 0)})
	if err == nil || !strings.Contains(err.Error(), `node "/div" (Div): panic: runtime error: integer divide by zero`) {
		t.Fatalf("Infer = %v, want a recovered panic naming the node", err)
	}
	out, err := be.Infer(context.Background(), []*tensor.Tensor{i64(sh(2), 6, 9), i64(sh(2), 2, -3)})
	if err != nil || !reflect.DeepEqual(out[0].Int64s(), []int64{3, -3}) {
		t.Fatalf("after the panic: %v, %v", out, err)
	}
}

func TestClose(t *testing.T) {
	be := testMLP(t, Options{})
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := be.Infer(context.Background(), []*tensor.Tensor{tensor.New("x", tensor.FP32, sh(1, 8))}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Infer after Close = %v, want ErrClosed", err)
	}
}

// TestInferAllocations checks that the steady state allocates only the
// outputs: one block for their shapes and data, one for the tensor
// headers and the result slice (see Backend.outputs).
func TestInferAllocations(t *testing.T) {
	be := testMLP(t, Options{Concurrency: 1})
	in := []*tensor.Tensor{randTensor(newRand(), tensor.FP32, 16, 8)}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := be.Infer(ctx, in); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 2 {
		t.Fatalf("Infer allocates %v times per call, want <= 2", allocs)
	}
	t.Logf("%v allocations per call", allocs)
	// A batch split over the helpers (SplitRows 1 forces it).
	be = testMLP(t, Options{Concurrency: 1, SplitRows: 1})
	defer be.Close()
	in = []*tensor.Tensor{randTensor(newRand(), tensor.FP32, 100, 8)}
	allocs = testing.AllocsPerRun(50, func() {
		if _, err := be.Infer(ctx, in); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 2 {
		t.Fatalf("Infer of a split batch allocates %v times per call, want <= 2", allocs)
	}
}

func TestLoadFile(t *testing.T) {
	if _, err := Load("testdata/does-not-exist.onnx", Options{}); err == nil || !strings.Contains(err.Error(), "does-not-exist.onnx") {
		t.Fatalf("Load(missing) = %v", err)
	}
	path := t.TempDir() + "/m.onnx"
	if err := writeFile(path, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, Options{}); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Load(garbage) = %v, want an error naming the file", err)
	}
	if _, err := LoadBytes(nil, Options{Concurrency: -1}); err == nil {
		t.Fatal("negative Concurrency accepted")
	}
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }

// TestInferManyOutputs checks models with more outputs than fit the
// one-allocation header block, and exactly as many, and that no output's
// shape or data can grow into another's (they share one block).
func TestInferManyOutputs(t *testing.T) {
	ops := []string{"Relu", "Neg", "Abs", "Exp", "Sigmoid", "Tanh"}
	fns := []func(float64) float64{
		func(v float64) float64 { return max(v, 0) }, func(v float64) float64 { return -v }, math.Abs, math.Exp,
		func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }, math.Tanh,
	}
	x := randTensor(newRand(), tensor.FP32, 2, 3)
	for _, n := range []int{len(ops), maxPackedOutputs} {
		m := onnxtest.NewModel(13).Input("x", onnx.TypeFloat, "batch", 3)
		for i, op := range ops[:n] {
			name := fmt.Sprintf("y%d", i)
			m.Output(name).Node(op, op, []string{"x"}, []string{name})
		}
		outs := runModel(t, m.Bytes(), x)
		if len(outs) != n {
			t.Fatalf("%d outputs, want %d", len(outs), n)
		}
		for i, o := range outs {
			if o.Name != fmt.Sprintf("y%d", i) || cap(o.Shape) != len(o.Shape) || cap(o.Data) != len(o.Data) {
				t.Fatalf("output %d: name %q, shape %v (cap %d), %d bytes (cap %d)", i, o.Name, o.Shape, cap(o.Shape), len(o.Data), cap(o.Data))
			}
			expectClose(t, o, refUnary(toRef(x), fns[i]))
		}
	}
}

// TestUnpackedModel loads a model whose initializer uses unpacked typed
// fields and whose attributes use unpacked ints, and runs it.
func TestUnpackedModel(t *testing.T) {
	var shapeTP []byte
	shapeTP = onnxtest.AppendUnpackedVarints(shapeTP, 1, sh(2))
	shapeTP = onnxtest.AppendVarint(shapeTP, 2, onnx.TypeInt64)
	shapeTP = onnxtest.AppendString(shapeTP, 8, "s")
	shapeTP = onnxtest.AppendUnpackedVarints(shapeTP, 7, []int64{3, 2})
	perm := onnxtest.AppendString(nil, 1, "perm")
	perm = onnxtest.AppendVarint(perm, 20, uint64(onnx.AttrInts))
	perm = onnxtest.AppendUnpackedVarints(perm, 8, []int64{1, 0})
	m := onnxtest.NewModel(13).Input("x", onnx.TypeFloat, 2, 3).Output("y").
		Node("r", "Reshape", []string{"x", "s"}, []string{"r"}).
		Node("t", "Transpose", []string{"r"}, []string{"y"}, perm)
	m.Inits = append(m.Inits, shapeTP)
	x := iotaT(2, 3)
	outs := runModel(t, m.Bytes(), x)
	expectClose(t, outs[0], ref{sh(2, 3), []float64{0, 2, 4, 1, 3, 5}})
}
