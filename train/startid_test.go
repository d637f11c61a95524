package train

import (
	"context"
	"path/filepath"
	"testing"

	"xspan/checkpoint"
	"xspan/dataset"
	"xspan/internal/torchrt"
)

// Every checkpoint records the start id: the first token of the training split, here
// the first character of the corpus (a char dataset, its text without newlines) and the
// first symbol of a copy task's first example; a resumed run's checkpoints too.
func TestCheckpointsRecordStartID(t *testing.T) {
	defer torchrt.Lock()()
	// The corpus: a char dataset, train split first.
	data := testData(t)
	r, err := dataset.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	v, err := r.Vocab()
	if err != nil {
		t.Fatal(err)
	}
	ids, err := v.Encode([]byte(testText(1)))
	if err != nil || len(ids) != 1 {
		t.Fatalf("the corpus's first character %q: %v, %v", testText(1), ids, err)
	}
	cfg := tinyConfig(2)
	cfg.CkptEvery = 1
	run := filepath.Join(t.TempDir(), "run")
	if _, err := Run(context.Background(), cfg, data, run, quiet(), WithoutFinalEval()); err != nil {
		t.Fatal(err)
	}
	cfg.Steps = 3
	if _, err := Run(context.Background(), cfg, data, run, quiet(), WithoutFinalEval(), WithResume(true)); err != nil {
		t.Fatal(err)
	}
	wantStart(t, run, []int64{1, 2, 3}, int64(ids[0]))

	// The copy task: its first example begins with a symbol of its string.
	task := dataset.CopyTask{SeqLen: 4, Gap: 6, Alphabet: 4, Examples: 64, Seed: 5}
	copyData := filepath.Join(t.TempDir(), "copy")
	if _, err := dataset.PrepCopy(context.Background(), copyData, task); err != nil {
		t.Fatal(err)
	}
	cr, err := dataset.Open(copyData)
	if err != nil {
		t.Fatal(err)
	}
	train, err := cr.Tokens("train")
	if err != nil {
		t.Fatal(err)
	}
	cv, err := cr.Vocab()
	if err != nil {
		t.Fatal(err)
	}
	if first := cv.Decode([]uint32{train[0]}); len(first) != 1 || first[0] < 'a' || first[0] > 'd' {
		t.Fatalf("the copy task's first token %d is %q, not one of its 4 symbols", train[0], first)
	}
	cfg = tinyConfig(1)
	copyRun := filepath.Join(t.TempDir(), "copy-run")
	if _, err := Run(context.Background(), cfg, copyData, copyRun, quiet(), WithoutFinalEval()); err != nil {
		t.Fatal(err)
	}
	wantStart(t, copyRun, []int64{1}, int64(train[0]))
}

// wantStart checks that run holds checkpoints of steps, each recording the start id want.
func wantStart(t *testing.T, run string, steps []int64, want int64) {
	t.Helper()
	got, err := checkpoint.Steps(run)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(steps) {
		t.Fatalf("%s: checkpoints of steps %v, want %v", run, got, steps)
	}
	for i, s := range steps {
		if got[i] != s {
			t.Fatalf("%s: checkpoints of steps %v, want %v", run, got, steps)
		}
		ck, err := checkpoint.Open(checkpoint.StepDir(run, s))
		if err != nil {
			t.Fatal(err)
		}
		if id, ok := ck.StartID(); !ok || id != want {
			t.Errorf("%s: start id %d (%v), want %d", ck.Path, id, ok, want)
		}
	}
}
