package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	keyA = "sk-aaaaaaaaaaaaaaaaaaaaaaaa"
	keyB = "sk-bbbbbbbbbbbbbbbbbbbbbbbb"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLineFile(t *testing.T) {
	s, err := Open(writeFile(t, "# comment\n\n"+keyA+"\n  "+keyB+"  \n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 2 {
		t.Fatalf("Len() = %d; want 2", s.Len())
	}
	id, err := s.Check([]byte(keyB))
	if err != nil || id.Name != "key-4" || id.Tier != DefaultTier || !id.Allows("anything") {
		t.Fatalf("Check(keyB) = %+v, %v; want key-4, default tier, every model", id, err)
	}
}

func TestYAMLFile(t *testing.T) {
	sum := sha256.Sum256([]byte(keyB))
	s, err := Open(writeFile(t, fmt.Sprintf(`# keys
tiers:
  gold: {rate: 100, burst: 200}
keys:
  - name: app-a
    key: %s
    models: [digits-mlp]
    tier: gold
  - name: ops
    sha256: %s
    admin: true
`, keyA, hex.EncodeToString(sum[:]))))
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Check([]byte(keyA))
	if err != nil || a.Name != "app-a" || a.Tier != "gold" || !a.HasRule || a.Rule != (Rule{100, 200}) || a.Admin {
		t.Fatalf("Check(keyA) = %+v, %v; want app-a, gold {100 200}", a, err)
	}
	if !a.Allows("digits-mlp") || a.Allows("other") {
		t.Errorf("app-a Allows(digits-mlp, other) = %v, %v; want true, false", a.Allows("digits-mlp"), a.Allows("other"))
	}
	o, err := s.Check([]byte(keyB))
	if err != nil || o.Name != "ops" || !o.Admin || o.HasRule || o.Tier != DefaultTier {
		t.Fatalf("Check(keyB) = %+v, %v; want ops (by digest), admin, default tier", o, err)
	}
}

// TestCheck walks the comparison path: a key is found only by its whole
// digest, never by a prefix, an extension or a near miss.
func TestCheck(t *testing.T) {
	s, err := Open(writeFile(t, keyA+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	f := func(key string, want error) {
		t.Helper()
		if _, err := s.Check([]byte(key)); !errors.Is(err, want) {
			t.Errorf("Check(%q) = %v; want %v", key, err, want)
		}
	}
	f(keyA, nil)
	f("", ErrNoKey)
	f(keyA[:len(keyA)-1], ErrInvalidKey)
	f(keyA+"a", ErrInvalidKey)
	f(keyA[:len(keyA)-1]+"b", ErrInvalidKey)
	f(strings.ToUpper(keyA), ErrInvalidKey)
	// Two digests with the same 8-byte prefix are told apart by the
	// constant-time comparison of the whole digest.
	ks := s.cur.Load()
	d := sha256.Sum256([]byte(keyA))
	twin := d
	twin[31] ^= 1
	if ks.lookup(&twin) != nil {
		t.Errorf("a digest differing in its last byte was accepted")
	}
	ks.byPrefix[prefix(&d)] = append([]entry{{digest: twin, id: &Identity{Name: "twin"}}}, ks.byPrefix[prefix(&d)]...)
	if id := ks.lookup(&d); id == nil || id.Name != "key-1" {
		t.Errorf("lookup with a prefix twin before it = %+v; want key-1", id)
	}
}

func TestFromHeaders(t *testing.T) {
	f := func(authz, xkey, want string) {
		t.Helper()
		if got := string(FromHeaders([]byte(authz), []byte(xkey))); got != want {
			t.Errorf("FromHeaders(%q, %q) = %q; want %q", authz, xkey, got, want)
		}
	}
	f("Bearer abc", "", "abc")
	f("bearer  abc ", "", "abc")
	f("BEARER abc", "xyz", "abc")
	f("", "xyz", "xyz")
	f("Basic Zm9vOmJhcg==", "xyz", "xyz")
	f("Basic Zm9vOmJhcg==", "", "")
	f("Bearer ", "", "")
}

// TestInvalidFiles checks that every error names the problem and never
// repeats a key.
func TestInvalidFiles(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"short", "sk-short\n", "line 1: key is 8 bytes; want at least 16"},
		{"duplicate", keyA + "\n" + keyA + "\n", `line 2: same key as "key-1"`},
		{"yaml syntax", "keys:\n  - name: a\n    key: [" + keyA + "\n", "line "},
		{"yaml type", "keys:\n  - name: a\n    key: " + keyA + "\n    models: " + keyB + "\n", "line 4: not a valid key file"},
		{"unknown field", "keys:\n  - name: a\n    kee: " + keyA + "\n", "line 3: not a valid key file"},
		{"no name", "keys:\n  - key: " + keyA + "\n", "keys[0]: no name"},
		{"no key", "keys:\n  - name: a\n", `keys[0] ("a"): no key`},
		{"both", "keys:\n  - name: a\n    key: " + keyA + "\n    sha256: ab\n", "both key and sha256"},
		{"bad digest", "keys:\n  - name: a\n    sha256: " + keyA + "\n", "sha256 is not 64 hex digits"},
		{"tier", "keys:\n  - name: a\n    key: " + keyA + "\n    tier: gold\n", `tier "gold" is not defined`},
		{"bad tier", "tiers:\n  gold: {rate: 5, burst: 0}\nkeys: []\n", `tier "gold": rate 5, burst 0`},
		{"same name", "keys:\n  - {name: a, key: " + keyA + "}\n  - {name: a, key: " + keyB + "}\n", "name used twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(writeFile(t, tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open: %v; want an error containing %q", err, tt.want)
			}
			for _, k := range []string{keyA, keyB, "sk-short", keyA[3:12]} {
				if strings.Contains(err.Error(), k) {
					t.Errorf("error %q repeats key material %q", err, k)
				}
			}
		})
	}
}

func TestReloadKeepsKeysOnError(t *testing.T) {
	p := writeFile(t, keyA+"\n")
	s, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("keys: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Fatal("Reload of an invalid file: nil error")
	}
	if _, err := s.Check([]byte(keyA)); err != nil {
		t.Fatalf("after a failed reload: Check(keyA) = %v; want the old keys kept", err)
	}
	if err := os.WriteFile(p, []byte(keyB+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Check([]byte(keyA)); err == nil {
		t.Error("after a reload without keyA: still accepted")
	}
	if _, err := s.Check([]byte(keyB)); err != nil {
		t.Errorf("after a reload with keyB: %v", err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Error("Reload of a missing file: nil error")
	}
	if _, err := s.Check([]byte(keyB)); err != nil {
		t.Errorf("after the file vanished: %v; want the old keys kept", err)
	}
}

func BenchmarkCheck(b *testing.B) {
	var sb strings.Builder
	for i := range 100 {
		fmt.Fprintf(&sb, "sk-%024d\n", i)
	}
	p := filepath.Join(b.TempDir(), "keys")
	if err := os.WriteFile(p, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	s, err := Open(p)
	if err != nil {
		b.Fatal(err)
	}
	key := []byte(fmt.Sprintf("sk-%024d", 42))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Check(key); err != nil {
			b.Fatal(err)
		}
	}
}
