package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sugarme/gotch"

	"xspan/dataset"
	"xspan/internal/torchrt"
	"xspan/lm"
	"xspan/train"
)

// tinyCharRun trains a very small model for two steps on a char dataset and returns the
// run folder: a real checkpoint with a char vocabulary.
func tinyCharRun(t *testing.T) string {
	t.Helper()
	defer torchrt.Lock()()
	dir := t.TempDir()
	in := filepath.Join(dir, "corpus.txt")
	if err := os.WriteFile(in, testText(), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	man, err := dataset.Prep(context.Background(), data, []string{in}, dataset.WithVocab("char"), dataset.WithLevel(1))
	if err != nil {
		t.Fatal(err)
	}
	cfg := lm.Config{
		ModelConfig: lm.ModelConfig{Vocab: man.Vocab.Size, Layers: 1, Dim: 16, Heads: 2, FFN: 32, Block: 16,
			Expire: true, MaxSpan: 64, Ramp: 8, PreDiv: 1, InitFrac: 0.1, Alpha: 1e-6},
		TrainConfig: lm.TrainConfig{Batch: 2, Steps: 2, LR: 1e-3, Warmup: 1, Schedule: lm.ScheduleConstant, Accumulate: 1, Seed: 1},
	}
	run := filepath.Join(dir, "run")
	if _, err := train.Run(context.Background(), cfg, data, run, train.WithDevice(gotch.CPU), train.WithOutput(io.Discard), train.WithoutFinalEval()); err != nil {
		t.Fatal(err)
	}
	return run
}

func TestCLIGenerateFromCheckpoint(t *testing.T) {
	runDir := tinyCharRun(t)
	args := func(extra ...string) []string {
		return append([]string{"generate", "--ckpt", runDir, "--device", "cpu", "--threads", "1", "--max-new-tokens", "40", "--seed", "2"}, extra...)
	}
	a, stderr := mustRun(t, args("--prompt", "Expire-Span")...)
	b, _ := mustRun(t, args("--prompt", "Expire-Span")...)
	if a == "" || a != b || !strings.Contains(stderr, "step 2") || !strings.Contains(stderr, "char vocabulary") {
		t.Errorf("same seed: %q vs %q; stderr %q", a, b, stderr)
	}
	// Every generated character is in the training text's vocabulary (or <unk>'s U+FFFD).
	known := string(testText()) + "\uFFFD\n"
	for _, r := range a {
		if !strings.ContainsRune(known, r) {
			t.Errorf("generated %q, outside the char vocabulary", r)
		}
	}
	code, _, stderr := run(t, args("--prompt", "Expire-Span ✓ ☃")...)
	if code != 1 || !strings.Contains(stderr, "2 character(s) outside the model's vocabulary: '✓', '☃'") {
		t.Errorf("unknown characters: exit %d, %q", code, stderr)
	}
	_, stderr = mustRun(t, args("--prompt", "Expire-Span ✓", "--unk", "replace")...)
	if !strings.Contains(stderr, "warning: 1 prompt character(s) outside the vocabulary became <unk>: '✓'") {
		t.Errorf("--unk replace: %q", stderr)
	}
	// RUN/best names a checkpoint too (with no validation, it may be absent).
	if _, err := os.Stat(filepath.Join(runDir, "best")); err == nil {
		if c, _ := mustRun(t, args("--prompt", "Expire-Span", "--ckpt", filepath.Join(runDir, "best"))...); c == "" {
			t.Errorf("RUN/best generated nothing")
		}
	}
}
