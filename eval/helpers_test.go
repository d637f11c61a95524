package eval_test

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

// testText is a small corpus with structure a tiny model can pick up quickly.
func testText(n int) string {
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
	dataOnce sync.Once
	dataDir  string
	dataErr  error
)

// testData returns a char dataset prepared once for the package's tests.
func testData(t *testing.T) string {
	t.Helper()
	dataOnce.Do(func() {
		dir, err := os.MkdirTemp("", "xspan-eval-test-")
		if err != nil {
			dataErr = err
			return
		}
		in := filepath.Join(dir, "corpus.txt")
		if err := os.WriteFile(in, []byte(testText(24000)), 0o644); err != nil {
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

func TestMain(m *testing.M) {
	code := m.Run()
	if dataDir != "" {
		os.RemoveAll(filepath.Dir(dataDir))
	}
	os.Exit(code)
}

// tinyConfig is a model small enough to train in a test: 2 layers, dim 32, block 16.
func tinyConfig(steps int) lm.Config {
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
