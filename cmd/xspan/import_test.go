package main

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sugarme/gotch"

	"xspan/checkpoint"
	"xspan/dataset"
	"xspan/eval"
	"xspan/internal/torchrt"
)

// refFixture is what refckpt/testdata/NAME.json holds of the reference's own forward:
// 24 blocks of M = 8 valid tokens, batch 1, from a fresh memory.
type refFixture struct {
	Vocab  []string `json:"vocab"`
	Blocks []struct {
		Targets  []int     `json:"targets"`
		LogP     []float64 `json:"logp"`
		CacheLen []int     `json:"cache_len"`
	} `json:"blocks"`
}

func readRefFixture(t *testing.T, name string) refFixture {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "refckpt", "testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var fx refFixture
	if err := json.Unmarshal(b, &fx); err != nil {
		t.Fatal(err)
	}
	return fx
}

// TestCLIImportReproducesReference imports both reference fixtures (post-norm from the
// data folder, pre-norm with <eos> from the corpus cache) and evaluates the run as the
// reference did (one stream, tails dropped, rectangular pruning): 'xspan eval --dump'
// gives every log-probability of the reference's forward to 1e-5, and the memory after
// every block has exactly the reference's cache length. Generation works on the run.
func TestCLIImportReproducesReference(t *testing.T) {
	td := filepath.Join("..", "..", "refckpt", "testdata")
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"post", []string{"--data", filepath.Join(td, "data"), "--ramp", "8"}},
		{"pre", []string{"--corpus", filepath.Join(td, "corpus-eos.pt"), "--max-span", "48", "--pre-div", "2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := readRefFixture(t, tc.name)
			dir := t.TempDir()
			runDir := filepath.Join(dir, "run")
			args := append([]string{"import", "--from", filepath.Join(td, tc.name+".pt"), "--out", runDir}, tc.args...)
			code, stdout, stderr := run(t, args...)
			if code != 0 {
				t.Fatalf("import: exit %d\n%s%s", code, stdout, stderr)
			}
			for _, want := range []string{"2 layers, d 32, 2 heads, FFN 64", "L 48 + R", "42 reference tokens", "char vocabulary of 42 ids (exact)", "dropped     the optimizer state"} {
				if !strings.Contains(stdout, want) {
					t.Errorf("import output lacks %q:\n%s", want, stdout)
				}
			}
			if best, err := checkpoint.Best(runDir); err != nil || filepath.Base(best) != checkpoint.StepDirName(80) {
				t.Errorf("best = %q, %v; want step 80 (the reference's scheduler_epoch)", best, err)
			}

			// Through the CLI: the per-token dump's bits are the reference's log-probabilities.
			dump := filepath.Join(dir, "bits.jsonl")
			code, stdout, stderr = run(t, "eval", "--ckpt", runDir, "--split", "valid", "--streams", "1", "--max-blocks", "24",
				"--dump", dump, "--threads", "1")
			if code != 0 {
				t.Fatalf("eval: exit %d\n%s%s", code, stdout, stderr)
			}
			if !strings.Contains(stdout, "1 stream, each from a fresh memory, tails dropped, rectangular pruning") {
				t.Errorf("eval output does not name the protocol:\n%s", stdout)
			}
			var want []float64
			for _, b := range fx.Blocks {
				want = append(want, b.LogP...)
			}
			f, err := os.Open(dump)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var got []float64
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				var line struct {
					Bits *float64 `json:"bits"`
				}
				if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
					t.Fatal(err)
				}
				if line.Bits != nil {
					got = append(got, -*line.Bits*math.Ln2)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("%d scored tokens in the dump, the reference %d", len(got), len(want))
			}
			worst := 0.0
			for i := range got {
				d := math.Abs(got[i] - want[i])
				worst = max(worst, d)
				if d > 1e-5 {
					t.Errorf("token %d: log p %.7f, the reference %.7f", i, got[i], want[i])
				}
			}

			// Through the eval package on the imported checkpoint: the cache after every block.
			func() {
				defer torchrt.Lock()()
				m, ck, err := checkpoint.Load(runDir, gotch.CPU)
				if err != nil {
					t.Fatal(err)
				}
				r, err := dataset.Open(ck.Header.Data.Dir)
				if err != nil {
					t.Fatal(err)
				}
				if err := ck.CheckVocab(r); err != nil {
					t.Fatal(err)
				}
				// The start id is the imported train split's first token.
				var first [1]uint32
				if _, err := r.ReadAt("train", 0, first[:]); err != nil {
					t.Fatal(err)
				}
				if id, ok := ck.StartID(); !ok || id != int64(first[0]) {
					t.Errorf("start id %d (%v), want the train split's first token %d", id, ok, first[0])
				}
				var lens [][]float64
				res, err := eval.Run(context.Background(), m, r, "valid", eval.WithStreams(1), eval.WithMaxBlocks(int64(len(fx.Blocks))),
					eval.WithBlockLive(func(_ int64, live []float64) { lens = append(lens, live) }))
				if err != nil {
					t.Fatal(err)
				}
				if res.Prune != "rectangular" || res.Protocol != "streams" {
					t.Errorf("protocol %q, rule %q", res.Protocol, res.Prune)
				}
				if len(lens) != len(fx.Blocks) {
					t.Fatalf("%d blocks, the reference %d", len(lens), len(fx.Blocks))
				}
				for b, bl := range fx.Blocks {
					for l, w := range bl.CacheLen {
						if lens[b][l] != float64(w) {
							t.Errorf("block %d, layer %d: cache of %v keys, the reference %d", b, l, lens[b][l], w)
						}
					}
				}
				t.Logf("%s: %d log-probabilities, largest difference %.2g; final cache %v (the reference %v)", tc.name, len(got), worst, lens[len(lens)-1], fx.Blocks[len(fx.Blocks)-1].CacheLen)
			}()

			// The default protocol scores the whole split, and generate runs on the import.
			code, stdout, stderr = run(t, "eval", "--ckpt", runDir, "--split", "test", "--json", "--threads", "1")
			if code != 0 || !strings.Contains(stdout, `"protocol": "one-stream"`) || !strings.Contains(stdout, `"prune": "per-key"`) {
				t.Errorf("eval (default protocol): exit %d\n%s%s", code, stdout, stderr)
			}
			code, stdout, stderr = run(t, "generate", "--ckpt", runDir, "--prompt", "Ada ", "--max-new-tokens", "20", "--temperature", "0", "--threads", "1")
			if code != 0 || len(stdout) < 20 {
				t.Errorf("generate: exit %d\n%s%s", code, stdout, stderr)
			}
		})
	}
}

// TestCLIImportErrors: what import refuses, each with a message naming what does not fit.
func TestCLIImportErrors(t *testing.T) {
	td := filepath.Join("..", "..", "refckpt", "testdata")
	dir := t.TempDir()
	post := filepath.Join(td, "post.pt")
	data := filepath.Join(td, "data")
	b, err := os.ReadFile(post)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.pt")
	if err := os.WriteFile(truncated, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	st := filepath.Join(dir, "model.safetensors")
	os.WriteFile(st, []byte("\x10\x00\x00\x00\x00\x00\x00\x00{\"__metadata__\":{}}"), 0o644)
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("not a checkpoint\n"), 0o644)
	// A data folder whose vocabulary is not the checkpoint's: one token more in train.txt.
	other := filepath.Join(dir, "other")
	os.MkdirAll(other, 0o755)
	for _, s := range []string{"train", "valid", "test"} {
		c, _ := os.ReadFile(filepath.Join(data, s+".txt"))
		if s == "train" {
			c = append(c, []byte("126\n")...)
		}
		os.WriteFile(filepath.Join(other, s+".txt"), c, 0o644)
	}
	out := func(n string) string { return filepath.Join(dir, n) }
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--from", post, "--out", out("a")}, 2, "give --data DIR or --corpus"},
		{[]string{"--from", post, "--data", data, "--out", out("b"), "--max-span", "40", "--ramp", "4"}, 2, "L + R = 56"},
		{[]string{"--from", post, "--data", data, "--out", out("c"), "--ramp", "8", "--set", "dim=64"}, 2, "the checkpoint fixes dim at 32"},
		{[]string{"--from", truncated, "--data", data, "--out", out("d")}, 1, "truncated.pt"},
		{[]string{"--from", st, "--data", data, "--out", out("e")}, 1, "model.safetensors: bad safetensors header"},
		{[]string{"--from", text, "--data", data, "--out", out("f")}, 1, "neither a torch.save zip"},
		{[]string{"--from", post, "--data", other, "--out", out("g"), "--ramp", "8"}, 1, "has 43 tokens, the checkpoint's embedding 42 rows"},
		{[]string{"--from", filepath.Join(td, "corpus-eos.pt"), "--data", data, "--out", out("h")}, 1, "not a dict with a \"model\" entry"},
	} {
		code, stdout, stderr := run(t, append([]string{"import"}, tc.args...)...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("import %v: exit %d, want %d with %q\n%s%s", tc.args, code, tc.code, tc.want, stdout, stderr)
		}
	}
	for _, n := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		if steps, _ := checkpoint.Steps(out(n)); len(steps) > 0 {
			t.Errorf("a refused import left checkpoints in %s", out(n))
		}
	}
}
