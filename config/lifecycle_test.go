package config

import (
	"strings"
	"testing"
	"time"
)

// TestModelLifecycleKeys: version_policy, labels, canary and shadow decode
// (numbers as version strings) and are validated naming the key.
func TestModelLifecycleKeys(t *testing.T) {
	m, err := LoadModel(writeTemp(t, `version_policy: {specific: [2, 3]}
labels: {stable: 3, canary: 4}
canary: {version: 4, weight: 0.05, sticky_header: X-User, rollback: {window: 30s, min_requests: 50, max_error_ratio: 0.02, min_agreement: 0.9}}
shadow: {version: 4, share: 0.1}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(m.VersionPolicy.Specific, ","); got != "2,3" || m.VersionPolicy.Latest != 1 {
		t.Errorf("version_policy = %+v; want specific 2,3", m.VersionPolicy)
	}
	if m.Labels["stable"] != "3" || m.Labels["canary"] != "4" {
		t.Errorf("labels = %v", m.Labels)
	}
	want := Canary{Version: "4", Weight: 0.05, StickyHeader: "X-User", Rollback: Rollback{Window: 30 * time.Second, MinRequests: 50, MaxErrorRatio: 0.02, MinAgreement: 0.9}}
	if m.Canary != want {
		t.Errorf("canary = %+v; want %+v", m.Canary, want)
	}
	if m.Shadow != (Shadow{Version: "4", Share: 0.1, Queue: 64, Interval: 10 * time.Millisecond}) {
		t.Errorf("shadow = %+v; want the default queue of 64 and interval of 10ms", m.Shadow)
	}
	if d := DefaultModelConfig(); d.VersionPolicy.Latest != 1 || d.Canary.Rollback.Window != time.Minute || d.Canary.Rollback.MinRequests != 100 {
		t.Errorf("defaults = %+v", d)
	}

	f := func(yaml, wantErr string) {
		t.Helper()
		_, err := LoadModel(writeTemp(t, yaml))
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("LoadModel(%q) = %v; want an error containing %q", yaml, err, wantErr)
		}
	}
	f("version_policy: {latest: -1}\n", "version_policy.latest")
	f("version_policy: {all: true, specific: [1]}\n", "version_policy: all and specific")
	f("version_policy: {specific: [x]}\n", "version_policy.specific[0]")
	f("labels: {stable: latest}\n", "labels.stable")
	f("canary: {version: 0}\n", "canary.version")
	f("canary: {version: 2, weight: 1.5}\n", "canary.weight")
	f("canary: {rollback: {max_error_ratio: 2}}\n", "canary.rollback")
	f("shadow: {share: -0.1}\n", "shadow.share")
	f("shadow: {queue: -1}\n", "shadow.queue")
	f("shadow: {interval: -1s}\n", "shadow.interval")
	f("version_policy: {newest: 1}\n", "newest")
}

// TestModelsControl: models.control takes none, poll or explicit.
func TestModelsControl(t *testing.T) {
	c := Default()
	c.Models.Repository = t.TempDir()
	for _, mode := range []string{"none", "poll", "explicit"} {
		c.Models.Control = mode
		if err := c.Validate(); err != nil {
			t.Errorf("models.control %s: %v", mode, err)
		}
	}
	c.Models.Control = "watch"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "models.control") {
		t.Errorf("models.control watch: %v; want an error naming the key", err)
	}
	c.Models.Control, c.Models.SettleDelay = "poll", 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "models.settle_delay") {
		t.Errorf("models.settle_delay 0: %v; want an error naming the key", err)
	}
}
