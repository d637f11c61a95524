// Package testcorpus gives tests a small corpus with structure that a tiny model picks up
// in a few steps, a char dataset prepared from it once per test binary, and a model
// config small enough to train in a test. Only tests import it.
package testcorpus

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"xspan/dataset"
	"xspan/lm"
)

// Text returns n bytes of sentences drawn from a few words, the same every call.
func Text(n int) string {
	words := []string{"the", "lord", "said", "unto", "moses", "and", "aaron", "in", "land", "of", "egypt", "saying", "this", "month", "shall", "be", "beginning"}
	r := rand.New(rand.NewPCG(7, 11))
	var b strings.Builder
	for b.Len() < n {
		k := 3 + r.IntN(8)
		for i := 0; i < k; i++ {
			if i > 0 {
				b.WriteByte(' ')
			}
			w := words[r.IntN(len(words))]
			if i == 0 {
				w = strings.ToUpper(w[:1]) + w[1:]
			}
			b.WriteString(w)
		}
		b.WriteString(". ")
	}
	return b.String()[:n]
}

var (
	once    sync.Once
	dataDir string
	dataErr error
)

// Dataset returns a char dataset of 24,000 bytes of Text (split 0.8/0.1/0.1), prepared
// once per test binary; Cleanup removes it.
func Dataset(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		dir, err := os.MkdirTemp("", "xspan-test-corpus-")
		if err != nil {
			dataErr = err
			return
		}
		in := filepath.Join(dir, "corpus.txt")
		if err := os.WriteFile(in, []byte(Text(24000)), 0o644); err != nil {
			dataErr = err
			return
		}
		dataDir = filepath.Join(dir, "data")
		_, dataErr = dataset.Prep(context.Background(), dataDir, []string{in},
			dataset.WithSplit(0.8, 0.1, 0.1), dataset.WithVocab("char"))
	})
	if dataErr != nil {
		t.Fatal(dataErr)
	}
	return dataDir
}

// Cleanup removes the dataset Dataset made, if any: call it from TestMain after m.Run.
func Cleanup() {
	if dataDir != "" {
		os.RemoveAll(filepath.Dir(dataDir))
	}
}

// TinyConfig is a model small enough to train in a test: 2 layers, dim 32, block 16,
// batch 4, with dropout and span noise on.
func TinyConfig(steps int) lm.Config {
	c, err := lm.Preset("tiny")
	if err != nil {
		panic(err)
	}
	c.Layers, c.Dim, c.Heads, c.FFN = 2, 32, 2, 64
	c.Block, c.MaxSpan, c.Ramp = 16, 64, 8
	c.Batch, c.Steps, c.Warmup = 4, steps, 2
	c.LR = 3e-3
	c.Dropout = 0.1
	c.Noisy = true
	c.EvalEvery, c.CkptEvery = 0, 0
	c.Seed = 42
	return c
}
