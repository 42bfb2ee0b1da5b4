package targets

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	scrapeTimeout  = 10 * time.Second // when ctx has no deadline
	maxScrapeBytes = 64 << 20
	maxLineBytes   = 1 << 20
)

// Metrics is one scrape of a Prometheus text exposition (format 0.0.4),
// or the difference of two (Delta). The zero value is an empty scrape.
type Metrics struct {
	// Values maps every series to its value. A series is written
	// name{label="value",...}, or just name without labels, with the
	// labels in exposition order and values escaped as in the format
	// (\\, \", \n), e.g. coalesce_inference_calls_total{model="digits-mlp"}.
	Values map[string]float64
	// Types maps a metric family name to the type its # TYPE line
	// declares: "counter", "gauge", "histogram", "summary" or "untyped".
	// Families without a # TYPE line are absent; VictoriaMetrics/metrics,
	// which Coalesce uses, writes none by default.
	Types map[string]string
}

// Scrape fetches url (a /metrics endpoint) and parses it with Parse. The
// request is bounded by ctx, or by 10s when ctx has no deadline.
func Scrape(ctx context.Context, url string) (Metrics, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, scrapeTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Metrics{}, fmt.Errorf("scrape: %w", err)
	}
	resp, err := newClient().Do(req)
	if err != nil {
		return Metrics{}, fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Metrics{}, fmt.Errorf("scrape %s: status %d", url, resp.StatusCode)
	}
	m, err := Parse(io.LimitReader(resp.Body, maxScrapeBytes))
	if err != nil {
		return Metrics{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	return m, nil
}

// Parse reads a Prometheus text exposition. It keeps # TYPE lines, skips
// # HELP lines and other comments, accepts NaN, +Inf and -Inf values, and
// ignores sample timestamps. A malformed line is an error naming it.
func Parse(r io.Reader) (Metrics, error) {
	m := Metrics{Values: map[string]float64{}, Types: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLineBytes)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if line[0] == '#' {
			if f := strings.Fields(line); len(f) >= 4 && f[1] == "TYPE" {
				m.Types[f[2]] = f[3]
			}
			continue
		}
		name, labels, rest, err := parseSeries(line)
		if err != nil {
			return Metrics{}, fmt.Errorf("line %d %q: %w", n, line, err)
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return Metrics{}, fmt.Errorf("line %d %q: no value", n, line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return Metrics{}, fmt.Errorf("line %d %q: value: %w", n, line, err)
		}
		m.Values[seriesKey(name, labels)] = v
	}
	if err := sc.Err(); err != nil {
		return Metrics{}, err
	}
	return m, nil
}

// Cumulative reports whether series only grows while the server runs (a
// counter, or a histogram's or summary's _bucket, _sum or _count), so that
// its change over a run is meaningful. It uses the family's # TYPE when
// present; without one, names ending in _total, _bucket, _sum or _count
// are taken as cumulative and everything else as a gauge.
func (m Metrics) Cumulative(series string) bool {
	name, _, _ := strings.Cut(series, "{")
	switch m.Types[name] {
	case "counter":
		return true
	case "gauge", "histogram", "summary": // a summary's own series are its quantiles
		return false
	}
	for _, suf := range [...]string{"_total", "_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suf)
		if !ok {
			continue
		}
		if t, typed := m.Types[base]; typed {
			return t == "counter" || t == "histogram" || t == "summary"
		}
		return true
	}
	return false
}

// Delta returns what changed between two scrapes of one server: for every
// series in after, after minus before when the series is cumulative, and
// after's value for a gauge. A cumulative series missing from before, or
// smaller than in before (the server restarted), counts from zero, as
// Prometheus' increase() does. Types are after's.
func Delta(before, after Metrics) Metrics {
	d := Metrics{Values: make(map[string]float64, len(after.Values)), Types: after.Types}
	for k, v := range after.Values {
		if after.Cumulative(k) {
			if b, ok := before.Values[k]; ok && v >= b {
				v -= b
			}
		}
		d.Values[k] = v
	}
	return d
}

// Summary returns the figures a report shows from the Delta of a run,
// summed over models and all other labels. Keys, each present only when
// its source series are:
//
//	requests            coalesce_requests_total
//	inference_calls     coalesce_inference_calls_total
//	inference_rows      coalesce_inference_rows_total
//	mean_batch_size     the batch size histogram's sum / count (else rows / calls)
//	rss_mb              process_resident_memory_bytes after the run, MiB
//	mean_inference_us   coalesce_inference_duration_seconds _sum / _count
//	mean_queue_wait_us  histogram coalesce_queue_wait_seconds*: _sum / _count
//	p50_queue_wait_us, p99_queue_wait_us
//	                    its quantiles, interpolated in the le buckets as
//	                    Prometheus' histogram_quantile does
//	batch_size_p50, batch_size_p99
//	                    likewise for histogram coalesce_batch_size*
//
// A histogram family "coalesce_queue_wait_seconds*" is
// coalesce_queue_wait_seconds itself or the first by name of
// coalesce_queue_wait_seconds_<anything> with _bucket, _sum or _count
// series; likewise for coalesce_batch_size. Both Prometheus le buckets and
// VictoriaMetrics vmrange buckets are understood. Quantiles of a histogram
// without observations are absent.
func Summary(delta Metrics) map[string]float64 {
	idx := indexSeries(delta)
	out := map[string]float64{}
	put := func(key string, v float64, ok bool) {
		if ok {
			out[key] = v
		}
	}
	reqs, ok := idx.sum("coalesce_requests_total")
	put("requests", reqs, ok)
	calls, okCalls := idx.sum("coalesce_inference_calls_total")
	rows, okRows := idx.sum("coalesce_inference_rows_total")
	put("inference_calls", calls, okCalls)
	put("inference_rows", rows, okRows)
	put("mean_batch_size", rows/calls, okCalls && okRows && calls > 0)
	mean, ok := idx.mean("coalesce_inference_duration_seconds")
	put("mean_inference_us", mean*1e6, ok)
	rss, ok := idx.sum("process_resident_memory_bytes") // a gauge: the value after the run
	put("rss_mb", rss/(1<<20), ok)

	if fam := idx.family("coalesce_queue_wait_seconds"); fam != "" {
		mean, ok := idx.mean(fam)
		put("mean_queue_wait_us", mean*1e6, ok)
		q, ok := idx.quantile(fam, 0.5)
		put("p50_queue_wait_us", q*1e6, ok)
		q, ok = idx.quantile(fam, 0.99)
		put("p99_queue_wait_us", q*1e6, ok)
	}
	if fam := idx.family("coalesce_batch_size"); fam != "" {
		// The batcher's own histogram counts batches; the inference
		// counters above count requests, so this one wins.
		mean, ok := idx.mean(fam)
		put("mean_batch_size", mean, ok)
		q, ok := idx.quantile(fam, 0.5)
		put("batch_size_p50", q, ok)
		q, ok = idx.quantile(fam, 0.99)
		put("batch_size_p99", q, ok)
	}
	return out
}

// sample is one series of an index: its labels and value.
type sample struct {
	labels []label
	v      float64
}

// seriesIndex groups the series of a Metrics by metric name.
type seriesIndex map[string][]sample

func indexSeries(m Metrics) seriesIndex {
	idx := seriesIndex{}
	for k, v := range m.Values {
		name, labels, _, err := parseSeries(k)
		if err != nil {
			continue // a key not written by Parse; it names no series we sum
		}
		idx[name] = append(idx[name], sample{labels, v})
	}
	return idx
}

// sum adds every series of name; ok is false when there is none.
func (idx seriesIndex) sum(name string) (total float64, ok bool) {
	for _, s := range idx[name] {
		total += s.v
	}
	return total, len(idx[name]) > 0
}

// mean is the family's _sum over its _count, when the count is positive.
func (idx seriesIndex) mean(fam string) (float64, bool) {
	s, okS := idx.sum(fam + "_sum")
	c, okC := idx.sum(fam + "_count")
	if !okS || !okC || c <= 0 {
		return 0, false
	}
	return s / c, true
}

// family returns prefix, or the first by name of prefix_*, that has
// _bucket, _sum or _count series; "" when none has.
func (idx seriesIndex) family(prefix string) string {
	var fams []string
	for name := range idx {
		for _, suf := range [...]string{"_bucket", "_sum", "_count"} {
			base, ok := strings.CutSuffix(name, suf)
			if ok && (base == prefix || strings.HasPrefix(base, prefix+"_")) {
				fams = append(fams, base)
			}
		}
	}
	if len(fams) == 0 {
		return ""
	}
	sort.Strings(fams)
	for _, f := range fams {
		if f == prefix {
			return f
		}
	}
	return fams[0]
}

// quantile interpolates the q-quantile of histogram fam from its buckets.
func (idx seriesIndex) quantile(fam string, q float64) (float64, bool) {
	v := histogramQuantile(q, buckets(idx[fam+"_bucket"]))
	return v, !math.IsNaN(v)
}

// bucket is one cumulative histogram bucket: count observations <= le.
type bucket struct{ le, count float64 }

// buckets sums bucket series over all labels but the bound and returns
// cumulative buckets sorted by upper bound. Prometheus le buckets are
// cumulative already; VictoriaMetrics vmrange buckets ("lo...hi") count
// only their own range and are accumulated, with a bucket at each range's
// lower bound so that interpolation stays inside the range.
func buckets(series []sample) []bucket {
	le := map[float64]float64{}
	type vmr struct{ lo, hi, n float64 }
	var ranges []vmr
	for _, s := range series {
		for _, l := range s.labels {
			switch l.name {
			case "le":
				if b, err := strconv.ParseFloat(l.value, 64); err == nil {
					le[b] += s.v
				}
			case "vmrange":
				lo, hi, ok := strings.Cut(l.value, "...")
				a, errA := strconv.ParseFloat(lo, 64)
				b, errB := strconv.ParseFloat(hi, 64)
				if ok && errA == nil && errB == nil {
					ranges = append(ranges, vmr{a, b, s.v})
				}
			}
		}
	}
	var bs []bucket
	for b, n := range le {
		bs = append(bs, bucket{b, n})
	}
	if len(bs) == 0 && len(ranges) > 0 {
		sort.Slice(ranges, func(i, j int) bool { return ranges[i].hi < ranges[j].hi })
		cum := 0.0
		for _, r := range ranges {
			bs = append(bs, bucket{r.lo, cum})
			cum += r.n
			bs = append(bs, bucket{r.hi, cum})
		}
		bs = append(bs, bucket{math.Inf(1), cum})
	}
	sort.SliceStable(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	return bs
}

// histogramQuantile returns the q-quantile (0 <= q <= 1) of the
// observations in cumulative buckets bs sorted by le, following
// Prometheus' histogram_quantile: find the bucket holding rank q*total and
// interpolate linearly inside it, from the previous bound (0 for the
// first bucket); a rank in the +Inf bucket yields the highest finite
// bound. It returns NaN when there are no observations or no buckets.
func histogramQuantile(q float64, bs []bucket) float64 {
	if len(bs) == 0 {
		return math.NaN()
	}
	// Counts that shrink (float error in deltas) would break the search.
	for i := 1; i < len(bs); i++ {
		bs[i].count = math.Max(bs[i].count, bs[i-1].count)
	}
	total := bs[len(bs)-1].count
	if !(total > 0) {
		return math.NaN()
	}
	rank := q * total
	i := sort.Search(len(bs), func(i int) bool { return bs[i].count >= rank })
	if i == len(bs) {
		i = len(bs) - 1
	}
	if math.IsInf(bs[i].le, 1) {
		if i == 0 {
			return math.NaN()
		}
		return bs[i-1].le
	}
	lower, prev := 0.0, 0.0
	if i > 0 {
		lower, prev = bs[i-1].le, bs[i-1].count
	} else if bs[0].le <= 0 {
		return bs[0].le
	}
	if bs[i].count == prev {
		return bs[i].le
	}
	return lower + (bs[i].le-lower)*(rank-prev)/(bs[i].count-prev)
}
