package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"xspan/internal/torchrt"
)

var errKilled = errors.New("killed")

// A prune stopped half-way (as kill -9 does: here after each number of files removed)
// never leaves a folder that passes for a checkpoint with files missing: every listed
// checkpoint loads whole, and Clean removes what is left.
func TestPruneInterruptedLeavesOnlyWholeCheckpoints(t *testing.T) {
	defer torchrt.Lock()()
	tmpl := t.TempDir()
	for s := int64(1); s <= 3; s++ {
		writeTest(t, tmpl, s, s)
	}
	nfiles := 5 // HEADER, weights, optim, memory-0, vocab.json
	defer func() { removeAll = os.RemoveAll }()
	for k := 0; k <= nfiles; k++ {
		run := filepath.Join(t.TempDir(), "run")
		for s := int64(1); s <= 3; s++ {
			copyDir(t, StepDir(tmpl, s), StepDir(run, s))
		}
		removeAll = func(path string) error {
			ents, err := os.ReadDir(path)
			if err != nil {
				return err
			}
			for _, e := range ents[:min(k, len(ents))] {
				os.Remove(filepath.Join(path, e.Name()))
			}
			return errKilled
		}
		if err := Prune(run, 1); !errors.Is(err, errKilled) {
			t.Fatalf("k=%d: Prune = %v", k, err)
		}
		removeAll = os.RemoveAll
		steps, err := Steps(run)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(steps, []int64{2, 3}) {
			t.Fatalf("killed after removing %d files of step 1: steps %v, want [2 3]", k, steps)
		}
		for _, s := range steps {
			if _, err := loadAll(StepDir(run, s)); err != nil {
				t.Fatalf("k=%d: listed checkpoint %d: %v", k, s, err)
			}
		}
		if err := Clean(run); err != nil {
			t.Fatal(err)
		}
		ents, _ := os.ReadDir(filepath.Join(run, Dir))
		if len(ents) != 2 {
			t.Fatalf("k=%d: after Clean the checkpoints folder holds %d entries", k, len(ents))
		}
	}
}

// A checkpoint replaced by one of the same step, killed between the two renames, waits
// under .old: Clean puts it back. Folders being written or removed go.
func TestCleanRestoresAReplacedCheckpoint(t *testing.T) {
	defer torchrt.Lock()()
	run := t.TempDir()
	writeTest(t, run, 1, 1)
	writeTest(t, run, 2, 2)
	os.Rename(StepDir(run, 2), StepDir(run, 2)+oldSuffix)
	os.MkdirAll(StepDir(run, 3)+tmpSuffix, 0o755)
	os.WriteFile(filepath.Join(StepDir(run, 3)+tmpSuffix, WeightsName), []byte("half"), 0o644)
	copyDir(t, StepDir(run, 1), StepDir(run, 1)+delSuffix)
	os.Remove(filepath.Join(StepDir(run, 1)+delSuffix, VocabName))
	if err := Clean(run); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(run, Dir))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{StepDirName(1), StepDirName(2)}) {
		t.Fatalf("after Clean: %v", names)
	}
	if _, err := loadAll(StepDir(run, 2)); err != nil {
		t.Fatal(err)
	}
}
