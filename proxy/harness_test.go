package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/tensor"
)

// fakeBackend is a deterministic backend for protocol tests; the real
// engine has its own tests in backends/cpu.
type fakeBackend struct {
	meta backends.Metadata
	run  func(ctx context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error)
	// delay (ns) holds every call that long, so that concurrent requests
	// queue up behind it and are batched; calls counts the calls and
	// maxRows is the largest batch seen.
	delay, calls, maxRows atomic.Int64
}

func (f *fakeBackend) Metadata() *backends.Metadata { return &f.meta }
func (f *fakeBackend) Close() error                 { return nil }
func (f *fakeBackend) Infer(ctx context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	f.calls.Add(1)
	if len(in) > 0 {
		for rows := int64(in[0].BatchSize()); ; {
			cur := f.maxRows.Load()
			if rows <= cur || f.maxRows.CompareAndSwap(cur, rows) {
				break
			}
		}
	}
	if d := time.Duration(f.delay.Load()); d > 0 {
		tm := time.NewTimer(d)
		select {
		case <-tm.C:
		case <-ctx.Done():
			tm.Stop()
			return nil, ctx.Err()
		}
	}
	return f.run(ctx, in)
}

// zipKeys are the keys of the zip model's probs output; one needs JSON
// escaping.
var zipKeys = []string{"cat", "dog", `e"el`}

// newZip is the zip model: x FP32 [-1,3] -> label INT64 [-1] = argmax(x),
// probs FP32 [-1,3] = x/2, a map per row keyed by zipKeys.
func newZip() *fakeBackend {
	return &fakeBackend{
		meta: backends.Metadata{
			Platform: "fake",
			Inputs:   []backends.TensorSpec{{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 3}}},
			Outputs: []backends.TensorSpec{
				{Name: "label", DType: tensor.Int64, Shape: []int64{-1}},
				{Name: "probs", DType: tensor.FP32, Shape: []int64{-1, 3}, Keys: zipKeys},
			},
			MaxBatchSize: 8,
			Concurrency:  1,
		},
		run: func(_ context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
			x := in[0].Float32s()
			rows := in[0].BatchSize()
			label := tensor.New("label", tensor.Int64, []int64{int64(rows)})
			probs := tensor.New("probs", tensor.FP32, in[0].Shape)
			for r := range rows {
				for j := range 3 {
					probs.Float32s()[r*3+j] = x[r*3+j] / 2
					if x[r*3+j] > x[r*3+int(label.Int64s()[r])] {
						label.Int64s()[r] = int64(j)
					}
				}
			}
			return []*tensor.Tensor{label, probs}, nil
		},
	}
}

// The fake models:
//
//	double: x FP32 [-1,4] -> y FP32 [-1,4] = 2x, cls INT64 [-1] = argmax(x)
//	        (/predict: cls with labels a..d)
//	multi:  a FP32 [-1,2], b INT32 [-1,2] -> sum FP64 [-1,2] = a+b
//	panic:  x FP32 [-1,1] -> panics
//	slow:   x FP32 [-1,1] -> waits for the deadline
//	strs:   s BYTES [-1,2] -> echo BYTES [-1,2] = s,
//	        label BYTES [-1] = s[r][0] + "+" + s[r][1],
//	        len INT64 [-1] = the row's bytes (/predict: label)
//	zip:    see newZip (/predict: probs, a map per row)
//	zipmax: zip with /predict transform argmax on probs
//	badbytes: x FP32 [-1,1] -> y BYTES [-1] with a broken layout
//	missing: x FP32 [-1,2], takes missing values -> nans INT64 [-1] = the
//	         row's NaN count
var fakeModels = map[string]func() *fakeBackend{
	"missing": func() *fakeBackend {
		return &fakeBackend{
			meta: backends.Metadata{Platform: "fake", Concurrency: 1, MaxBatchSize: 8,
				Inputs:  []backends.TensorSpec{{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 2}, Missing: true}},
				Outputs: []backends.TensorSpec{{Name: "nans", DType: tensor.Int64, Shape: []int64{-1}}}},
			run: func(_ context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
				x := in[0].Float32s()
				out := tensor.New("nans", tensor.Int64, []int64{int64(in[0].BatchSize())})
				for i, v := range x {
					if v != v {
						out.Int64s()[i/2]++
					}
				}
				return []*tensor.Tensor{out}, nil
			},
		}
	},
	"strs": func() *fakeBackend {
		return &fakeBackend{
			meta: backends.Metadata{
				Platform: "fake",
				Inputs:   []backends.TensorSpec{{Name: "s", DType: tensor.Bytes, Shape: []int64{-1, 2}}},
				Outputs: []backends.TensorSpec{
					{Name: "echo", DType: tensor.Bytes, Shape: []int64{-1, 2}},
					{Name: "label", DType: tensor.Bytes, Shape: []int64{-1}},
					{Name: "len", DType: tensor.Int64, Shape: []int64{-1}},
				},
				MaxBatchSize: 8,
				Concurrency:  1,
			},
			run: func(_ context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
				s := in[0].Strings()
				rows := in[0].BatchSize()
				labels := make([]string, rows)
				n := tensor.New("len", tensor.Int64, []int64{int64(rows)})
				for r := range rows {
					labels[r] = s[2*r] + "+" + s[2*r+1]
					n.Int64s()[r] = int64(len(s[2*r]) + len(s[2*r+1]))
				}
				return []*tensor.Tensor{tensor.FromStrings("echo", in[0].Shape, s), tensor.FromStrings("label", []int64{int64(rows)}, labels), n}, nil
			},
		}
	},
	"zip":    newZip,
	"zipmax": newZip,
	"badbytes": func() *fakeBackend {
		return &fakeBackend{
			meta: backends.Metadata{Platform: "fake", Concurrency: 1,
				Inputs:  []backends.TensorSpec{{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 1}}},
				Outputs: []backends.TensorSpec{{Name: "y", DType: tensor.Bytes, Shape: []int64{-1}}}},
			run: func(_ context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
				// One element whose length runs past the data.
				return []*tensor.Tensor{{Name: "y", DType: tensor.Bytes, Shape: []int64{int64(in[0].BatchSize())}, Data: []byte{9, 0, 0, 0, 'a'}}}, nil
			},
		}
	},
	"double": func() *fakeBackend {
		return &fakeBackend{
			meta: backends.Metadata{
				Platform:     "fake",
				Inputs:       []backends.TensorSpec{{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 4}}},
				Outputs:      []backends.TensorSpec{{Name: "y", DType: tensor.FP32, Shape: []int64{-1, 4}}, {Name: "cls", DType: tensor.Int64, Shape: []int64{-1}}},
				MaxBatchSize: 8,
				Concurrency:  1,
			},
			run: func(_ context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
				x := in[0].Float32s()
				rows := in[0].BatchSize()
				y := tensor.New("y", tensor.FP32, in[0].Shape)
				cls := tensor.New("cls", tensor.Int64, []int64{int64(rows)})
				for r := 0; r < rows; r++ {
					best := 0
					for j := 0; j < 4; j++ {
						y.Float32s()[r*4+j] = 2 * x[r*4+j]
						if x[r*4+j] > x[r*4+best] {
							best = j
						}
					}
					cls.Int64s()[r] = int64(best)
				}
				return []*tensor.Tensor{y, cls}, nil
			},
		}
	},
	"multi": func() *fakeBackend {
		return &fakeBackend{
			meta: backends.Metadata{
				Platform: "fake",
				Inputs: []backends.TensorSpec{
					{Name: "a", DType: tensor.FP32, Shape: []int64{-1, 2}},
					{Name: "b", DType: tensor.Int32, Shape: []int64{-1, 2}},
				},
				Outputs:     []backends.TensorSpec{{Name: "sum", DType: tensor.FP64, Shape: []int64{-1, 2}}},
				Concurrency: 1,
			},
			run: func(_ context.Context, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
				out := tensor.New("sum", tensor.FP64, in[0].Shape)
				for i := range out.Float64s() {
					out.Float64s()[i] = float64(in[0].Float32s()[i]) + float64(in[1].Int32s()[i])
				}
				return []*tensor.Tensor{out}, nil
			},
		}
	},
	"panic": func() *fakeBackend {
		return &fakeBackend{
			meta: backends.Metadata{Platform: "fake", Concurrency: 1,
				Inputs:  []backends.TensorSpec{{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 1}}},
				Outputs: []backends.TensorSpec{{Name: "y", DType: tensor.FP32, Shape: []int64{-1, 1}}}},
			run: func(context.Context, []*tensor.Tensor) ([]*tensor.Tensor, error) { panic("boom") },
		}
	},
	"slow": func() *fakeBackend {
		return &fakeBackend{
			meta: backends.Metadata{Platform: "fake", Concurrency: 1,
				Inputs:  []backends.TensorSpec{{Name: "x", DType: tensor.FP32, Shape: []int64{-1, 1}}},
				Outputs: []backends.TensorSpec{{Name: "y", DType: tensor.FP32, Shape: []int64{-1, 1}}}},
			run: func(ctx context.Context, _ []*tensor.Tensor) ([]*tensor.Tensor, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			},
		}
	},
}

// fakeConfigs are the config.yaml files of the fake models.
var fakeConfigs = map[string]string{
	"double": "max_batch_size: 8\npredict:\n  output: cls\n  labels: [a, b, c, d]\n",
	"multi":  "description: two inputs\n",
	"slow":   "queue_capacity: 2\n",
	"strs":   "predict:\n  output: label\n",
	"zip":    "predict:\n  output: probs\n",
	"zipmax": "predict:\n  output: probs\n  transform: argmax\n",
}

// testRegistry builds a model repository of the fake models in a temp
// dir; "double" has versions 1 and 2.
func testRegistry(t testing.TB) *backends.Registry {
	t.Helper()
	dir := t.TempDir()
	for name := range fakeModels {
		versions := []string{"1"}
		if name == "double" {
			versions = []string{"1", "2"}
		}
		for _, v := range versions {
			must(t, os.MkdirAll(filepath.Join(dir, name, v), 0o755))
			must(t, os.WriteFile(filepath.Join(dir, name, v, "model.fake"), []byte(name), 0o644))
		}
		if c := fakeConfigs[name]; c != "" {
			must(t, os.WriteFile(filepath.Join(dir, name, "config.yaml"), []byte(c), 0o644))
		}
	}
	loaders := map[string]backends.Loader{"model.fake": func(path string, _ backends.LoadOptions) (backends.Backend, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		mk := fakeModels[string(b)]
		if mk == nil {
			return nil, errors.New("unknown fake model")
		}
		return mk(), nil
	}}
	reg, err := backends.LoadRepository(dir, loaders)
	must(t, err)
	return reg
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testLimits() Limits {
	return Limits{MaxBodyBytes: 1 << 16, MaxTensorElements: 1000, MaxJSONDepth: 8}
}

// testServer starts a Server on the fake models over an in-memory
// listener and returns it with a client for it.
func testServer(t testing.TB) (*Server, *fasthttp.HostClient, *metrics.Set) {
	t.Helper()
	set := metrics.NewSet()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(Config{
		DefaultModel:   "double",
		RequestTimeout: 200 * time.Millisecond,
		Version:        "test",
		ReadTimeout:    5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second,
		MaxConnections: 100,
		Batching:       config.Batching{Enabled: true, MaxQueueDelay: time.Millisecond, PriorityLevels: 2},
		Limits:         testLimits(),
	}, testRegistry(t), set, log)
	must(t, err)
	ln := fasthttputil.NewInmemoryListener()
	srv := s.HTTPServer()
	go srv.Serve(ln) //nolint:errcheck // returns when the listener closes
	t.Cleanup(func() { srv.Shutdown(); ln.Close(); s.Close(context.Background()) })
	c := &fasthttp.HostClient{Addr: "test", Dial: func(string) (net.Conn, error) { return ln.Dial() }}
	return s, c, set
}

// do sends one request and returns status, body and the response
// headers of interest.
type result struct {
	status int
	body   string
	header map[string]string
}

func do(t testing.TB, c *fasthttp.HostClient, method, path string, body []byte, headers ...string) result {
	t.Helper()
	r, err := doErr(c, method, path, body, headers...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// doErr is do for goroutines other than the test's: it returns errors
// instead of failing the test.
func doErr(c *fasthttp.HostClient, method, path string, body []byte, headers ...string) (result, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://test" + path)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if body != nil {
		req.SetBody(body)
	}
	if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
		return result{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	r := result{status: resp.StatusCode(), body: string(resp.Body()), header: map[string]string{}}
	for _, h := range []string{"Content-Type", "Inference-Header-Content-Length", "Allow", "Retry-After", "Connection"} {
		if v := resp.Header.Peek(h); v != nil {
			r.header[h] = string(v)
		}
	}
	return r, nil
}

// endpointCase is one request and its exact answer; want "" is an empty
// body.
type endpointCase struct {
	name, method, path, body string
	status                   int
	want                     string
}

// runEndpointCases sends each case and checks status and exact body, and
// that a non-empty body is valid JSON.
func runEndpointCases(t *testing.T, c *fasthttp.HostClient, tests []endpointCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body []byte
			if tt.body != "" {
				body = []byte(tt.body)
			}
			r := do(t, c, tt.method, tt.path, body)
			if r.status != tt.status || r.body != tt.want {
				t.Errorf("%s %s = %d %s; want %d %s", tt.method, tt.path, r.status, r.body, tt.status, tt.want)
			}
			if r.body != "" && !json.Valid([]byte(r.body)) {
				t.Errorf("body is not valid JSON: %s", r.body)
			}
		})
	}
}

// runConcurrent sends goroutines × perGoroutine requests from concurrent
// goroutines, request i of goroutine g built by next, each of which must
// get exactly its own 200 answer; it reports the first ten failures.
func runConcurrent(t *testing.T, c *fasthttp.HostClient, goroutines, perGoroutine int,
	next func(g, i int) (path string, body []byte, headers []string, want string)) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*perGoroutine)
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				path, body, headers, want := next(g, i)
				r, err := doErr(c, "POST", path, body, headers...)
				if err != nil {
					errs <- err
					continue
				}
				if r.status != 200 || r.body != want {
					errs <- fmt.Errorf("goroutine %d request %d: POST %s = %d %q; want 200 %q", g, i, path, r.status, r.body, want)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 10 {
			t.Error(err)
		}
	}
	if n > 10 {
		t.Errorf("... and %d more errors", n-10)
	}
}
