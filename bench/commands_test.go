package main

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/coalesce-ml/coalesce/bench/report"
)

// TestRunAgainstDownServer checks that bench run against an address where
// nothing listens fails, naming the cause, instead of writing a report of
// errors and exiting 0.
func TestRunAgainstDownServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	err = runCmd(context.Background(), []string{"-addr", addr, "-models", modelsDir, "-c", "2", "-warmup", "0s", "-d", "200ms", "-out", t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "every request to "+addr+" failed") || !strings.Contains(err.Error(), "dial: connection refused ×") {
		t.Errorf("bench run against a closed port = %v; want an error naming the address and connection refused", err)
	}
}

func TestAllFailed(t *testing.T) {
	f := func(r report.Run, want string) {
		t.Helper()
		err := allFailed(r, "h:1")
		switch {
		case want == "" && err != nil:
			t.Errorf("allFailed(%+v) = %v; want nil", r, err)
		case want != "" && (err == nil || err.Error() != want):
			t.Errorf("allFailed(%+v) = %v; want %q", r, err, want)
		}
	}
	f(report.Run{Requests: 10, OK: 1, Errors: map[string]int64{"500": 9}}, "")
	f(report.Run{Requests: 0, Errors: map[string]int64{"dial: connection refused": 858}},
		"every request to h:1 failed: 858 errors: dial: connection refused ×858")
	f(report.Run{Requests: 5, Errors: map[string]int64{"404": 5, "net: timeout": 7, "net: EOF (connection closed before a response)": 1, "500": 2}},
		"every request to h:1 failed: 15 errors: net: timeout ×7, status 404 ×5, status 500 ×2, 1 more kinds")
	f(report.Run{Requests: 4, Shed: 4}, "every request to h:1 failed: 4 errors: shed (429/503) ×4")
	f(report.Run{}, "no request to h:1 was answered within the run")
}
