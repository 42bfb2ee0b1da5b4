// Package auth holds the API keys of Coalesce's data and admin planes: it
// reads them from a key file, keeps only their SHA-256 digests, and tells
// a presented key's identity (name, models it may call, rate tier) in
// constant time with respect to the key's bytes. The file is re-read on
// change or on Reload; an invalid file keeps the keys in force.
//
// Nothing in this package logs, formats or returns key material: errors
// name a line or an entry, never a key.
package auth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MinKeyLen is the shortest key accepted, in bytes: shorter strings are
// guessable, and most likely a mistake (a name where a key was meant).
const MinKeyLen = 16

// DefaultTier is the tier of a key that names none.
const DefaultTier = "default"

// Rule is a token bucket: Rate tokens per second, up to Burst. A zero
// Rate means no limit.
type Rule struct {
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
}

// Identity is who a valid key belongs to. It is immutable and shared by
// every request presenting the key until the next reload.
type Identity struct {
	// Name names the key in logs and metrics (never the key itself).
	Name string
	// Tier names the key's rate tier; Rule is its bucket, and HasRule
	// says whether the key file defines the tier (otherwise the
	// server's default for keys applies).
	Tier    string
	Rule    Rule
	HasRule bool
	// Admin says whether the key may call the admin plane.
	Admin  bool
	models map[string]struct{} // nil: every model
}

// Allows reports whether the key may call model.
func (id *Identity) Allows(model string) bool {
	if id.models == nil {
		return true
	}
	_, ok := id.models[model]
	return ok
}

// keySet is one parsed key file. Keys are found by the first 8 bytes of
// their digest and decided by comparing the whole digest in constant
// time: what timing can reveal is about the SHA-256 of a guess, which
// does not help to find a key.
type keySet struct {
	byPrefix map[uint64][]entry
	n        int
}

type entry struct {
	digest [sha256.Size]byte
	id     *Identity
}

func prefix(d *[sha256.Size]byte) uint64 { return binary.LittleEndian.Uint64(d[:8]) }

// lookup returns the identity whose digest is d, or nil.
func (ks *keySet) lookup(d *[sha256.Size]byte) *Identity {
	for _, e := range ks.byPrefix[prefix(d)] {
		if subtle.ConstantTimeCompare(e.digest[:], d[:]) == 1 {
			return e.id
		}
	}
	return nil
}

// fileYAML is the YAML form of a key file.
type fileYAML struct {
	Tiers map[string]Rule `yaml:"tiers"`
	Keys  []struct {
		Name   string   `yaml:"name"`
		Key    string   `yaml:"key"`
		SHA256 string   `yaml:"sha256"`
		Models []string `yaml:"models"`
		Tier   string   `yaml:"tier"`
		Admin  bool     `yaml:"admin"`
	} `yaml:"keys"`
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// parse reads a key file: either YAML with a top-level "keys:" list (and
// optionally "tiers:"), or one key per line ('#' starts a comment line;
// such keys are named key-<line>, may call every model and have the
// default tier).
func parse(b []byte) (*keySet, error) {
	ks := &keySet{byPrefix: map[uint64][]entry{}}
	if isYAML(b) {
		return ks, ks.parseYAML(b)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		id := &Identity{Name: fmt.Sprintf("key-%d", n), Tier: DefaultTier}
		if err := ks.add(sha256.Sum256(line), len(line), id); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return ks, nil
}

// isYAML reports whether the first line that is neither blank nor a
// comment starts the YAML form.
func isYAML(b []byte) bool {
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte("\n"))
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		return bytes.HasPrefix(line, []byte("keys:")) || bytes.HasPrefix(line, []byte("tiers:"))
	}
	return false
}

func (ks *keySet) parseYAML(b []byte) error {
	var f fileYAML
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		// yaml's messages quote the offending value, which may be a
		// key: keep only the line.
		if m := yamlLine.FindSubmatch([]byte(err.Error())); m != nil {
			return fmt.Errorf("line %s: not a valid key file (YAML with keys: [{name, key or sha256, models, tier, admin}] and tiers: {name: {rate, burst}})", m[1])
		}
		return errors.New("not a valid key file (YAML with keys: [{name, key or sha256, models, tier, admin}] and tiers: {name: {rate, burst}})")
	}
	for name, r := range f.Tiers {
		if r.Rate < 0 || r.Burst < 0 || (r.Rate > 0 && r.Burst < 1) {
			return fmt.Errorf("tier %q: rate %g, burst %d; want rate >= 0 and, with a rate, burst >= 1", name, r.Rate, r.Burst)
		}
	}
	names := map[string]bool{}
	for i, k := range f.Keys {
		where := fmt.Sprintf("keys[%d]", i)
		if k.Name == "" {
			return fmt.Errorf("%s: no name; want a name for logs and metrics", where)
		}
		where += fmt.Sprintf(" (%q)", k.Name)
		if names[k.Name] {
			return fmt.Errorf("%s: name used twice; want one entry per name", where)
		}
		names[k.Name] = true
		id := &Identity{Name: k.Name, Tier: k.Tier, Admin: k.Admin}
		if id.Tier == "" {
			id.Tier = DefaultTier
		}
		if r, ok := f.Tiers[id.Tier]; ok {
			id.Rule, id.HasRule = r, true
		} else if k.Tier != "" {
			return fmt.Errorf("%s: tier %q is not defined under tiers:; want one of %v", where, k.Tier, sortedKeys(f.Tiers))
		}
		if len(k.Models) > 0 {
			id.models = make(map[string]struct{}, len(k.Models))
			for _, m := range k.Models {
				id.models[m] = struct{}{}
			}
		}
		var d [sha256.Size]byte
		n := 0
		switch {
		case k.Key != "" && k.SHA256 != "":
			return fmt.Errorf("%s: both key and sha256; want one of them", where)
		case k.Key != "":
			d, n = sha256.Sum256([]byte(k.Key)), len(k.Key)
		case k.SHA256 != "":
			h, err := hex.DecodeString(strings.TrimSpace(k.SHA256))
			if err != nil || len(h) != sha256.Size {
				return fmt.Errorf("%s: sha256 is not %d hex digits; want the hex SHA-256 of the key (sha256sum)", where, 2*sha256.Size)
			}
			copy(d[:], h)
			n = MinKeyLen // the key's length is unknown; trust the digest
		default:
			return fmt.Errorf("%s: no key; want key: <secret> or sha256: <hex digest>", where)
		}
		if err := ks.add(d, n, id); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	return nil
}

func (ks *keySet) add(d [sha256.Size]byte, n int, id *Identity) error {
	if n < MinKeyLen {
		return fmt.Errorf("key is %d bytes; want at least %d", n, MinKeyLen)
	}
	if prev := ks.lookup(&d); prev != nil {
		return fmt.Errorf("same key as %q; want distinct keys", prev.Name)
	}
	ks.byPrefix[prefix(&d)] = append(ks.byPrefix[prefix(&d)], entry{digest: d, id: id})
	ks.n++
	return nil
}

func sortedKeys(m map[string]Rule) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
