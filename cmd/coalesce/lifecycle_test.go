package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSIGHUPRescan: with models.control poll (and a settle delay too long
// to matter), SIGHUP loads a version copied into the repository and
// retires the one it replaces; the repository API and TF Serving's status
// say so.
func TestSIGHUPRescan(t *testing.T) {
	dir := t.TempDir()
	cp := func(from, to string) {
		t.Helper()
		b := readFile(t, "models", "iris-logreg", from)
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, "iris-logreg", to)), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, "iris-logreg", to), b, 0o644))
	}
	cp("config.yaml", "config.yaml")
	cp("golden.json", "golden.json")
	cp(filepath.Join("1", "model.onnx"), filepath.Join("1", "model.onnx"))
	s := startServerIn(t, "", "--models.repository", dir, "--models.control", "poll", "--models.settle_delay", "1h")
	cp(filepath.Join("1", "model.onnx"), filepath.Join("2", "model.onnx"))
	must(t, s.cmd.Process.Signal(syscall.SIGHUP))
	var index string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		_, body, _ := httpDo(s.admin, "POST", "/v2/repository/index", nil, nil)
		// Version 1 is UNLOADING until its queue drained and its backend
		// closed, then UNAVAILABLE.
		if index = string(body); strings.Contains(index, `{"name":"iris-logreg","version":"2","state":"READY","reason":""}`) &&
			strings.Contains(index, `{"name":"iris-logreg","version":"1","state":"UNAVAILABLE","reason":"unloaded"}`) {
			break
		}
	}
	if !strings.Contains(index, `"version":"2","state":"READY"`) || !strings.Contains(index, `{"name":"iris-logreg","version":"1","state":"UNAVAILABLE","reason":"unloaded"}`) {
		t.Fatalf("index after SIGHUP = %s; want version 2 READY and 1 unloaded\nlog: %s", index, s.stdout)
	}
	if _, body, _ := httpDo(s.addr, "GET", "/v1/models/iris-logreg", nil, nil); !strings.Contains(string(body), `{"version":"2","state":"AVAILABLE"`) {
		t.Errorf("TF Serving status = %s; want version 2 AVAILABLE", body)
	}
	if !strings.Contains(s.stdout.String(), "SIGHUP: rescanning the model repository") {
		t.Errorf("no SIGHUP log line in: %s", s.stdout)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
