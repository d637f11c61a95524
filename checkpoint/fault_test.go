package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"xspan/internal/torchrt"
	"xspan/lm"
)

// A write that fails (a full disk, injected here at every file and at several offsets of
// each) fails Write with an error that says why and names the checkpoint, leaves no
// temporary folder, and leaves the checkpoint written before whole; the next Write works.
func TestWriteFailureKeepsThePreviousCheckpoint(t *testing.T) {
	defer torchrt.Lock()()
	run := t.TempDir()
	first := writeTest(t, run, 1, 7)
	want, err := loadAll(first)
	if err != nil {
		t.Fatal(err)
	}
	// The files of a checkpoint, with their sizes, from the first one's HEADER.
	h, err := ReadHeader(first)
	if err != nil {
		t.Fatal(err)
	}
	h.Files[HeaderName] = FileSum{Size: 600}
	m, mem, o, v := testModel(t, 8)
	faults := 0
	for name, sum := range h.Files {
		for _, at := range []int64{0, 1, sum.Size / 2, sum.Size - 1} {
			FaultHook = func(path string) int64 {
				if filepath.Base(path) == name {
					return at
				}
				return -1
			}
			_, err := Write(run, &State{Header: Header{Step: 2}, Model: m, Optim: o, Memories: []*lm.Memory{mem}, Vocab: v})
			FaultHook = nil
			faults++
			if err == nil || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "no space left on device") ||
				!strings.Contains(err.Error(), StepDir(run, 2)) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("%s fails at byte %d: err = %v", name, at, err)
			}
			ents, _ := os.ReadDir(filepath.Join(run, Dir))
			if len(ents) != 1 || ents[0].Name() != StepDirName(1) {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				t.Fatalf("%s fails at byte %d: checkpoints folder holds %v", name, at, names)
			}
			if steps, _ := Steps(run); !slices.Equal(steps, []int64{1}) {
				t.Fatalf("steps %v", steps)
			}
		}
	}
	got, err := loadAll(first)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameValues(want, got); err != nil {
		t.Fatalf("the first checkpoint changed: %v", err)
	}
	if _, err := Write(run, &State{Header: Header{Step: 2}, Model: m, Optim: o, Memories: []*lm.Memory{mem}, Vocab: v}); err != nil {
		t.Fatalf("after the faults: %v", err)
	}
	if _, err := loadAll(StepDir(run, 2)); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d injected write failures", faults)
}
