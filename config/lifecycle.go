package config

import (
	"fmt"
	"strconv"
	"time"
)

// VersionPolicy says which versions of a model on disk are served (TF
// Serving's and Triton's model_version_policy). All wins over Specific,
// which wins over Latest.
type VersionPolicy struct {
	// Latest serves the N highest versions; 0 is taken as 1.
	Latest int `koanf:"latest" help:"serve the N highest versions"`
	// All serves every version on disk.
	All bool `koanf:"all" help:"serve every version on disk"`
	// Specific serves exactly these versions (those on disk).
	Specific []string `koanf:"specific" help:"serve exactly these versions"`
}

// Canary splits a model's unversioned, unlabelled requests between its
// primary version (the highest other than Version) and Version.
type Canary struct {
	// Version is the canary version; empty means no split.
	Version string `koanf:"version" help:"canary version (empty: no split)"`
	// Weight is the share of requests the canary receives, 0 to 1.
	Weight float64 `koanf:"weight" help:"share of the model's unversioned requests sent to the canary, 0 to 1"`
	// StickyHeader names a request header whose value decides the
	// split, so that one client stays on one side; empty splits every
	// request on its own.
	StickyHeader string   `koanf:"sticky_header" help:"request header whose value decides the side (empty: per request)"`
	Rollback     Rollback `koanf:"rollback"`
}

// Rollback sets the canary's weight to 0 when, over a window of at least
// MinRequests canary requests, its error ratio rises above MaxErrorRatio
// or its agreement with the primary (from shadow copies) falls below
// MinAgreement. A zero threshold is off.
type Rollback struct {
	Window        time.Duration `koanf:"window" help:"length of the window the thresholds are checked over"`
	MinRequests   int           `koanf:"min_requests" help:"canary requests a window needs before it is judged"`
	MaxErrorRatio float64       `koanf:"max_error_ratio" help:"roll back above this share of canary requests failing with 5xx (0 = off)"`
	MinAgreement  float64       `koanf:"min_agreement" help:"roll back below this share of shadow rows agreeing with the primary (0 = off)"`
}

// Shadow sends a copy of a share of a model's requests to another version
// off the critical path, to compare their answers.
type Shadow struct {
	// Version is the shadow version; empty means no shadow.
	Version string  `koanf:"version" help:"shadow version (empty: none)"`
	Share   float64 `koanf:"share" help:"share of primary requests copied to the shadow, 0 to 1"`
	// Queue bounds the copies waiting for the shadow; more are dropped.
	Queue int `koanf:"queue" help:"copies waiting for the shadow; beyond it copies are dropped"`
	// Interval is how often the shadow's worker takes the queued copies
	// (sooner when 3/4 of the queue is taken), and the longest it waits
	// for the server's idle moments to run them; 0 means 10ms.
	Interval time.Duration `koanf:"interval" help:"how often the shadow's worker takes the queued copies (sooner once 3/4 of the queue is taken), and the longest it waits for idle moments to run them"`
}

func (m *ModelConfig) validateLifecycle() error {
	p := m.VersionPolicy
	if p.Latest < 0 {
		return fmt.Errorf("config: version_policy.latest: %d is negative; want 1 or more", p.Latest)
	}
	if p.All && len(p.Specific) > 0 {
		return fmt.Errorf("config: version_policy: all and specific are both set; want one")
	}
	for i, v := range p.Specific {
		if !isVersion(v) {
			return fmt.Errorf("config: version_policy.specific[%d]: %q; want a version number", i, v)
		}
	}
	for label, v := range m.Labels {
		if !isVersion(v) {
			return fmt.Errorf("config: labels.%s: %q; want a version number", label, v)
		}
	}
	c := m.Canary
	if c.Version != "" && !isVersion(c.Version) {
		return fmt.Errorf("config: canary.version: %q; want a version number", c.Version)
	}
	if c.Weight < 0 || c.Weight > 1 {
		return fmt.Errorf("config: canary.weight: %v; want 0 to 1", c.Weight)
	}
	r := c.Rollback
	if r.Window < 0 || r.MinRequests < 0 || r.MaxErrorRatio < 0 || r.MaxErrorRatio > 1 || r.MinAgreement < 0 || r.MinAgreement > 1 {
		return fmt.Errorf("config: canary.rollback: window and min_requests must not be negative, max_error_ratio and min_agreement lie in 0 to 1")
	}
	s := m.Shadow
	if s.Version != "" && !isVersion(s.Version) {
		return fmt.Errorf("config: shadow.version: %q; want a version number", s.Version)
	}
	if s.Share < 0 || s.Share > 1 {
		return fmt.Errorf("config: shadow.share: %v; want 0 to 1", s.Share)
	}
	if s.Queue < 0 {
		return fmt.Errorf("config: shadow.queue: %d is negative; want 1 or more", s.Queue)
	}
	if s.Interval < 0 {
		return fmt.Errorf("config: shadow.interval: %v is negative; want a duration such as 10ms", s.Interval)
	}
	return nil
}

func isVersion(v string) bool {
	n, err := strconv.ParseUint(v, 10, 63)
	return err == nil && n > 0
}
