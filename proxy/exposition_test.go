package proxy

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestWriteMetrics(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		var b bytes.Buffer
		writeMetrics(&b, []byte(in))
		if b.String() != want {
			t.Errorf("writeMetrics(%q) =\n%s\nwant\n%s", in, b.String(), want)
		}
	}
	// Help filled in.
	f("# HELP coalesce_expired_total\n# TYPE coalesce_expired_total counter\ncoalesce_expired_total{model=\"a\"} 0\n",
		"# HELP coalesce_expired_total "+families["coalesce_expired_total"].help+"\n# TYPE coalesce_expired_total counter\ncoalesce_expired_total{model=\"a\"} 0\n")
	// A dropped family disappears with its samples; the next one stays.
	f("# HELP go_cpu_count\n# TYPE go_cpu_count counter\ngo_cpu_count 2\n# HELP go_goroutines\n# TYPE go_goroutines gauge\ngo_goroutines 7\n",
		"# HELP go_goroutines "+families["go_goroutines"].help+"\n# TYPE go_goroutines gauge\ngo_goroutines 7\n")
	// A corrected type.
	f("# HELP process_io_read_bytes_total\n# TYPE process_io_read_bytes_total gauge\nprocess_io_read_bytes_total 5\n",
		"# HELP process_io_read_bytes_total "+families["process_io_read_bytes_total"].help+"\n# TYPE process_io_read_bytes_total counter\nprocess_io_read_bytes_total 5\n")
	// An unknown family keeps its empty help, for the lint tests to catch.
	f("# HELP x_total\n# TYPE x_total counter\nx_total 1\n", "# HELP x_total\n# TYPE x_total counter\nx_total 1\n")
	// No trailing newline, no metadata.
	f("a 1", "a 1")
	f("", "")
}

func TestAppendHelp(t *testing.T) {
	if got := string(appendHelp(nil, "a\\b\nc")); got != `a\\b\nc` {
		t.Errorf("appendHelp = %q; want %q", got, `a\\b\nc`)
	}
}

// scrape returns GET /metrics of s's admin plane.
func scrape(t *testing.T, s *Server) []byte {
	t.Helper()
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/metrics")
	s.AdminHandler(s.set, false)(&ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("GET /metrics = %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	return append([]byte(nil), ctx.Response.Body()...)
}

// parseFamilies returns, by family, its HELP text and TYPE, and every
// sample line.
func parseFamilies(t *testing.T, text []byte) (help, typ map[string]string, samples []string) {
	t.Helper()
	help, typ = map[string]string{}, map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# HELP "):
			name, text, _ := strings.Cut(line[len("# HELP "):], " ")
			help[name] = text
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(line)
			typ[f[2]] = f[3]
		case line != "":
			samples = append(samples, line)
		}
	}
	return help, typ, samples
}

// TestMetricsHelp: every family on /metrics has HELP text and a TYPE
// (written before its samples), the dropped families are absent, and the
// state gauges are there.
func TestMetricsHelp(t *testing.T) {
	s, c, _ := testServer(t)
	do(t, c, "POST", "/predict", []byte(`{"features":[1,5,2,3]}`))
	text := scrape(t, s)
	help, typ, samples := parseFamilies(t, text)
	for _, line := range samples {
		name := line[:strings.IndexAny(line, "{ ")]
		fam := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base := strings.TrimSuffix(name, suffix); base != name && (typ[base] == "histogram" || typ[base] == "summary") {
				fam = base
			}
		}
		if help[fam] == "" {
			t.Errorf("family %s has no HELP text; add it to families in exposition.go", fam)
		}
		if typ[fam] == "" {
			t.Errorf("family %s has no TYPE", fam)
		}
	}
	for name, f := range families {
		if f.drop && bytes.Contains(text, []byte("\n"+name)) {
			t.Errorf("/metrics has %s, which families drops", name)
		}
	}
	for _, want := range []string{
		`coalesce_inflight_requests 0`,
		`coalesce_draining 0`,
		`coalesce_model_ready{model="double",version="2"} 1`,
		`coalesce_queue_capacity_rows{model="double",version="2"} `,
		`coalesce_shed_total{reason="max_inflight"} 0`,
		`coalesce_requests_total{model="double",version="2",protocol="predict",code="200"} 1`,
	} {
		if !bytes.Contains(text, []byte("\n"+want)) {
			t.Errorf("/metrics has no line starting %q", want)
		}
	}
	s.SetDraining()
	text = scrape(t, s)
	for _, want := range []string{`coalesce_draining 1`, `coalesce_model_ready{model="double",version="2"} 0`} {
		if !bytes.Contains(text, []byte("\n"+want+"\n")) {
			t.Errorf("/metrics while draining has no line %q", want)
		}
	}
}

// TestMetricsLint: promtool check metrics, the linter Prometheus ships,
// finds nothing to report on /metrics.
func TestMetricsLint(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian package prometheus; .ci/run installs it)")
	}
	s, c, _ := testServer(t)
	do(t, c, "POST", "/predict", []byte(`{"features":[1,5,2,3]}`))
	do(t, c, "GET", "/nope", nil)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape(t, s))
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestShedInflightCounted: a request refused at the edge for
// http.max_inflight counts in coalesce_shed_total{reason="max_inflight"}.
func TestShedInflightCounted(t *testing.T) {
	cfg := testConfig()
	cfg.HTTP.MaxInflight = 4
	s, c, _ := testServerWith(t, cfg)
	s.inflight.Store(4) // four requests in flight
	if r := do(t, c, "POST", "/predict", []byte(`{"features":[1,5,2,3]}`)); r.status != 503 {
		t.Fatalf("POST with max_inflight requests in flight = %d; want 503", r.status)
	}
	s.inflight.Store(0)
	if got := s.met.shedInflight.Get(); got != 1 {
		t.Errorf("coalesce_shed_total{reason=\"max_inflight\"} = %d; want 1", got)
	}
}
