package targets

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildCoalesce builds ../../cmd/coalesce into a temporary folder.
func buildCoalesce(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not on PATH: cannot build the coalesce binary")
	}
	bin := filepath.Join(t.TempDir(), "coalesce")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, goBin, "build", "-o", bin, "../../cmd/coalesce").CombinedOutput(); err != nil {
		t.Fatalf("go build ../../cmd/coalesce: %v\n%s", err, out)
	}
	return bin
}

func TestStartCoalesce(t *testing.T) {
	bin := buildCoalesce(t)
	ctx := testCtx(t, 2*time.Minute)
	tg, err := StartCoalesce(ctx, bin, "../../models")
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Stop()
	if tg.Name != "coalesce" || !strings.HasPrefix(tg.Addr, "127.0.0.1:") || !strings.HasPrefix(tg.MetricsURL, "http://127.0.0.1:") {
		t.Errorf("Target = %+v; want coalesce on 127.0.0.1 with a MetricsURL", tg)
	}
	if r := do(t, "GET", "http://"+tg.Addr+"/v2/health/ready", ""); r.status != 200 {
		t.Errorf("GET /v2/health/ready = %d; want 200", r.status)
	}
	before, err := Scrape(ctx, tg.MetricsURL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := os.ReadFile("../../models/digits-mlp/examples/predict.json")
	if err != nil {
		t.Fatal(err)
	}
	if r := do(t, "POST", "http://"+tg.Addr+"/predict?model=digits-mlp", string(body)); r.status != 200 {
		t.Errorf("POST /predict = %d %s; want 200", r.status, r.body)
	}
	after, err := Scrape(ctx, tg.MetricsURL)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for k := range after.Values {
		found = found || strings.HasPrefix(k, "coalesce_requests_total{")
	}
	if !found {
		t.Errorf("scrape of %s has no coalesce_requests_total series", tg.MetricsURL)
	}
	s := Summary(Delta(before, after))
	// The readiness GET between the scrapes counts as a request too.
	if s["requests"] < 1 || s["inference_calls"] != 1 || s["inference_rows"] != 1 || s["mean_batch_size"] != 1 || !(s["mean_inference_us"] > 0) {
		t.Errorf("Summary of one predict = %v; want requests >= 1, one call of one row, a positive mean", s)
	}
	cpu, err := CPUSeconds(tg.PID)
	if err != nil || cpu < 0 {
		t.Errorf("CPUSeconds(coalesce) = %v, %v; want >= 0, nil", cpu, err)
	}
	if err := tg.Stop(); err != nil {
		t.Errorf("Stop() = %v; want nil", err)
	}
	assertGroupGone(t, tg.PID)
	if _, err := Scrape(testCtx(t, 5*time.Second), tg.MetricsURL); err == nil {
		t.Error("Scrape after Stop = nil error; want one")
	}
}

func TestStartCoalesceBadRepository(t *testing.T) {
	bin := buildCoalesce(t)
	_, err := StartCoalesce(testCtx(t, time.Minute), bin, filepath.Join(t.TempDir(), "missing"))
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), "models.repository") {
		t.Errorf("StartCoalesce with a missing repository: %v; want exited before ready, with the log naming models.repository", err)
	}
}
