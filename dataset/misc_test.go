package dataset

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// SetStart moves every stream's block 0 by start tokens and rewinds.
func TestBatcherSetStart(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.txt")
	text := strings.Repeat("abcdefghijklmnopqrstuvwxyz", 40) // 1,040 bytes
	if err := os.WriteFile(in, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "ds")
	if _, err := Prep(context.Background(), out, []string{in}, WithVocab("byte"), WithSplit(1, 0, 0)); err != nil {
		t.Fatal(err)
	}
	r, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBatcher(r, "train", 2, 8)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := b.Next()
	if err := b.SetStart(3); err != nil {
		t.Fatal(err)
	}
	if b.Position() != 0 || b.Blocks() != (b.StreamLen()-1-3)/8 {
		t.Fatalf("after SetStart(3): position %d, blocks %d (stream %d)", b.Position(), b.Blocks(), b.StreamLen())
	}
	got, _ := b.Next()
	for row := range 2 {
		for j := range 6 {
			if got[row*9+j] != first[row*9+j+3] {
				t.Fatalf("row %d token %d: %d, want the unshifted block's token %d (%d)", row, j, got[row*9+j], j+3, first[row*9+j+3])
			}
		}
	}
	n := int64(1)
	for {
		if _, err := b.Next(); err == io.EOF {
			break
		}
		n++
	}
	if n != b.Blocks() {
		t.Fatalf("%d blocks before EOF, Blocks says %d", n, b.Blocks())
	}
	for _, bad := range []int64{-1, 8} {
		if err := b.SetStart(bad); err == nil {
			t.Errorf("SetStart(%d) accepted", bad)
		}
	}
}

// A prepared dataset folder has the ordinary permissions of a new folder (0777 less the
// umask), not MkdirTemp's 0700.
func TestPrepFolderFollowsTheUmask(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.txt")
	if err := os.WriteFile(in, []byte(strings.Repeat("permissions ", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "ds")
	if _, err := Prep(context.Background(), out, []string{in}, WithVocab("byte"), WithSplit(1, 0, 0)); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o755 {
		t.Fatalf("dataset folder mode %o, want 755 under umask 022", got)
	}
}
