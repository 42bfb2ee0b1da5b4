package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestRulesLive runs a real Prometheus (Debian's prometheus package)
// against a running Coalesce for a few seconds, scraping every second and
// evaluating the rules every second, while a client sends predictions.
// Then every recording rule has series, every alert's signal (its
// expression without the threshold) has series, every rule evaluates
// without error, and every dashboard query has series; the planned rules
// and the cache panel, whose metrics Coalesce does not expose yet, have
// none. It skips, saying so, when prometheus is not installed.
func TestRulesLive(t *testing.T) {
	promBin := lookPath(t, "prometheus")
	if testing.Short() {
		t.Skip("-short: starts Coalesce and Prometheus for ~15s")
	}
	dir := t.TempDir()

	// Coalesce, built from this checkout.
	bin := filepath.Join(dir, "coalesce")
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH; it builds Coalesce")
	}
	build := exec.Command(goBin, "build", "-o", bin, "./cmd/coalesce")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/coalesce: %v\n%s", err, out)
	}
	httpAddr, adminAddr, promAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	var coalesceLog bytes.Buffer
	srv := exec.Command(bin, "serve", "--config", "../configs/coalesce.yaml", "--models.repository", "../models",
		"--http.addr", httpAddr, "--admin.addr", adminAddr)
	srv.Stdout, srv.Stderr = &coalesceLog, &coalesceLog
	stopOnCleanup(t, srv)
	if err := waitReady(httpAddr, nil, 30*time.Second); err != nil {
		t.Fatalf("coalesce: %v\n%s", err, coalesceLog.Bytes())
	}

	// Traffic until the test ends: predictions on two models and
	// protocols, and a 404.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	predict, err := os.ReadFile("../models/digits-mlp/examples/predict.json")
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		c := &http.Client{Timeout: 2 * time.Second}
		reqs := []struct{ path, body string }{
			{"/predict", string(predict)},
			{"/v2/models/iris-logreg/infer", `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.8,2.8,5.1,2.4]}]}`},
			{"/nope", ""},
		}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			r := reqs[i%len(reqs)]
			if resp, err := c.Post("http://"+httpAddr+r.path, "application/json", strings.NewReader(r.body)); err == nil {
				resp.Body.Close()
			}
		}
	})

	// Prometheus with the rules, scraping Coalesce's admin plane.
	rules, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	promCfg := filepath.Join(dir, "prometheus.yml")
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: coalesce
    static_configs:
      - targets: [%q]
`, rules, adminAddr)
	if err := os.WriteFile(promCfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var promLog bytes.Buffer
	prom := exec.Command(promBin, "--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	prom.Stdout, prom.Stderr = &promLog, &promLog
	stopOnCleanup(t, prom)

	// What must, and what must not, answer with series.
	type check struct {
		what, query string
		want        bool // series expected
	}
	var checks []check
	for _, g := range loadRules(t) {
		for _, r := range g.Rules {
			q := r.Record
			if r.Alert != "" {
				if q, err = signal(r.Expr); err != nil {
					t.Fatal(err)
				}
			}
			checks = append(checks, check{"rule " + r.Record + r.Alert, q, g.Name != plannedGroup})
		}
	}
	_, qs := loadDashboard(t)
	for _, q := range qs {
		absent := false
		for _, m := range absentMetrics {
			absent = absent || strings.Contains(q.expr, m)
		}
		checks = append(checks, check{"dashboard panel " + q.panel, q.expr, !absent})
	}

	api := "http://" + promAddr + "/api/v1/"
	deadline := time.Now().Add(60 * time.Second)
	var failing []string
	for {
		failing = failing[:0]
		for _, c := range checks {
			n, err := querySeries(api, c.query)
			switch {
			case err != nil:
				failing = append(failing, fmt.Sprintf("%s: %v", c.what, err))
			case c.want && n == 0:
				failing = append(failing, fmt.Sprintf("%s: no series for %s", c.what, c.query))
			case !c.want && n > 0:
				failing = append(failing, fmt.Sprintf("%s: %d series for %s, whose metrics were listed as absent; move the rule out of %s or the metric out of absentMetrics", c.what, n, c.query, plannedGroup))
			}
		}
		if len(failing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	for _, f := range failing {
		t.Error(f)
	}
	if len(failing) > 0 {
		t.Logf("prometheus log:\n%s", promLog.Bytes())
	}

	// Every rule evaluated without error.
	var rulesResp struct {
		Data struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := getJSON(api+"rules", &rulesResp); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range rulesResp.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health != "ok" {
				t.Errorf("rule %s/%s: health %q %s", g.Name, r.Name, r.Health, r.LastError)
			}
		}
	}
	t.Logf("%d checks against Prometheus (%d rules loaded, all evaluated)", len(checks), n)
}

// stopOnCleanup starts cmd and stops it at the test's end: SIGTERM, then
// SIGKILL after 10s.
func stopOnCleanup(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
}

// querySeries runs an instant query and returns how many series answer.
func querySeries(api, query string) (int, error) {
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := getJSON(api+"query?query="+url.QueryEscape(query), &r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query %s: %s", query, r.Error)
	}
	return len(r.Data.Result), nil
}

func getJSON(u string, v any) error {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
