package targets

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sharedPeers is the peers folder beside the repository (read-only in
// CI); BENCH_PEERS overrides it.
func sharedPeers(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("BENCH_PEERS")
	if dir == "" {
		dir = "../../../shared/peers"
	}
	if _, err := os.Stat(filepath.Join(dir, "flask_app.py")); err != nil {
		t.Skipf("no peers folder with flask_app.py at %s (set BENCH_PEERS): %v", dir, err)
	}
	return dir
}

// preparePython returns a Python ready to start servers, or skips the
// test with the reason PreparePython gives.
func preparePython(t *testing.T) *Python {
	t.Helper()
	peers := sharedPeers(t)
	shared.once.Do(func() {
		if shared.dir, shared.err = os.MkdirTemp("", "targets-test-"); shared.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		shared.py, shared.err = PreparePython(ctx, peers, shared.dir)
	})
	var skip *SkippedError
	if errors.As(shared.err, &skip) {
		t.Skip(skip.Reason)
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	p := *shared.py // a copy: tests may set Env
	return &p
}

func TestPreparePython(t *testing.T) {
	work := t.TempDir()
	ctx := testCtx(t, 5*time.Minute)
	p, err := PreparePython(ctx, sharedPeers(t), work)
	var skip *SkippedError
	if errors.As(err, &skip) {
		if !strings.Contains(skip.Reason, "apt-get install") {
			t.Errorf("SkippedError.Reason %q does not say how to install", skip.Reason)
		}
		t.Skip(skip.Reason)
	}
	if err != nil {
		t.Fatal(err)
	}
	if p.Exe != "/usr/bin/python3" || p.PeersDir != filepath.Join(work, "peers") {
		t.Errorf("Python = %+v; want /usr/bin/python3 in %s/peers", p, work)
	}
	for _, m := range peerModels {
		if fi, err := os.Stat(p.Models[m]); err != nil || fi.Size() == 0 {
			t.Errorf("model %s: %v", m, err)
		}
	}
	for name, path := range p.Bodies {
		if b, err := os.ReadFile(path); err != nil || !strings.HasPrefix(string(b), `{"features":`) {
			t.Errorf("body %s at %s: %v %.40q", name, path, err, b)
		}
	}
	if b, err := p.Body("rf_cancer"); err != nil || filepath.Base(b) != "cancer.json" {
		t.Errorf("Body(rf_cancer) = %q, %v; want .../cancer.json", b, err)
	}
	if _, err := p.Body("nothing"); err == nil {
		t.Error("Body(nothing) = nil error; want one")
	}
	// The copy is writable even when the source is not.
	if err := os.WriteFile(filepath.Join(p.PeersDir, "flask_app.py"), []byte("# scratch\n"), 0o644); err != nil {
		t.Errorf("peers copy not writable: %v", err)
	}

	// A second call reuses the trained models.
	stamp := time.Now().Add(-time.Hour)
	if err := os.Chtimes(p.Models["mlp_digits"], stamp, stamp); err != nil {
		t.Fatal(err)
	}
	if _, err := PreparePython(ctx, sharedPeers(t), work); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p.Models["mlp_digits"]); err != nil || !fi.ModTime().Equal(stamp) {
		t.Errorf("second PreparePython retrained mlp_digits (mtime %v, %v); want the cached file", fi.ModTime(), err)
	}
}

func TestPythonTargets(t *testing.T) {
	p := preparePython(t)
	body, err := os.ReadFile(p.Bodies["digits"])
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 3*time.Minute)
	tests := []struct {
		name    string
		start   func() (*Target, error)
		members int // live processes in the group once serving
	}{
		{"flask", func() (*Target, error) { return p.StartFlask(ctx, "mlp_digits") }, 1},
		{"gunicorn", func() (*Target, error) { return p.StartGunicorn(ctx, "mlp_digits", 2) }, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg, err := tc.start()
			if err != nil {
				t.Fatal(err)
			}
			defer tg.Stop()
			if tg.Name != tc.name || !strings.HasPrefix(tg.Addr, "127.0.0.1:") || tg.MetricsURL != "" {
				t.Errorf("Target = %+v; want %s on 127.0.0.1 without metrics", tg, tc.name)
			}
			r := do(t, "POST", "http://"+tg.Addr+"/predict", string(body))
			if r.status != 200 || !strings.HasPrefix(strings.ReplaceAll(r.body, " ", ""), `{"prediction":[`) {
				t.Errorf("POST /predict = %d %q; want 200 {\"prediction\": [...]}", r.status, r.body)
			}
			// Werkzeug and gunicorn's sync workers both answer
			// "Connection: close": clients reconnect per request.
			if !r.close {
				t.Errorf("%s kept the connection open; want Connection: close", tc.name)
			}
			waitMembers(t, tg.PID, tc.members)
			if cpu, err := CPUSeconds(tg.PID); err != nil || !(cpu > 0) {
				t.Errorf("CPUSeconds(%s) = %v, %v; want > 0 (it imported sklearn)", tc.name, cpu, err)
			}
			if err := tg.Stop(); err != nil {
				t.Errorf("Stop() = %v; want nil", err)
			}
			assertGroupGone(t, tg.PID)
		})
	}

	if _, err := p.StartGunicorn(ctx, "mlp_digits", 0); err == nil {
		t.Error("StartGunicorn with 0 workers = nil error; want one")
	}
	if _, err := p.StartFlask(ctx, "no_such_model"); err == nil {
		t.Error("StartFlask of an unknown model = nil error; want one")
	}
}

func TestPythonEnv(t *testing.T) {
	p := preparePython(t)
	p.Env = []string{"OPENBLAS_NUM_THREADS=1"}
	tg, err := p.StartFlask(testCtx(t, 2*time.Minute), "logreg_digits")
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Stop()
	env, err := os.ReadFile("/proc/" + strconv.Itoa(tg.PID) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"OPENBLAS_NUM_THREADS=1", "MODEL_PATH=" + p.Models["logreg_digits"], "PORT="} {
		if !strings.Contains(string(env), "\x00"+want) {
			t.Errorf("server environment lacks %s", want)
		}
	}
	if err := tg.Stop(); err != nil {
		t.Errorf("Stop() = %v; want nil", err)
	}
}

func TestPythonSkips(t *testing.T) {
	dir := t.TempDir()
	// A python3 that lacks two of the modules, as the check sees it.
	lacking := filepath.Join(dir, "python3-lacking")
	if err := os.WriteFile(lacking, []byte("#!/bin/sh\necho flask gunicorn\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, want string
		err        func() error
	}{
		{"no interpreter", "not found", func() error { return checkPython(testCtx(t, time.Minute), filepath.Join(dir, "python3")) }},
		{"no modules", "cannot import flask, gunicorn", func() error { return checkPython(testCtx(t, time.Minute), lacking) }},
		{"no peers", "has no flask_app.py", func() error {
			_, err := PreparePython(testCtx(t, time.Minute), filepath.Join(dir, "nowhere"), dir)
			return err
		}},
	}
	for _, tc := range tests {
		err := tc.err()
		var skip *SkippedError
		if !errors.As(err, &skip) || !strings.Contains(skip.Reason, tc.want) {
			t.Errorf("%s: %v; want a SkippedError saying %q", tc.name, err, tc.want)
			continue
		}
		if tc.name != "no peers" && !strings.Contains(skip.Reason, "apt-get install -y") {
			t.Errorf("%s: reason %q does not say how to install", tc.name, skip.Reason)
		}
	}
}
