package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sugarme/gotch"

	"xspan/checkpoint"
	"xspan/dataset"
	"xspan/generate"
	"xspan/internal/torchrt"
	"xspan/lm"
	"xspan/tokenize"
	"xspan/train"
)

// tinyCharRun trains a very small model for two steps on a char dataset (prepared from
// testText with opts; in the run folder's parent, as "data") and returns the run folder:
// a real checkpoint with a char vocabulary.
func tinyCharRun(t *testing.T, opts ...dataset.Option) string {
	t.Helper()
	defer torchrt.Lock()()
	dir := t.TempDir()
	in := filepath.Join(dir, "corpus.txt")
	if err := os.WriteFile(in, testText(), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	man, err := dataset.Prep(context.Background(), data, []string{in}, append([]dataset.Option{dataset.WithVocab("char"), dataset.WithLevel(1)}, opts...)...)
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

// A model trained on a char vocabulary without "\n" (newlines dropped) has its checkpoint
// record the training text's first character, 'E', as its start id; the model that
// generate and serve load gives it, and an empty prompt starts from it: greedy
// generation from "" is generation from "E".
func TestCLIGenerateEmptyPromptStartsFromStartID(t *testing.T) {
	runDir := tinyCharRun(t, dataset.WithNewlines(dataset.NewlinesDrop))
	r, err := dataset.Open(filepath.Join(filepath.Dir(runDir), "data"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := r.Vocab()
	if err != nil {
		t.Fatal(err)
	}
	if ids, err := v.Encode([]byte("\n")); err != nil || len(ids) != 1 || int(ids[0]) != v.(*tokenize.Char).Unk() {
		t.Fatalf(`"\n" in a vocabulary prepared with newlines dropped: %v, %v`, ids, err)
	}
	var first [1]uint32
	if _, err := r.ReadAt("train", 0, first[:]); err != nil {
		t.Fatal(err)
	}
	if c := string(v.Decode(first[:])); c != "E" {
		t.Fatalf("the train split begins with %q, want the corpus's first character E", c)
	}
	want := int64(first[0])
	ck, err := checkpoint.Open(runDir)
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := ck.StartID(); !ok || id != want {
		t.Fatalf("the checkpoint's start id: %d (%v), want %d (E)", id, ok, want)
	}

	func() {
		defer torchrt.Lock()()
		mf := modelFlags{ckpt: runDir, deviceFlags: deviceFlags{device: "cpu", threads: 1}}
		m, err := mf.load(func(string, ...any) {})
		if err != nil {
			t.Fatal(err)
		}
		var model generate.Model = m
		s, ok := model.(generate.StartIDer)
		if !ok {
			t.Fatal("the model loaded from a checkpoint is no generate.StartIDer")
		}
		if id, ok := s.StartID(); !ok || id != want {
			t.Errorf("StartID: %d (%v), want %d", id, ok, want)
		}
		if got := generate.StartToken(model); got != want {
			t.Errorf("StartToken: %d, want %d (E)", got, want)
		}
		ids, warning, err := generate.PromptTokens(model, nil, generate.UnkError)
		if err != nil || warning != "" || len(ids) != 1 || ids[0] != want {
			t.Errorf("PromptTokens of an empty prompt: %v, %q, %v; want [%d]", ids, warning, err, want)
		}
	}()

	args := func(prompt string) []string {
		return []string{"generate", "--ckpt", runDir, "--device", "cpu", "--threads", "1", "--max-new-tokens", "30", "--seed", "3", "--temperature", "0", "--prompt", prompt}
	}
	empty, _ := mustRun(t, args("")...)
	e, _ := mustRun(t, args("E")...)
	if empty == "" || empty != e {
		t.Errorf("greedy from an empty prompt %q, from \"E\" %q: want the same", empty, e)
	}
}
