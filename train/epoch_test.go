package train

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sugarme/gotch"

	"xspan/checkpoint"
	"xspan/dataset"
	"xspan/internal/torchrt"
)

// Epochs as the reference runs them: each pass after the first starts its streams at an
// offset below M drawn from the seed, with fresh memories; a run interrupted in the second
// epoch resumes to the same weights as one that never stopped.
func TestEpochsStartAtRandomOffsetsAndResumeExactly(t *testing.T) {
	defer torchrt.Lock()()
	torchrt.SetThreads(1)
	dir := t.TempDir()
	in := filepath.Join(dir, "corpus.txt")
	if err := os.WriteFile(in, []byte(testText(2000)), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if _, err := dataset.Prep(context.Background(), data, []string{in}, dataset.WithSplit(0.8, 0.1, 0.1), dataset.WithVocab("char")); err != nil {
		t.Fatal(err)
	}
	cfg := tinyConfig(60) // 1,600 train tokens: streams of 400, about 24 blocks an epoch
	cfg.Dropout, cfg.Noisy = 0, false
	cfg.CkptEvery = 30

	tr := &trainer{cfg: cfg}
	r, err := dataset.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	if tr.batcher, err = dataset.NewBatcher(r, "train", cfg.Batch, cfg.Block); err != nil {
		t.Fatal(err)
	}
	starts := map[int64]bool{}
	for e := int64(1); e <= 8; e++ {
		s := tr.epochStart(e)
		if s < 0 || s >= int64(cfg.Block) || s != tr.epochStart(e) {
			t.Fatalf("epoch %d: start %d (want a fixed offset in [0, %d))", e, s, cfg.Block)
		}
		starts[s] = true
	}
	if tr.epochStart(0) != 0 || tr.epochStart(1) == 0 || len(starts) < 3 {
		t.Fatalf("epoch starts: first %d, second %d (the resume below needs it non-zero), %d distinct offsets over 8 epochs", tr.epochStart(0), tr.epochStart(1), len(starts))
	}

	runA := filepath.Join(dir, "a")
	if _, err := Run(context.Background(), cfg, data, runA, quiet(), WithoutFinalEval()); err != nil {
		t.Fatal(err)
	}
	runB := filepath.Join(dir, "b")
	ctx, cancel := context.WithCancel(context.Background())
	stop := WithOnStep(func(step int64, _ *checkpoint.Row) {
		if step == 40 {
			cancel()
		}
	})
	if _, err := Run(ctx, cfg, data, runB, quiet(), stop, WithoutFinalEval()); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted run: %v", err)
	}
	last, err := checkpoint.Latest(runB)
	if err != nil {
		t.Fatal(err)
	}
	h, err := checkpoint.ReadHeader(last)
	if err != nil {
		t.Fatal(err)
	}
	if h.Data.Epoch != 1 {
		t.Fatalf("interrupted at step 40 in epoch %d, want 1 (the test must resume mid-epoch 2)", h.Data.Epoch)
	}
	if _, err := Run(context.Background(), cfg, "", runB, quiet(), WithResume(true), WithoutFinalEval()); err != nil {
		t.Fatal(err)
	}
	ma, _, err := checkpoint.Load(runA, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	mb, _, err := checkpoint.Load(runB, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameTensors(paramValues(ma), paramValues(mb)); err != nil {
		t.Fatalf("60 steps straight vs 40 + resumed 20 across epochs: %v", err)
	}
}
