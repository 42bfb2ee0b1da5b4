package proxy

import (
	"bytes"
	"io"
	"strings"

	"github.com/VictoriaMetrics/metrics"
)

// family is what /metrics says about one metric family besides its
// samples: its HELP text, a corrected TYPE, or that it is left out.
type family struct {
	help string
	// typ, when set, replaces the TYPE VictoriaMetrics/metrics writes.
	typ string
	// drop leaves the family out of /metrics (the reason is in the table).
	drop bool
}

// families holds the HELP text of every family /metrics writes.
// VictoriaMetrics/metrics' ExposeMetadata writes "# HELP name" with no
// text, which promtool check metrics reports as "no help text"; writeMetrics
// fills the text in from here. A family missing from this table keeps its
// empty HELP, so that TestMetricsLint (promtool) and TestMetricsHelp fail
// until it is described.
var families = map[string]family{
	// Requests, from arrival at the edge to the answer.
	"coalesce_requests_total":           {help: "Requests answered, by model and the version that answered (both empty when none was resolved), protocol (predict, v2, tfs, grpc, other) and status code."},
	"coalesce_request_duration_seconds": {help: "Time from a request's arrival to its answer, by model, the version that answered and protocol."},
	"coalesce_inflight_requests":        {help: "POST requests being handled now; http.max_inflight bounds it."},
	"coalesce_shed_total":               {help: "Requests refused with 503 without being run, by reason: max_inflight at the edge (no model label); queue_full or admission (deadline unmeetable) in a model version's batcher."},
	"coalesce_draining":                 {help: "1 while the server shuts down (readiness answers 503), else 0."},
	// Model versions and their batchers.
	"coalesce_model_ready":                {help: "1 for each served model version while the server accepts requests, 0 while it drains; a retired version's series disappears."},
	"coalesce_batch_size":                 {help: "Rows per batch run by a model version's batcher."},
	"coalesce_batches_total":              {help: "Batches released, by reason: full, idle (a worker was free), delay (max_queue_delay), deadline, close."},
	"coalesce_queue_wait_seconds":         {help: "Time requests waited in a model version's queue before their batch ran."},
	"coalesce_queue_rows":                 {help: "Rows queued for a model version now."},
	"coalesce_queue_requests":             {help: "Requests queued for a model version now."},
	"coalesce_queue_capacity_rows":        {help: "Queue bound of a model version in rows (batching.queue_capacity); a full queue sheds with 503."},
	"coalesce_expired_total":              {help: "Queued requests whose deadline passed before they ran; answered 504, never executed."},
	"coalesce_inference_duration_seconds": {help: "Time of one backend execution of a batch (merge inputs, run the model, split outputs), by model and version."},
	"coalesce_inference_calls_total":      {help: "Backend executions (batches run), by model and version."},
	"coalesce_inference_rows_total":       {help: "Rows run by the backend, by model and version; divided by calls it is the mean batch size."},
	"coalesce_build_info":                 {help: "Always 1; the labels name the build: version, commit and Go version."},

	// Response cache and de-duplication, by model and version.
	"coalesce_cache_hits_total":      {help: "Requests answered from the response cache, by model and version."},
	"coalesce_cache_misses_total":    {help: "Requests the response cache could not answer (computed, then stored if successful), by model and version."},
	"coalesce_cache_shared_total":    {help: "Requests answered by an identical request in flight (de-duplication), by model and version."},
	"coalesce_cache_evictions_total": {help: "Entries evicted from the response cache to stay within its byte budget, by model and version."},
	"coalesce_cache_bytes":           {help: "Bytes the response cache holds now (keys, outputs and bookkeeping), by model and version."},
	"coalesce_cache_entries":         {help: "Entries in the response cache now, by model and version."},
	// Upstream backends, by model and version, and by endpoint.
	"coalesce_upstream_batch_rows":               {help: "Rows per call sent to an upstream model server."},
	"coalesce_upstream_retries_total":            {help: "Calls to an upstream retried on another replica."},
	"coalesce_upstream_retries_refused_total":    {help: "Retries not made because the retry budget was spent."},
	"coalesce_upstream_rejected_total":           {help: "Requests refused with 503 before queueing because every replica's breaker was open."},
	"coalesce_upstream_ready":                    {help: "1 when at least one replica of an upstream model answered its probe, else 0."},
	"coalesce_upstream_requests_total":           {help: "Calls made to one upstream endpoint."},
	"coalesce_upstream_failures_total":           {help: "Failed calls to one upstream endpoint, by kind (refused, reset, timeout, 5xx, 4xx, malformed)."},
	"coalesce_upstream_request_duration_seconds": {help: "Time of one call to one upstream endpoint."},
	"coalesce_upstream_breaker_state":            {help: "Circuit breaker of one upstream endpoint: 0 closed, 1 half-open, 2 open."},
	"coalesce_upstream_ejections_total":          {help: "Times one upstream endpoint was ejected as an outlier."},
	"coalesce_upstream_ejected":                  {help: "1 while one upstream endpoint is ejected, else 0."},
	"coalesce_upstream_connects_total":           {help: "TCP connections opened to one upstream endpoint."},
	"coalesce_upstream_healthy":                  {help: "1 when the last probe of one upstream endpoint succeeded, else 0."},
	// Authentication and rate limits.
	"coalesce_auth_failures_total":    {help: "Requests refused by authentication, by reason: missing (401), invalid (401), forbidden (403)."},
	"coalesce_auth_keys":              {help: "API keys in force."},
	"coalesce_auth_reloads_total":     {help: "Key file reloads, by result (ok, error: the keys in force were kept)."},
	"coalesce_ratelimited_total":      {help: "Requests refused with 429 by a token bucket, by scope (key with its tier, client, model, global)."},
	"coalesce_ratelimit_shadow_total": {help: "Requests a token bucket would have refused in shadow mode (ratelimit.shadow), by scope."},

	// Drift against each model's profile.json, and delayed ground truth.
	"coalesce_drift_psi":                    {help: "Population stability index of one input feature's window against the model's reference profile (after drift.min_samples)."},
	"coalesce_drift_js_distance":            {help: "Jensen-Shannon distance of one input feature's window against the reference profile."},
	"coalesce_drift_prediction_psi":         {help: "Population stability index of one output column's window against the reference profile (prediction drift)."},
	"coalesce_drift_prediction_js_distance": {help: "Jensen-Shannon distance of one output column's window against the reference profile."},
	"coalesce_drift_score":                  {help: "Overall input drift of a model version: the largest feature PSI in the window (0 below drift.min_samples)."},
	"coalesce_drift_window_samples":         {help: "Rows in a model version's drift window now."},
	"coalesce_drift_samples_total":          {help: "Rows sampled for drift (drift.sample_rate of requests)."},
	"coalesce_drift_dropped_total":          {help: "Samples dropped because the drift ring was full (the request path never waits)."},
	"coalesce_feedback_total":               {help: "Ground-truth posts to /admin/feedback, by result (joined, or unmatched: the id was not sampled or has left the table)."},
	"coalesce_feedback_window_samples":      {help: "Predictions joined with their ground truth in the current window."},
	"coalesce_feedback_accuracy_ratio":      {help: "Rolling accuracy of a classifier's predictions against posted ground truth."},
	"coalesce_feedback_mean_absolute_error": {help: "Rolling mean absolute error of a regressor's predictions against posted ground truth."},

	// The model lifecycle: reloads, canary and shadow.
	"coalesce_model_state":                {help: "1 for a model version's state in the repository index (label state: LOADING, READY, UNLOADING, UNAVAILABLE); an unloaded version's series goes once it has drained."},
	"coalesce_model_loads_total":          {help: "Model versions loaded, checked, warmed and swapped in."},
	"coalesce_model_load_failures_total":  {help: "Model versions that failed to load, by reason (config, load, warm, update); what served keeps serving."},
	"coalesce_canary_weight":              {help: "Share of a model's unversioned requests routed to its canary version (0 after a rollback)."},
	"coalesce_canary_rollbacks_total":     {help: "Canary rollbacks (weight set to 0) on error ratio or shadow agreement."},
	"coalesce_shadow_rows_total":          {help: "Rows a shadow version ran on copies of primary requests."},
	"coalesce_shadow_agreeing_rows_total": {help: "Shadow rows whose label agreed with the primary's answer."},
	"coalesce_shadow_dropped_total":       {help: "Shadow copies dropped because the shadow's bounded queue was full (the answer never waits)."},
	"coalesce_shadow_errors_total":        {help: "Shadow batches that failed."},
	"coalesce_shadow_max_abs_diff":        {help: "Largest absolute difference between a shadow's and the primary's float outputs, per compared batch."},

	// The Go runtime, written by VictoriaMetrics/metrics.
	"go_info":                             {help: "Always 1; the label names the Go version."},
	"go_info_ext":                         {help: "Always 1; the labels name the compiler, GOARCH and GOOS."},
	"go_goroutines":                       {help: "Goroutines that exist now."},
	"go_threads":                          {help: "OS threads the Go runtime created."},
	"go_gomaxprocs":                       {help: "GOMAXPROCS: threads that may run Go code at once (from the container's CPU limit since Go 1.25; one more per shadow, whose worker runs at idle priority)."},
	"go_memlimit_bytes":                   {help: "The Go runtime's soft memory limit (GOMEMLIMIT) in bytes."},
	"go_gc_duration_seconds":              {help: "Summary of stop-the-world garbage collection pause durations."},
	"go_gc_pauses_seconds":                {help: "Distribution of stop-the-world garbage collection pause durations."},
	"go_gc_cpu_seconds_total":             {help: "CPU time spent by the garbage collector."},
	"go_gc_mark_assist_cpu_seconds_total": {help: "CPU time goroutines spent assisting the garbage collector's marking."},
	"go_scavenge_cpu_seconds_total":       {help: "CPU time spent returning unused memory to the OS."},
	"go_sched_latencies_seconds":          {help: "Distribution of the time goroutines waited runnable before they ran."},
	"go_mutex_wait_seconds_total":         {help: "Time goroutines spent blocked on sync.Mutex or sync.RWMutex."},
	// go_cgo_calls_count, go_cpu_count and go_gc_forced_count are named
	// against Prometheus conventions (a counter without _total, a _count
	// suffix on a non-histogram), which promtool reports; Coalesce is built
	// without cgo, go_gomaxprocs says what go_cpu_count would, and nothing
	// calls runtime.GC.
	"go_cgo_calls_count": {drop: true},
	"go_cpu_count":       {drop: true},
	"go_gc_forced_count": {drop: true},

	"go_memstats_alloc_bytes":          {help: "Bytes of heap objects allocated and not yet freed."},
	"go_memstats_alloc_bytes_total":    {help: "Bytes allocated for heap objects since start."},
	"go_memstats_buck_hash_sys_bytes":  {help: "Bytes used by the profiling bucket hash table."},
	"go_memstats_frees_total":          {help: "Heap objects freed since start."},
	"go_memstats_gc_cpu_fraction":      {help: "Fraction of the available CPU time used by the garbage collector since start."},
	"go_memstats_gc_sys_bytes":         {help: "Bytes used for garbage collection metadata."},
	"go_memstats_heap_alloc_bytes":     {help: "Bytes of heap objects allocated and not yet freed."},
	"go_memstats_heap_idle_bytes":      {help: "Bytes in idle (unused) heap spans."},
	"go_memstats_heap_inuse_bytes":     {help: "Bytes in in-use heap spans."},
	"go_memstats_heap_objects":         {help: "Heap objects allocated and not yet freed."},
	"go_memstats_heap_released_bytes":  {help: "Bytes of heap memory returned to the OS."},
	"go_memstats_heap_sys_bytes":       {help: "Bytes of heap memory obtained from the OS."},
	"go_memstats_last_gc_time_seconds": {help: "Time of the last garbage collection, in seconds since the Unix epoch."},
	"go_memstats_lookups_total":        {help: "Pointer lookups by the runtime since start."},
	"go_memstats_mallocs_total":        {help: "Heap objects allocated since start."},
	"go_memstats_mcache_inuse_bytes":   {help: "Bytes in use by mcache structures."},
	"go_memstats_mcache_sys_bytes":     {help: "Bytes obtained from the OS for mcache structures."},
	"go_memstats_mspan_inuse_bytes":    {help: "Bytes in use by mspan structures."},
	"go_memstats_mspan_sys_bytes":      {help: "Bytes obtained from the OS for mspan structures."},
	"go_memstats_next_gc_bytes":        {help: "Heap size at which the next garbage collection starts."},
	"go_memstats_other_sys_bytes":      {help: "Bytes used for other runtime allocations."},
	"go_memstats_stack_inuse_bytes":    {help: "Bytes in stack spans in use."},
	"go_memstats_stack_sys_bytes":      {help: "Bytes of stack memory obtained from the OS."},
	"go_memstats_sys_bytes":            {help: "Bytes of memory obtained from the OS by the Go runtime."},

	// The process, from /proc, written by VictoriaMetrics/metrics.
	"process_cpu_seconds_total":            {help: "CPU time used by the process, user and system."},
	"process_cpu_seconds_user_total":       {help: "CPU time used by the process in user mode."},
	"process_cpu_seconds_system_total":     {help: "CPU time used by the process in kernel mode."},
	"process_major_pagefaults_total":       {help: "Page faults that needed disk I/O."},
	"process_minor_pagefaults_total":       {help: "Page faults served without disk I/O."},
	"process_num_threads":                  {help: "OS threads of the process."},
	"process_start_time_seconds":           {help: "Start time of the process, in seconds since the Unix epoch."},
	"process_resident_memory_bytes":        {help: "Resident set size in bytes."},
	"process_resident_memory_peak_bytes":   {help: "Peak resident set size in bytes."},
	"process_resident_memory_anon_bytes":   {help: "Resident anonymous memory in bytes."},
	"process_resident_memory_file_bytes":   {help: "Resident file-backed memory in bytes."},
	"process_resident_memory_shared_bytes": {help: "Resident shared memory in bytes."},
	"process_virtual_memory_bytes":         {help: "Virtual memory size in bytes."},
	"process_virtual_memory_peak_bytes":    {help: "Peak virtual memory size in bytes."},
	// The /proc/self/io counters only grow; VictoriaMetrics/metrics types
	// them gauge, which promtool rejects for a _total name.
	"process_io_read_bytes_total":                   {help: "Bytes the process read, including from the page cache.", typ: "counter"},
	"process_io_written_bytes_total":                {help: "Bytes the process wrote, including to the page cache.", typ: "counter"},
	"process_io_read_syscalls_total":                {help: "Read system calls of the process.", typ: "counter"},
	"process_io_write_syscalls_total":               {help: "Write system calls of the process.", typ: "counter"},
	"process_io_storage_read_bytes_total":           {help: "Bytes the process caused to be read from storage.", typ: "counter"},
	"process_io_storage_written_bytes_total":        {help: "Bytes the process caused to be written to storage.", typ: "counter"},
	"process_pressure_cpu_waiting_seconds_total":    {help: "Time some task of the cgroup waited for CPU (PSI)."},
	"process_pressure_cpu_stalled_seconds_total":    {help: "Time all tasks of the cgroup stalled for CPU (PSI)."},
	"process_pressure_io_waiting_seconds_total":     {help: "Time some task of the cgroup waited for I/O (PSI)."},
	"process_pressure_io_stalled_seconds_total":     {help: "Time all tasks of the cgroup stalled for I/O (PSI)."},
	"process_pressure_memory_waiting_seconds_total": {help: "Time some task of the cgroup waited for memory (PSI)."},
	"process_pressure_memory_stalled_seconds_total": {help: "Time all tasks of the cgroup stalled for memory (PSI)."},
	"process_cgroup_cpu_throttled_seconds_total":    {help: "Time the cgroup was throttled by its CPU limit."},
}

// writeMetrics writes text, a Prometheus text exposition that
// VictoriaMetrics/metrics wrote with ExposeMetadata(true), to w with the
// HELP text and TYPE corrections of families, leaving out dropped
// families. Metadata lines always precede a family's samples in text.
func writeMetrics(w io.Writer, text []byte) {
	out := make([]byte, 0, len(text)+len(text)/4)
	var cur family // of the family whose lines come now
	for len(text) > 0 {
		line := text
		if i := bytes.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i+1], text[i+1:]
		} else {
			text = nil
		}
		switch {
		case bytes.HasPrefix(line, []byte("# HELP ")):
			name := string(bytes.TrimSpace(line[len("# HELP "):]))
			if i := strings.IndexByte(name, ' '); i >= 0 {
				name = name[:i] // help text already present
			}
			cur = families[name]
			if cur.drop {
				continue
			}
			if cur.help == "" {
				out = append(out, line...)
				continue
			}
			out = append(out, "# HELP "...)
			out = append(out, name...)
			out = append(out, ' ')
			out = appendHelp(out, cur.help)
			out = append(out, '\n')
		case bytes.HasPrefix(line, []byte("# TYPE ")):
			if cur.drop {
				continue
			}
			if cur.typ == "" {
				out = append(out, line...)
				continue
			}
			f := bytes.Fields(line)
			out = append(out, "# TYPE "...)
			out = append(out, f[2]...)
			out = append(out, ' ')
			out = append(out, cur.typ...)
			out = append(out, '\n')
		default:
			if !cur.drop {
				out = append(out, line...)
			}
		}
	}
	w.Write(out)
}

// appendHelp appends help escaped as the text format requires: backslash
// and line feed.
func appendHelp(dst []byte, help string) []byte {
	for i := 0; i < len(help); i++ {
		switch c := help[i]; c {
		case '\\':
			dst = append(dst, `\\`...)
		case '\n':
			dst = append(dst, `\n`...)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// writeStateMetrics writes the gauges of the server's state, read at
// scrape time: in-flight requests, draining, and the ready state of each
// served model version.
func (s *Server) writeStateMetrics(w io.Writer) {
	metrics.WriteGaugeUint64(w, "coalesce_inflight_requests", uint64(max(s.inflight.Load(), 0)))
	draining := uint64(0)
	if s.draining.Load() {
		draining = 1
	}
	metrics.WriteGaugeUint64(w, "coalesce_draining", draining)
	sn := s.snap.Load()
	first := true
	for _, m := range sn.reg.All() {
		name := `coalesce_model_ready{model="` + m.Name + `",version="` + m.Version + `"}`
		if first {
			metrics.WriteMetadataIfNeeded(w, name, "gauge")
			first = false
		}
		io.WriteString(w, name)
		if draining == 1 {
			io.WriteString(w, " 0\n")
		} else {
			io.WriteString(w, " 1\n")
		}
	}
}
