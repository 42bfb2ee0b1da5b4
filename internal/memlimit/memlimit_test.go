package memlimit

import (
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

func TestCgroupLimit(t *testing.T) {
	f := func(files map[string]string, want int64, wantOK bool) {
		t.Helper()
		root := t.TempDir()
		for name, content := range files {
			p := filepath.Join(root, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, ok := CgroupLimit(root)
		if got != want || ok != wantOK {
			t.Errorf("CgroupLimit(%v) = %d, %v; want %d, %v", files, got, ok, want, wantOK)
		}
	}
	f(nil, 0, false)
	f(map[string]string{v2File: "536870912\n"}, 512<<20, true)
	f(map[string]string{v2File: "max\n"}, 0, false)
	f(map[string]string{v1File: "268435456\n"}, 256<<20, true)
	f(map[string]string{v1File: "9223372036854771712\n"}, 0, false) // v1's "no limit"
	f(map[string]string{v2File: "garbage"}, 0, false)
	f(map[string]string{v2File: "max", v1File: "268435456"}, 0, false) // v2 wins
}

func TestSetDefault(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, v2File), []byte("1000000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	debug.SetMemoryLimit(math.MaxInt64) // as when GOMEMLIMIT is unset
	limit, src := SetDefault(root)
	if want := int64(900000000); limit != want || src != FromCgroup || debug.SetMemoryLimit(-1) != want {
		t.Errorf("SetDefault = %d, %s (runtime %d); want %d from the cgroup", limit, src, debug.SetMemoryLimit(-1), want)
	}

	debug.SetMemoryLimit(123 << 20) // as when GOMEMLIMIT=123MiB
	limit, src = SetDefault(root)
	if limit != 123<<20 || src != FromEnv || debug.SetMemoryLimit(-1) != 123<<20 {
		t.Errorf("SetDefault with GOMEMLIMIT = %d, %s; want it left at %d", limit, src, 123<<20)
	}

	debug.SetMemoryLimit(math.MaxInt64)
	if limit, src = SetDefault(t.TempDir()); limit != 0 || src != None || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Errorf("SetDefault without a cgroup limit = %d, %s; want 0, none and no limit set", limit, src)
	}
}

func TestInflightBudget(t *testing.T) {
	f := func(memLimit, maxBody, want int64) {
		t.Helper()
		if got := InflightBudget(memLimit, maxBody); got != want {
			t.Errorf("InflightBudget(%d, %d) = %d; want %d", memLimit, maxBody, got, want)
		}
	}
	f(0, 16<<20, 1<<30)       // no limit known
	f(2<<30, 16<<20, 512<<20) // a quarter
	f(32<<20, 1<<20, 16<<20)  // the floor
	f(32<<20, 24<<20, 24<<20) // never below one max-size body
	f(64<<30, 16<<20, 4<<30)  // the ceiling
}
