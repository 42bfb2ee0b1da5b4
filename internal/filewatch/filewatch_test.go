package filewatch

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestChangeAndClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	changed := make(chan struct{}, 16)
	w := New(time.Millisecond, func() { changed <- struct{}{} }, p)
	// A rename over the file (what editors and Kubernetes do) is a
	// change even at the same size and within one mtime tick.
	tmp := filepath.Join(dir, "g")
	if err := os.WriteFile(tmp, []byte("b"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("no change reported within 10s of a rename over the file")
	}
	w.Close()
	w.Close()
}
