package targets

import (
	"math"
	"strings"
	"testing"
)

func mustParse(t *testing.T, text string) Metrics {
	t.Helper()
	m, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return m
}

// same compares floats, NaN equal to NaN.
func same(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }

func TestParse(t *testing.T) {
	m := mustParse(t, `# HELP foo_total Requests, "quoted" and \\ escaped.
# TYPE foo_total counter
foo_total 3
# a comment
foo_total{code="200"} 7 1700000000000

# TYPE lat_seconds histogram
lat_seconds_bucket{model="m",le="0.1"} 2
lat_seconds_bucket{model="m",le="+Inf"} 5
lat_seconds_sum{model="m"} 1.25e-1
lat_seconds_count{model="m"} 5
quote{path="say \"hi\", then {leave}",dir="a\\b",text="two\nlines"} 1
spaced{ a="1" , b = "2", } 4
empty{} 9
odd_escape{v="tab\there"} 1
nan NaN
pinf{x="y"} +Inf
ninf -Inf
colon:name 2
`)
	want := map[string]float64{
		`foo_total`:                               3,
		`foo_total{code="200"}`:                   7,
		`lat_seconds_bucket{model="m",le="0.1"}`:  2,
		`lat_seconds_bucket{model="m",le="+Inf"}`: 5,
		`lat_seconds_sum{model="m"}`:              0.125,
		`lat_seconds_count{model="m"}`:            5,
		`quote{path="say \"hi\", then {leave}",dir="a\\b",text="two\nlines"}`: 1,
		`spaced{a="1",b="2"}`:        4,
		`empty`:                      9,
		`odd_escape{v="tab\\there"}`: 1,
		`nan`:                        math.NaN(),
		`pinf{x="y"}`:                math.Inf(1),
		`ninf`:                       math.Inf(-1),
		`colon:name`:                 2,
	}
	for k, v := range want {
		got, ok := m.Values[k]
		if !ok {
			t.Errorf("Values lacks %s", k)
		} else if !same(got, v) {
			t.Errorf("Values[%s] = %v; want %v", k, got, v)
		}
	}
	if len(m.Values) != len(want) {
		t.Errorf("len(Values) = %d; want %d: %v", len(m.Values), len(want), m.Values)
	}
	if m.Types["foo_total"] != "counter" || m.Types["lat_seconds"] != "histogram" || len(m.Types) != 2 {
		t.Errorf("Types = %v; want foo_total counter, lat_seconds histogram", m.Types)
	}
	// The label values come back unescaped.
	_, labels, _, err := parseSeries(`quote{path="say \"hi\", then {leave}",dir="a\\b",text="two\nlines"}`)
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := []label{{"path", `say "hi", then {leave}`}, {"dir", `a\b`}, {"text", "two\nlines"}}
	if len(labels) != len(wantLabels) {
		t.Fatalf("labels = %q; want %q", labels, wantLabels)
	}
	for i := range labels {
		if labels[i] != wantLabels[i] {
			t.Errorf("label %d = %q; want %q", i, labels[i], wantLabels[i])
		}
	}
}

func TestParseErrors(t *testing.T) {
	f := func(text, wantErr string) {
		t.Helper()
		_, err := Parse(strings.NewReader(text))
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("Parse(%q) error = %v; want one containing %q", text, err, wantErr)
		}
	}
	f("ok 1\nfoo{a=\"1\" 2\n", "line 2")
	f(`foo{a="1"`, "want ',' or '}'")
	f(`foo{a="1",`, "unterminated label set")
	f(`foo{a="1\"} 2`, "unterminated value")
	f(`foo{a=1} 2`, `want ="value"`)
	f(`foo{a="1" b="2"} 2`, "want ',' or '}'")
	f(`foo{="1"} 2`, "bad label name")
	f(`foo`, "no value")
	f(`foo{a="1"} abc`, "value")
	f(`{a="1"} 1`, "no metric name")
	f(`9lives 1`, "no metric name")
}

func TestCumulative(t *testing.T) {
	m := mustParse(t, `# TYPE reqs counter
# TYPE up gauge
# TYPE temp_total gauge
# TYPE lat histogram
# TYPE rpc summary
# TYPE om counter
`)
	f := func(series string, want bool) {
		t.Helper()
		if got := m.Cumulative(series); got != want {
			t.Errorf("Cumulative(%s) = %v; want %v", series, got, want)
		}
	}
	f(`reqs{code="200"}`, true)
	f(`up`, false)
	f(`temp_total`, false) // the # TYPE wins over the name
	f(`lat_bucket{le="1"}`, true)
	f(`lat_sum`, true)
	f(`lat_count`, true)
	f(`rpc{quantile="0.99"}`, false)
	f(`rpc_sum`, true)
	f(`om_total`, true) // OpenMetrics names the family without _total
	// Without # TYPE: by name.
	f(`coalesce_requests_total{model="m"}`, true)
	f(`x_seconds_bucket{le="+Inf"}`, true)
	f(`x_seconds_sum`, true)
	f(`x_seconds_count`, true)
	f(`go_goroutines`, false)
	f(`go_gc_duration_seconds{quantile="0.5"}`, false)
}

func TestDelta(t *testing.T) {
	before := mustParse(t, `# TYPE g_total gauge
c_total{m="a"} 10
c_total{m="b"} 5
h_bucket{le="1"} 3
h_bucket{le="+Inf"} 4
g 7
g_total 100
reset_total 50
gone_total 1
`)
	after := mustParse(t, `# TYPE g_total gauge
c_total{m="a"} 25
c_total{m="b"} 5
h_bucket{le="1"} 4
h_bucket{le="+Inf"} 9
g 3
g_total 90
reset_total 20
new_total 6
nan_total NaN
`)
	d := Delta(before, after)
	want := map[string]float64{
		`c_total{m="a"}`: 15, `c_total{m="b"}`: 0,
		`h_bucket{le="1"}`: 1, `h_bucket{le="+Inf"}`: 5,
		`g`: 3, `g_total`: 90, // gauges: after's value
		`reset_total`: 20, // restarted: counts from zero
		`new_total`:   6,  // appeared during the run
		`nan_total`:   math.NaN(),
	}
	for k, v := range want {
		if got, ok := d.Values[k]; !ok || !same(got, v) {
			t.Errorf("Delta[%s] = %v, %v; want %v", k, got, ok, v)
		}
	}
	if len(d.Values) != len(want) {
		t.Errorf("Delta has %d series; want %d (only after's): %v", len(d.Values), len(want), d.Values)
	}
	if d.Types["g_total"] != "gauge" {
		t.Errorf("Delta Types = %v; want after's", d.Types)
	}
	if z := Delta(Metrics{}, Metrics{}); len(z.Values) != 0 {
		t.Errorf("Delta of empty scrapes = %v; want empty", z.Values)
	}
}

func TestHistogramQuantile(t *testing.T) {
	inf := math.Inf(1)
	bs := func() []bucket { return []bucket{{1, 10}, {2, 30}, {4, 90}, {inf, 100}} }
	f := func(q float64, bs []bucket, want float64) {
		t.Helper()
		if got := histogramQuantile(q, bs); math.Abs(got-want) > 1e-9 && !same(got, want) {
			t.Errorf("histogramQuantile(%v, %v) = %v; want %v", q, bs, got, want)
		}
	}
	f(0.05, bs(), 0.5)       // rank 5 of the first bucket's 10, from 0 to 1
	f(0.1, bs(), 1)          // exactly the first bucket
	f(0.5, bs(), 2+2*20/60.) // rank 50: 20 into the (2,4] bucket's 60
	f(0.9, bs(), 4)
	f(0.99, bs(), 4) // in +Inf: the highest finite bound
	f(0.5, []bucket{{1, 0}, {2, 0}, {inf, 0}}, math.NaN())
	f(0.5, nil, math.NaN())
	f(0.5, []bucket{{inf, 3}}, math.NaN())
	f(0.5, []bucket{{-1, 2}, {1, 4}}, -1) // a first bound <= 0 is returned as is
	f(0.5, []bucket{{1, 4}, {2, 3.9999}, {4, 8}}, 1)
	f(1, []bucket{{1, 2}, {2, 2}, {3, 4}}, 3)
	f(0.5, []bucket{{1, 2}, {5, 4}}, 1) // no +Inf bucket: the last count is the total
}

func TestSummary(t *testing.T) {
	before := mustParse(t, `coalesce_requests_total{model="a",protocol="predict",code="200"} 100
coalesce_requests_total{model="",protocol="other",code="404"} 1
coalesce_inference_calls_total{model="a"} 10
coalesce_inference_rows_total{model="a"} 10
coalesce_inference_duration_seconds_sum{model="a"} 1
coalesce_inference_duration_seconds_count{model="a"} 10
`)
	after := mustParse(t, `coalesce_requests_total{model="a",protocol="predict",code="200"} 400
coalesce_requests_total{model="b",protocol="v2",code="200"} 100
coalesce_requests_total{model="",protocol="other",code="404"} 2
coalesce_inference_calls_total{model="a"} 60
coalesce_inference_calls_total{model="b"} 50
coalesce_inference_rows_total{model="a"} 310
coalesce_inference_rows_total{model="b"} 100
coalesce_inference_duration_seconds_sum{model="a"} 1.004
coalesce_inference_duration_seconds_sum{model="b"} 0.006
coalesce_inference_duration_seconds_count{model="a"} 60
coalesce_inference_duration_seconds_count{model="b"} 50
coalesce_queue_wait_seconds_bucket{model="a",le="0.0001"} 40
coalesce_queue_wait_seconds_bucket{model="a",le="0.001"} 50
coalesce_queue_wait_seconds_bucket{model="a",le="+Inf"} 50
coalesce_queue_wait_seconds_bucket{model="b",le="0.0001"} 0
coalesce_queue_wait_seconds_bucket{model="b",le="0.001"} 40
coalesce_queue_wait_seconds_bucket{model="b",le="+Inf"} 50
coalesce_queue_wait_seconds_sum{model="a"} 0.002
coalesce_queue_wait_seconds_sum{model="b"} 0.048
coalesce_queue_wait_seconds_count{model="a"} 50
coalesce_queue_wait_seconds_count{model="b"} 50
coalesce_batch_size_bucket{model="a",le="1"} 20
coalesce_batch_size_bucket{model="a",le="8"} 60
coalesce_batch_size_bucket{model="a",le="+Inf"} 100
coalesce_batch_size_max 64
`)
	got := Summary(Delta(before, after))
	want := map[string]float64{
		"requests":          401,
		"inference_calls":   100,
		"inference_rows":    400,
		"mean_batch_size":   4,
		"mean_inference_us": 0.01 / 100 * 1e6,
		// Both models' waits: 40 <= 100µs, 50 more <= 1ms, 10 above.
		"mean_queue_wait_us": 0.05 / 100 * 1e6,
		"p50_queue_wait_us":  100 + 900*10/50.,
		"p99_queue_wait_us":  1000,
		"batch_size_p50":     1 + 7*30/40.,
		"batch_size_p99":     8,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || math.Abs(g-v) > 1e-9*math.Max(1, v) {
			t.Errorf("Summary[%s] = %v, %v; want %v", k, g, ok, v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("Summary = %v; want only %v", got, want)
	}

	// Only request counters: the other figures are absent, not zero.
	got = Summary(mustParse(t, `coalesce_requests_total{code="200"} 5
coalesce_inference_calls_total{model="a"} 0
coalesce_queue_wait_seconds_bucket{le="+Inf"} 0
`))
	if len(got) != 2 || got["requests"] != 5 || got["inference_calls"] != 0 {
		t.Errorf("Summary of idle counters = %v; want requests 5 and inference_calls 0 only", got)
	}
}

func TestSummaryVMRange(t *testing.T) {
	// VictoriaMetrics histograms: per-range counts, not cumulative, and a
	// family name with a suffix after the prefix.
	got := Summary(mustParse(t, `coalesce_batch_size_rows_bucket{model="a",vmrange="1.000e+00...2.000e+00"} 6
coalesce_batch_size_rows_bucket{model="b",vmrange="1.000e+00...2.000e+00"} 4
coalesce_batch_size_rows_bucket{model="a",vmrange="3.000e+00...4.000e+00"} 10
coalesce_batch_size_rows_sum{model="a"} 50
coalesce_batch_size_rows_count{model="a"} 20
`))
	want := map[string]float64{"batch_size_p50": 2, "batch_size_p99": 3 + 9.8/10, "mean_batch_size": 2.5}
	for k, v := range want {
		if g, ok := got[k]; !ok || math.Abs(g-v) > 1e-9 {
			t.Errorf("Summary[%s] = %v, %v; want %v", k, g, ok, v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("Summary = %v; want only %v", got, want)
	}
}

func TestSummaryFamily(t *testing.T) {
	idx := indexSeries(mustParse(t, `coalesce_batch_size_zeta_count 1
coalesce_batch_size_alpha_sum 1
coalesce_batch_sizes_count 1
coalesce_batch_size_limit 8
`))
	if got := idx.family("coalesce_batch_size"); got != "coalesce_batch_size_alpha" {
		t.Errorf("family = %q; want the first by name, coalesce_batch_size_alpha", got)
	}
	idx["coalesce_batch_size_bucket"] = nil
	if got := idx.family("coalesce_batch_size"); got != "coalesce_batch_size" {
		t.Errorf("family = %q; want the exact name first", got)
	}
	if got := idx.family("coalesce_queue_wait_seconds"); got != "" {
		t.Errorf("family = %q; want none", got)
	}
}

// FuzzParse checks that Parse never panics and that every key it writes
// parses back to itself, so Delta and Summary see one spelling per series.
func FuzzParse(f *testing.F) {
	f.Add("foo_total{a=\"x,y\",b=\"say \\\"hi\\\"\"} 1\n# TYPE foo_total counter\n")
	f.Add("h_bucket{le=\"+Inf\"} NaN 123\nempty{} 1\n")
	f.Add("odd{v=\"a\\tb\\nc\\\\\"} -Inf")
	f.Fuzz(func(t *testing.T, text string) {
		m, err := Parse(strings.NewReader(text))
		if err != nil {
			return
		}
		for k := range m.Values {
			name, labels, rest, err := parseSeries(k)
			if err != nil || rest != "" || seriesKey(name, labels) != k {
				t.Errorf("key %q parses to %q %q rest %q, %v", k, name, labels, rest, err)
			}
		}
		_ = Summary(Delta(m, m))
	})
}
