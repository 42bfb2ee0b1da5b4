package proxy

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestEveryFamilyHasHelp reads the module's Go sources for the metric
// families they create (a `coalesce_...{` or `coalesce_..."` name in a
// string) and checks that /metrics has HELP text for each: a family
// created only with some configuration (cache, upstream, auth) would
// otherwise reach promtool with an empty HELP in production only.
func TestEveryFamilyHasHelp(t *testing.T) {
	name := regexp.MustCompile("[`\"](coalesce_[a-z_]+[a-z])[{`\"]")
	seen := map[string]string{}
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "deploy" || d.Name() == "bench" || strings.HasPrefix(d.Name(), ".")) && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range name.FindAllSubmatch(b, -1) {
			seen[string(m[1])] = path
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) < 20 {
		t.Fatalf("found %d metric families in the sources; want the whole module's (is the walk broken?)", len(seen))
	}
	for fam, path := range seen {
		if f, ok := families[fam]; !ok || (f.help == "" && !f.drop) {
			t.Errorf("metric family %s (created in %s) has no HELP text in proxy/exposition.go", fam, path)
		}
	}
}
