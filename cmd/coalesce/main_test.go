package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/internal/approx"
)

// These tests build the real binary and run it as a user would, on
// 127.0.0.1 ports, against the shipped model repository.

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "coalesce-bin")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "coalesce")
	out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const repoRoot = "../.."

// freeAddr returns a 127.0.0.1 address that was free a moment ago.
// freeAddr returns a 127.0.0.1 address free now and not returned before
// in this process: the kernel hands a just-closed ephemeral port out again,
// so two calls in a row could give one server the same data and admin
// address.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if _, dup := givenAddrs.LoadOrStore(addr, true); !dup {
			return addr
		}
	}
	t.Fatal("no fresh free port in 100 tries")
	return ""
}

// givenAddrs holds the addresses freeAddr returned (a sync.Map of string).
var givenAddrs sync.Map

type server struct {
	cmd         *exec.Cmd
	addr, admin string
	stdout      *lockedWriter
	stderr      *lockedWriter
	done        chan struct{}
	exitCode    int
	waitErr     error
}

// startServer starts the binary with the given extra flags and waits
// until it answers ready.
func startServer(t *testing.T, extra ...string) *server {
	t.Helper()
	return startServerIn(t, "", append([]string{"--models.repository", filepath.Join(repoRoot, "models"), "--config", filepath.Join(repoRoot, "configs", "coalesce.yaml")}, extra...)...)
}

// startServerIn starts the binary in directory dir ("" = this one) with
// only the addresses and the given flags, and waits until it answers ready.
func startServerIn(t *testing.T, dir string, flags ...string) *server {
	t.Helper()
	s := &server{addr: freeAddr(t), admin: freeAddr(t), stdout: &lockedWriter{w: &bytes.Buffer{}}, stderr: &lockedWriter{w: &bytes.Buffer{}}, done: make(chan struct{})}
	args := append([]string{"serve", "--http.addr", s.addr, "--admin.addr", s.admin}, flags...)
	s.cmd = exec.Command(binPath, args...)
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		s.exitCode = s.cmd.ProcessState.ExitCode()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			t.Fatalf("server exited early (%d): %s", s.exitCode, s.stderr)
		default:
		}
		// Ready, and the start-up line written: the server logs it after
		// its listeners serve, so readiness alone can come first.
		if st, _, _ := httpDo(s.addr, "GET", "/v2/health/ready", nil, nil); st == 200 && strings.Contains(s.stdout.String(), "coalesce started") {
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("server not ready (and its start-up line logged) within 30s: %s", s.stderr)
	return nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

var client = &fasthttp.Client{MaxConnsPerHost: 64}

// httpDo sends one request and returns status, body and the response's
// Connection: close flag.
func httpDo(addr, method, path string, body []byte, headers map[string]string) (int, []byte, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + addr + path)
	req.Header.SetMethod(method)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if body != nil {
		req.SetBody(body)
	}
	if err := client.DoTimeout(req, resp, 10*time.Second); err != nil {
		return 0, nil, err
	}
	if resp.ConnectionClose() {
		return resp.StatusCode(), append([]byte(nil), resp.Body()...), errConnClose
	}
	return resp.StatusCode(), append([]byte(nil), resp.Body()...), nil
}

var errConnClose = errors.New("response asked to close the connection")

func readFile(t *testing.T, parts ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{repoRoot}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestShippedExamples sends each model's example requests, as the README's
// curl examples do, and checks the documented answers.
func TestShippedExamples(t *testing.T) {
	s := startServer(t)
	for _, model := range []string{"digits-mlp", "iris-logreg"} {
		t.Run(model, func(t *testing.T) {
			var expected struct {
				Label         int64     `json:"label"`
				Probabilities []float64 `json:"probabilities"`
			}
			if err := json.Unmarshal(readFile(t, "models", model, "examples", "expected.json"), &expected); err != nil {
				t.Fatal(err)
			}
			var labels []string
			if model == "iris-logreg" {
				labels = []string{"setosa", "versicolor", "virginica"}
			}
			wantPrediction := fmt.Sprint(expected.Label)
			if labels != nil {
				wantPrediction = `"` + labels[expected.Label] + `"`
			}

			st, body, err := httpDo(s.addr, "POST", "/predict?model="+model, readFile(t, "models", model, "examples", "predict.json"), nil)
			if err != nil || st != 200 || string(body) != `{"prediction":[`+wantPrediction+`]}` {
				t.Errorf("/predict = %d %s %v; want 200 {\"prediction\":[%s]}", st, body, err, wantPrediction)
			}

			st, body, err = httpDo(s.addr, "POST", "/v2/models/"+model+"/infer", readFile(t, "models", model, "examples", "v2.json"), nil)
			if err != nil || st != 200 {
				t.Fatalf("v2 infer = %d %s %v", st, body, err)
			}
			var v2 struct {
				ID      string `json:"id"`
				Outputs []struct {
					Name string          `json:"name"`
					Data json.RawMessage `json:"data"`
				} `json:"outputs"`
			}
			if err := json.Unmarshal(body, &v2); err != nil {
				t.Fatal(err)
			}
			if v2.ID != "example-1" {
				t.Errorf("v2 id = %q; want example-1 echoed", v2.ID)
			}
			for _, o := range v2.Outputs {
				switch data := numbers(t, o.Data); o.Name {
				case "label":
					if len(data) != 1 || data[0] != float64(expected.Label) {
						t.Errorf("v2 label = %v; want [%d]", data, expected.Label)
					}
				case "probabilities":
					assertClose(t, "v2 probabilities", data, expected.Probabilities, 1e-5)
				}
			}

			st, body, err = httpDo(s.addr, "POST", "/v1/models/"+model+":predict", readFile(t, "models", model, "examples", "tfs.json"), nil)
			if err != nil || st != 200 {
				t.Fatalf("tfs predict = %d %s %v", st, body, err)
			}
			var tfs struct {
				Predictions []struct {
					Label         int64           `json:"label"`
					Probabilities json.RawMessage `json:"probabilities"`
				} `json:"predictions"`
			}
			if err := json.Unmarshal(body, &tfs); err != nil {
				t.Fatal(err)
			}
			if len(tfs.Predictions) != 1 || tfs.Predictions[0].Label != expected.Label {
				t.Fatalf("tfs predictions = %s; want label %d", body, expected.Label)
			}
			assertClose(t, "tfs probabilities", numbers(t, tfs.Predictions[0].Probabilities), expected.Probabilities, 1e-5)
		})
	}

	st, body, _ := httpDo(s.admin, "GET", "/metrics", nil, nil)
	if st != 200 || !bytes.Contains(body, []byte(`coalesce_requests_total{model="digits-mlp",version="1",protocol="v2",code="200"} 1`)) {
		t.Errorf("admin /metrics = %d, missing the v2 request counter:\n%.2000s", st, body)
	}
	if !strings.Contains(s.stdout.String(), `"msg":"coalesce started"`) {
		t.Errorf("no JSON start-up line in the log: %s", s.stdout)
	}
	for _, key := range []string{`"gomemlimit":`, `"gomemlimit_source":`, `"inflight_bytes":`} {
		if !strings.Contains(s.stdout.String(), key) {
			t.Errorf("the start-up line does not log %s: %s", key, s.stdout)
		}
	}
}

// assertClose checks got against want within tol with approx.Equal,
// which, unlike d > tol || d < -tol, fails on NaN: a null in the answer
// (decoded as NaN by decodeData) or a missing value fails.
func assertClose(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	i := approx.Mismatch(got, want, tol)
	switch {
	case i < 0:
	case len(got) != len(want):
		t.Errorf("%s has %d values; want %d", what, len(got), len(want))
	default:
		t.Errorf("%s[%d] = %v; want %v ± %g (%s = %v)", what, i, got[i], want[i], tol, what, got)
	}
}

// numbers decodes a JSON array of numbers, null as NaN (encoding/json
// would leave a null as 0, which passes for a near-zero probability).
func numbers(t *testing.T, raw json.RawMessage) []float64 {
	t.Helper()
	var nums []float64
	if err := decodeData("FP64", raw, &nums, nil); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return nums
}

// TestClassicExamples sends the example requests of the classic-ML models
// (XGBoost JSON, ONNX-ML random forest with string labels and ZipMap,
// ONNX-ML linear pipeline) through the three protocols and checks the
// framework's answer from examples/expected.json.
func TestClassicExamples(t *testing.T) {
	s := startServer(t)
	for _, tc := range []struct {
		model   string
		predict string // /predict's answer: the class name
		zipMap  bool   // TF Serving renders probabilities as a label → probability object
	}{
		{"cancer-xgb", `{"prediction":["malignant"]}`, false},
		{"wine-forest", `{"prediction":["class_0"]}`, true},
		{"wine-linear", `{"prediction":["class_0"]}`, false},
	} {
		t.Run(tc.model, func(t *testing.T) {
			var expected struct {
				Label         any       `json:"label"`
				Probabilities []float64 `json:"probabilities"`
			}
			if err := json.Unmarshal(readFile(t, "models", tc.model, "examples", "expected.json"), &expected); err != nil {
				t.Fatal(err)
			}
			st, body, err := httpDo(s.addr, "POST", "/predict?model="+tc.model, readFile(t, "models", tc.model, "examples", "predict.json"), nil)
			if err != nil || st != 200 || string(body) != tc.predict {
				t.Errorf("/predict = %d %s %v; want 200 %s", st, body, err, tc.predict)
			}
			st, body, err = httpDo(s.addr, "POST", "/v2/models/"+tc.model+"/infer", readFile(t, "models", tc.model, "examples", "v2.json"), nil)
			if err != nil || st != 200 {
				t.Fatalf("v2 infer = %d %s %v", st, body, err)
			}
			var v2 struct {
				Outputs []struct {
					Name string `json:"name"`
					Data []any  `json:"data"`
				} `json:"outputs"`
			}
			if err := json.Unmarshal(body, &v2); err != nil {
				t.Fatal(err)
			}
			for _, o := range v2.Outputs {
				switch o.Name {
				case "label":
					if len(o.Data) != 1 || fmt.Sprint(o.Data[0]) != fmt.Sprint(expected.Label) {
						t.Errorf("v2 label = %v; want [%v]", o.Data, expected.Label)
					}
				case "probabilities":
					got := make([]float64, len(o.Data))
					for i, v := range o.Data {
						got[i] = math.NaN() // null or not a number
						if f, ok := v.(float64); ok {
							got[i] = f
						}
					}
					assertClose(t, "v2 probabilities", got, expected.Probabilities, 1e-5)
				}
			}
			st, body, err = httpDo(s.addr, "POST", "/v1/models/"+tc.model+":predict", readFile(t, "models", tc.model, "examples", "tfs.json"), nil)
			if err != nil || st != 200 {
				t.Fatalf("tfs predict = %d %s %v", st, body, err)
			}
			var tfs struct {
				Predictions []struct {
					Label         any             `json:"label"`
					Probabilities json.RawMessage `json:"probabilities"`
				} `json:"predictions"`
			}
			if err := json.Unmarshal(body, &tfs); err != nil || len(tfs.Predictions) != 1 {
				t.Fatalf("tfs predictions = %s (%v)", body, err)
			}
			if fmt.Sprint(tfs.Predictions[0].Label) != fmt.Sprint(expected.Label) {
				t.Errorf("tfs label = %v; want %v", tfs.Predictions[0].Label, expected.Label)
			}
			var probs []float64
			if tc.zipMap {
				var m map[string]*float64
				if err := json.Unmarshal(tfs.Predictions[0].Probabilities, &m); err != nil {
					t.Fatalf("tfs probabilities %s: want an object (ZipMap): %v", tfs.Predictions[0].Probabilities, err)
				}
				for k := range len(m) {
					p := math.NaN() // a null or a missing class
					if v := m[fmt.Sprintf("class_%d", k)]; v != nil {
						p = *v
					}
					probs = append(probs, p)
				}
			} else {
				probs = numbers(t, tfs.Predictions[0].Probabilities)
			}
			assertClose(t, "tfs probabilities", probs, expected.Probabilities, 1e-5)
		})
	}
}

// TestStartupErrors checks that bad configuration stops start-up with one
// line naming the problem and exit status 2.
func TestStartupErrors(t *testing.T) {
	emptyRepo := t.TempDir()
	badModel := t.TempDir()
	if err := os.MkdirAll(filepath.Join(badModel, "m", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(badModel, "m", "1", "model.onnx"), []byte("not onnx"), 0o644); err != nil {
		t.Fatal(err)
	}
	noFile := t.TempDir()
	if err := os.MkdirAll(filepath.Join(noFile, "m", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"unknown flag", []string{"--http.adr", ":1"}, nil, "unknown flag: --http.adr"},
		{"malformed duration", []string{"--http.read_timeout", "5x"}, nil, "http.read_timeout"},
		{"env duration", nil, []string{"COALESCE_HTTP_WRITE_TIMEOUT=fast"}, "http.write_timeout"},
		{"missing repository", []string{"--models.repository", "/nonexistent"}, nil, "models.repository"},
		{"empty repository", []string{"--models.repository", emptyRepo}, nil, "no models"},
		{"model file missing", []string{"--models.repository", noFile}, nil, "no model file"},
		{"malformed model", []string{"--models.repository", badModel}, nil, "model m version 1"},
		{"unknown command", []string{"srve"}, nil, `unknown command "srve"`},
		{"long flag with one dash", []string{"-http.addr", ":18080"}, nil, "flag -http.addr has one dash; want --http.addr"},
		{"long flag with one dash and =", []string{"-models.repository=./mine"}, nil, "want --models.repository=./mine"},
		{"env value", nil, []string{"COALESCE_HTTP_READ_TIMEOUT=fast"}, "http.read_timeout (environment variable COALESCE_HTTP_READ_TIMEOUT)"},
		// The service links pass configuration: start-up stops later, at the empty repository.
		{"kubernetes service links", []string{"--models.repository", emptyRepo}, []string{"COALESCE_PORT=tcp://10.0.0.1:8080", "COALESCE_SERVICE_HOST=10.0.0.1", "COALESCE_SERVICE_PORT=8080", "COALESCE_PORT_8080_TCP_ADDR=10.0.0.1"}, "no models"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if len(args) == 0 || args[0] != "srve" {
				args = append([]string{"serve", "--http.addr", "127.0.0.1:0", "--admin.addr", "127.0.0.1:1", "--config", filepath.Join(repoRoot, "configs", "coalesce.yaml"), "--models.repository", filepath.Join(repoRoot, "models")}, args...)
			}
			cmd := exec.Command(binPath, args...)
			cmd.Env = append(os.Environ(), tt.env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit = %v; want status 2 (stderr %s)", err, stderr.String())
			}
			msg := strings.TrimRight(stderr.String(), "\n")
			if strings.Contains(msg, "\n") || !strings.Contains(msg, tt.want) {
				t.Errorf("stderr = %q; want one line containing %q", msg, tt.want)
			}
		})
	}
}

// TestOwnRepositoryFromRepoRoot runs the binary as a new user did: from
// the repository root, where it reads configs/coalesce.yaml, with a
// repository of their own. The file once set models.default: digits-mlp,
// so start-up failed with 'model "digits-mlp": model not found'.
func TestOwnRepositoryFromRepoRoot(t *testing.T) {
	mine := t.TempDir()
	for _, f := range []string{"config.yaml", filepath.Join("1", "model.onnx")} {
		if err := os.MkdirAll(filepath.Join(mine, "iris", filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mine, "iris", f), readFile(t, "models", "iris-logreg", f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	s := startServerIn(t, root, "--models.repository", mine)
	st, body, err := httpDo(s.addr, "POST", "/predict", []byte(`{"features": [5.8, 2.8, 5.1, 2.4]}`), nil)
	if err != nil || st != 200 || string(body) != `{"prediction":["virginica"]}` {
		t.Errorf("/predict = %d %s %v; want 200 {\"prediction\":[\"virginica\"]} from the only model", st, body, err)
	}
}

func TestHealthcheckAndVersion(t *testing.T) {
	s := startServer(t)
	cmd := exec.Command(binPath, "healthcheck", "--http.addr", s.addr, "--admin.addr", freeAddr(t), "--models.repository", filepath.Join(repoRoot, "models"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("healthcheck against a ready server: %v %s", err, out)
	}
	cmd = exec.Command(binPath, "healthcheck", "--http.addr", freeAddr(t), "--admin.addr", freeAddr(t), "--models.repository", filepath.Join(repoRoot, "models"))
	var ee *exec.ExitError
	if err := cmd.Run(); !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("healthcheck with no server = %v; want exit status 1", err)
	}
	out, err := exec.Command(binPath, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "coalesce ") || !strings.Contains(string(out), "go1.") || !strings.Contains(string(out), "commit ") {
		t.Errorf("version = %q, %v; want version, commit and Go version", out, err)
	}
	out, err = exec.Command(binPath, "--help").Output()
	if err != nil {
		t.Fatalf("--help: %v", err)
	}
	for _, key := range append(config.Keys(), "config") {
		if !strings.Contains(string(out), "--"+key+" ") && !strings.Contains(string(out), "--"+key+"[") {
			t.Errorf("--help does not list --%s", key)
		}
	}
}

// golden is the format of models/<name>/golden.json.
type golden struct {
	Framework string `json:"framework"`
	Inputs    map[string]goldenTensor
	Outputs   map[string]goldenTensor
}

// goldenTensor holds numbers (null: a missing value, NaN) or, for BYTES,
// strings.
type goldenTensor struct {
	Datatype string          `json:"datatype"`
	Shape    []int64         `json:"shape"`
	Raw      json.RawMessage `json:"data"`
	Data     []float64       `json:"-"`
	Strings  []string        `json:"-"`
}

func (g *goldenTensor) UnmarshalJSON(b []byte) error {
	type plain goldenTensor
	if err := json.Unmarshal(b, (*plain)(g)); err != nil {
		return err
	}
	return decodeData(g.Datatype, g.Raw, &g.Data, &g.Strings)
}

// decodeData decodes a JSON data array: strings for BYTES, else numbers
// with null as NaN.
func decodeData(datatype string, raw json.RawMessage, nums *[]float64, strs *[]string) error {
	if datatype == "BYTES" {
		return json.Unmarshal(raw, strs)
	}
	var vs []*float64
	if err := json.Unmarshal(raw, &vs); err != nil {
		return err
	}
	*nums = make([]float64, len(vs))
	for i, v := range vs {
		(*nums)[i] = math.NaN()
		if v != nil {
			(*nums)[i] = *v
		}
	}
	return nil
}

// jsonNumbers writes vs as a JSON array, NaN as null.
func jsonNumbers(vs []float64) []byte {
	b := []byte{'['}
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		if math.IsNaN(v) {
			b = append(b, "null"...)
		} else {
			b = strconv.AppendFloat(b, v, 'g', -1, 64)
		}
	}
	return append(b, ']')
}

// TestGoldenOverHTTP sends every golden input row of every shipped model
// through the whole server, as KServe V2 JSON (missing values as null) and
// as binary tensors (NaN), and compares every output with the producing
// framework's: ≤ 1e-5, labels exactly, XGBoost margins bit for bit.
func TestGoldenOverHTTP(t *testing.T) {
	s := startServer(t)
	dirs, _ := filepath.Glob(filepath.Join(repoRoot, "models", "*", "golden.json"))
	if len(dirs) < 6 {
		t.Fatalf("found %d golden files; want one per shipped model (6)", len(dirs))
	}
	for _, path := range dirs {
		model := filepath.Base(filepath.Dir(path))
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var g golden
		if err := json.Unmarshal(raw, &g); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, binary := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/binary=%v", model, binary), func(t *testing.T) {
				var hdr bytes.Buffer
				var blob []byte
				hdr.WriteString(`{"inputs":[`)
				first := true
				for name, in := range g.Inputs {
					if !first {
						hdr.WriteString(",")
					}
					first = false
					shape, _ := json.Marshal(in.Shape)
					if binary {
						for _, v := range in.Data {
							blob = appendF32(blob, float32(v))
						}
						fmt.Fprintf(&hdr, `{"name":%q,"shape":%s,"datatype":%q,"parameters":{"binary_data_size":%d}}`, name, shape, in.Datatype, 4*len(in.Data))
					} else {
						fmt.Fprintf(&hdr, `{"name":%q,"shape":%s,"datatype":%q,"data":%s}`, name, shape, in.Datatype, jsonNumbers(in.Data))
					}
				}
				hdr.WriteString(`]}`)
				headers := map[string]string{}
				body := hdr.Bytes()
				if binary {
					headers["Inference-Header-Content-Length"] = fmt.Sprint(hdr.Len())
					body = append(append([]byte(nil), body...), blob...)
				}
				st, resp, err := httpDo(s.addr, "POST", "/v2/models/"+model+"/infer", body, headers)
				if err != nil || st != 200 {
					t.Fatalf("infer = %d %s %v", st, resp, err)
				}
				var out struct {
					Outputs []struct {
						Name     string          `json:"name"`
						Datatype string          `json:"datatype"`
						Shape    []int64         `json:"shape"`
						Data     json.RawMessage `json:"data"`
					} `json:"outputs"`
				}
				if err := json.Unmarshal(resp, &out); err != nil {
					t.Fatal(err)
				}
				if len(out.Outputs) != len(g.Outputs) {
					t.Fatalf("%d outputs; want %d", len(out.Outputs), len(g.Outputs))
				}
				for _, o := range out.Outputs {
					want, ok := g.Outputs[o.Name]
					if !ok {
						t.Errorf("unexpected output %q", o.Name)
						continue
					}
					if fmt.Sprint(o.Shape) != fmt.Sprint(want.Shape) || o.Datatype != want.Datatype {
						t.Errorf("%s: %s%v; want %s%v", o.Name, o.Datatype, o.Shape, want.Datatype, want.Shape)
					}
					var nums []float64
					var strs []string
					if err := decodeData(o.Datatype, o.Data, &nums, &strs); err != nil {
						t.Fatalf("%s: %v", o.Name, err)
					}
					switch {
					case o.Datatype == "BYTES":
						if fmt.Sprint(strs) != fmt.Sprint(want.Strings) {
							t.Errorf("%s = %q; want %q", o.Name, strs, want.Strings)
						}
					case strings.HasPrefix(g.Framework, "xgboost") && o.Name == "margin":
						for i := range nums {
							if float32(nums[i]) != float32(want.Data[i]) {
								t.Errorf("margin[%d] = %v; want bit-exact %v", i, float32(nums[i]), float32(want.Data[i]))
							}
						}
					default:
						assertClose(t, o.Name, nums, want.Data, 1e-5)
					}
				}
			})
		}
	}
}

func appendF32(b []byte, f float32) []byte {
	u := math.Float32bits(f)
	return append(b, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
}
