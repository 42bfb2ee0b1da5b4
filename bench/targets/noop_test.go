package targets

import (
	"net"
	"os"
	"testing"
	"time"
)

func TestServeNoop(t *testing.T) {
	checkGoroutines(t, func() {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1) // ServeNoop's result; written once
		go func() { served <- ServeNoop(ln) }()
		base := "http://" + ln.Addr().String()
		tests := []struct {
			method, path, body string
			status             int
			wantBody, allow    string
		}{
			{"POST", "/predict", `{"features":[1,2,3]}`, 200, `{"prediction":[0]}`, ""},
			{"POST", "/predict", "", 200, `{"prediction":[0]}`, ""},
			{"GET", "/predict", "", 405, "", "POST"},
			{"PUT", "/predict", "x", 405, "", "POST"},
			{"POST", "/v2/models/x/infer", "{}", 404, "", ""},
			{"GET", "/", "", 404, "", ""},
		}
		for _, tc := range tests {
			r := do(t, tc.method, base+tc.path, tc.body)
			status, body, hdr := r.status, r.body, r.header
			if status != tc.status || (tc.wantBody != "" && body != tc.wantBody) {
				t.Errorf("%s %s = %d %q; want %d %q", tc.method, tc.path, status, body, tc.status, tc.wantBody)
			}
			if got := hdr.Get("Allow"); got != tc.allow {
				t.Errorf("%s %s: Allow %q; want %q", tc.method, tc.path, got, tc.allow)
			}
			if tc.status == 200 && hdr.Get("Content-Type") != "application/json" {
				t.Errorf("%s %s: Content-Type %q; want application/json", tc.method, tc.path, hdr.Get("Content-Type"))
			}
		}
		ln.Close()
		timer := time.NewTimer(10 * time.Second)
		defer timer.Stop()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("ServeNoop after Close = %v; want nil", err)
			}
		case <-timer.C:
			t.Fatal("ServeNoop did not return within 10s of closing its listener")
		}
	})
}

func TestStartNoop(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tg, err := StartNoop(testCtx(t, time.Minute), exe, "noop")
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Stop()
	if tg.Name != "noop-fasthttp" || tg.MetricsURL != "" || tg.PID <= 0 {
		t.Errorf("Target = %+v; want noop-fasthttp, no MetricsURL, a PID", tg)
	}
	if host, _, _ := net.SplitHostPort(tg.Addr); host != "127.0.0.1" {
		t.Errorf("Addr = %q; want 127.0.0.1:port", tg.Addr)
	}
	if r := do(t, "POST", "http://"+tg.Addr+"/predict", `{"features":[0]}`); r.status != 200 || r.body != noopReply {
		t.Errorf("POST /predict = %d %q; want 200 %q", r.status, r.body, noopReply)
	}
	if err := tg.Stop(); err != nil {
		t.Errorf("Stop() = %v; want nil", err)
	}
	assertGroupGone(t, tg.PID)
}
