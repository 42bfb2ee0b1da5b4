package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

const (
	rulesFile     = "prometheus/coalesce-rules.yaml"
	rulesTest     = "prometheus/coalesce-rules.test.yaml"
	dashboardFile = "grafana/coalesce-dashboard.json"
	// plannedGroup holds the rules whose metrics a server in the default
	// configuration does not create (upstream breakers, failed model
	// loads): TestRulesLive expects no series from them. Their metrics
	// must still be documented in proxy/exposition.go.
	plannedGroup = "coalesce-upstream-lifecycle"
)

// absentMetrics are metrics the dashboard charts that the live test's
// server, in the default configuration, does not create: the response
// cache's (the cache is off by default), the canary's and the shadow's (no
// model has one). TestRulesLive fails when one of them appears, so that
// this list stays true.
var absentMetrics = []string{"coalesce_cache_hits_total", "coalesce_cache_misses_total",
	"coalesce_canary_weight", "coalesce_shadow_agreeing_rows_total", "coalesce_shadow_rows_total"}

type rule struct {
	Record      string            `json:"record,omitempty"`
	Alert       string            `json:"alert,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type ruleGroup struct {
	Name  string `json:"name"`
	Rules []rule `json:"rules"`
}

func loadRules(t *testing.T) []ruleGroup {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []ruleGroup `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	return f.Groups
}

// TestRules parses every rule with Prometheus' own PromQL parser and checks
// what promtool does not: names, severities, annotations, and that every
// metric a rule reads is one Coalesce exposes (or a recording rule, or a
// planned metric in the planned group).
func TestRules(t *testing.T) {
	recorded := map[string]bool{}
	for _, g := range loadRules(t) {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
		}
	}
	exposed := exposedFamilies(t)
	for _, g := range loadRules(t) {
		for _, r := range g.Rules {
			name := r.Record + r.Alert
			expr, err := parser.ParseExpr(r.Expr)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if (r.Record == "") == (r.Alert == "") {
				t.Errorf("rule %q: want exactly one of record and alert", name)
			}
			if r.Record != "" && strings.Count(r.Record, ":") != 2 {
				t.Errorf("recording rule %s: want level:metric:operations", r.Record)
			}
			if r.Alert != "" {
				if s := r.Labels["severity"]; s != "page" && s != "warning" {
					t.Errorf("alert %s: severity %q; want page or warning", r.Alert, s)
				}
				if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
					t.Errorf("alert %s: want a summary and a description", r.Alert)
				}
			}
			for _, m := range metricNames(expr) {
				switch {
				case recorded[m], exposed[m]:
				default:
					t.Errorf("%s reads %s, which neither Coalesce's /metrics (proxy/exposition.go) nor a recording rule provides", name, m)
				}
			}
		}
	}
}

// exposedFamilies returns the metric names Coalesce documents in its
// exposition help table, with the series names of histograms.
func exposedFamilies(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../proxy/exposition.go")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`"((?:coalesce|go|process)_[a-z_]+)":\s+\{help`).FindAllSubmatch(b, -1) {
		n := string(m[1])
		out[n] = true
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			out[n+s] = true
		}
	}
	if len(out) == 0 {
		t.Fatal("found no metric families in proxy/exposition.go")
	}
	return out
}

// metricNames returns the metric names an expression selects.
func metricNames(e parser.Expr) []string {
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && vs.Name != "" {
			out = append(out, vs.Name)
		}
		return nil
	})
	return out
}

// TestPromtoolRules runs promtool check rules and the unit tests of
// coalesce-rules.test.yaml and of the drift rules (drift-rules_test.yaml).
func TestPromtoolRules(t *testing.T) {
	promtool := lookPath(t, "promtool")
	for _, args := range [][]string{{"check", "rules", rulesFile}, {"test", "rules", rulesTest},
		{"check", "rules", "prometheus/drift-rules.yaml"}, {"test", "rules", "prometheus/drift-rules_test.yaml"}} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		} else {
			t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
		}
	}
}

func lookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (Debian package prometheus; .ci/run installs it)", name)
	}
	return p
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int     `json:"id"`
	Type       string  `json:"type"`
	Title      string  `json:"title"`
	Datasource any     `json:"datasource"`
	Panels     []panel `json:"panels"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

// dashboardQuery is one PromQL query of the dashboard, with Grafana's
// variables replaced by values Prometheus accepts.
type dashboardQuery struct {
	panel, expr string
}

// grafanaVars replaces the dashboard's variables: $__rate_interval by a
// range, $model and $job by match-all regular expressions.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "${model}", ".*", "$model", ".*", "${job}", ".*", "$job", ".*")

func loadDashboard(t *testing.T) (dashboard, []dashboardQuery) {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var qs []dashboardQuery
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				qs = append(qs, dashboardQuery{panel: p.Title + " " + tg.RefID, expr: grafanaVars.Replace(tg.Expr)})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return d, qs
}

// TestDashboard: every query parses (Prometheus' parser here, promtool in
// TestDashboardPromtool), reads only metrics Coalesce exposes or the rules
// record, panels have unique ids, a data source and a place on the grid,
// and the template variables' label_values queries parse too.
func TestDashboard(t *testing.T) {
	d, qs := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q title %q; want both", d.UID, d.Title)
	}
	if len(qs) < 10 {
		t.Errorf("%d queries; want the dashboard's panels", len(qs))
	}
	exposed := exposedFamilies(t)
	for _, g := range loadRules(t) {
		for _, r := range g.Rules {
			exposed[r.Record] = true
		}
	}
	for _, m := range absentMetrics {
		exposed[m] = true
	}
	for _, q := range qs {
		e, err := parser.ParseExpr(q.expr)
		if err != nil {
			t.Errorf("panel %s: %q: %v", q.panel, q.expr, err)
			continue
		}
		for _, m := range metricNames(e) {
			if !exposed[m] {
				t.Errorf("panel %s reads %s, which Coalesce does not expose", q.panel, m)
			}
		}
	}
	ids := map[int]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if prev, ok := ids[p.ID]; ok || p.ID == 0 {
				t.Errorf("panel %q has id %d, also %q's", p.Title, p.ID, prev)
			}
			ids[p.ID] = p.Title
			if p.Type != "row" && (p.Datasource == nil || p.GridPos.W == 0 || p.GridPos.H == 0 || len(p.Targets) == 0) {
				t.Errorf("panel %q: want a datasource, a grid position and queries", p.Title)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`^label_values\((.+), *([a-zA-Z_]+)\)$`)
	for _, v := range d.Templating.List {
		q, ok := v.Query.(map[string]any)
		if v.Type != "query" || !ok {
			continue
		}
		m := labelValues.FindStringSubmatch(fmt.Sprint(q["query"]))
		if m == nil {
			t.Errorf("variable %s: query %v; want label_values(selector, label)", v.Name, q["query"])
			continue
		}
		if _, err := parser.ParseExpr(grafanaVars.Replace(m[1])); err != nil {
			t.Errorf("variable %s: %v", v.Name, err)
		}
	}
}

// TestDashboardPromtool has promtool parse every dashboard query: it
// checks them as the expressions of a rule file.
func TestDashboardPromtool(t *testing.T) {
	promtool := lookPath(t, "promtool")
	_, qs := loadDashboard(t)
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, q := range qs {
		expr, _ := json.Marshal(q.expr) // a JSON string is a YAML string
		fmt.Fprintf(&b, "      - record: dashboard:query_%d:expr\n        expr: %s\n", i, expr)
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules (the dashboard's %d queries): %v\n%s", len(qs), err, out)
	}
}

// signal returns the part of an alert expression that is not its
// threshold: for "x > 0.05" it returns x. A healthy system answers the
// signal with series, and the alert expression with none.
func signal(expr string) (string, error) {
	e, err := parser.ParseExpr(expr)
	if err != nil {
		return "", err
	}
	e = unparen(e)
	if b, ok := e.(*parser.BinaryExpr); ok && b.Op.IsComparisonOperator() {
		if _, lit := unparen(b.RHS).(*parser.NumberLiteral); lit {
			return unparen(b.LHS).String(), nil
		}
	}
	return e.String(), nil
}

func unparen(e parser.Expr) parser.Expr {
	for {
		p, ok := e.(*parser.ParenExpr)
		if !ok {
			return e
		}
		e = p.Expr
	}
}

func TestSignal(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		got, err := signal(in)
		if err != nil || got != want {
			t.Errorf("signal(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	f("x > 0.05", "x")
	f("(sum by (a) (rate(x[5m]))) >= 1", "sum by (a) (rate(x[5m]))")
	f("coalesce_model_ready == 0", "coalesce_model_ready")
	f("x", "x")
	f("a / b", "a / b")
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
