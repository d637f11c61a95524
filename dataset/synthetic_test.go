package dataset

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// copyDataset writes a copy-task dataset and returns its folder and manifest.
func copyDataset(t testing.TB, task CopyTask, opts ...Option) (string, *Manifest) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "copy")
	m, err := PrepCopy(context.Background(), out, task, opts...)
	if err != nil {
		t.Fatalf("PrepCopy: %v", err)
	}
	return out, m
}

// readDir returns every file of a folder by name.
func readDir(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = data
	}
	return out
}

func TestPrepCopyDeterministic(t *testing.T) {
	task := CopyTask{SeqLen: 5, Gap: 9, Alphabet: 7, Examples: 40, Seed: 42}
	a, _ := copyDataset(t, task, WithShardTokens(100), WithWorkers(3))
	b, _ := copyDataset(t, task, WithShardTokens(100), WithWorkers(1))
	fa, fb := readDir(t, a), readDir(t, b)
	if len(fa) != 1+2*(9+1+1) { // manifest, a shard and a mask per shard: 40*21 tokens in 9 shards, 4*21 in 1
		t.Errorf("%d files: %v", len(fa), slices.Sorted(func(yield func(string) bool) {
			for k := range fa {
				if !yield(k) {
					return
				}
			}
		}))
	}
	for name, data := range fa {
		if !slices.Equal(data, fb[name]) {
			t.Errorf("%s differs between two runs with the same seed", name)
		}
	}
	task.Seed = 43
	c, _ := copyDataset(t, task, WithShardTokens(100))
	if slices.Equal(readDir(t, c)["train-00000.xsh"], fa["train-00000.xsh"]) {
		t.Errorf("seeds 42 and 43 give the same train shard")
	}
	// The splits draw different strings.
	ra, _ := Open(a)
	tr, _ := ra.Tokens("train")
	va, _ := ra.Tokens("valid")
	te, _ := ra.Tokens("test")
	if slices.Equal(tr[:len(va)], va) || slices.Equal(va, te) {
		t.Errorf("splits repeat each other's strings")
	}
}

// checkCopySplit checks the layout and mask of every example of a split.
func checkCopySplit(t *testing.T, r *Reader, split string, task CopyTask, examples int) {
	t.Helper()
	N, G, L := task.SeqLen, task.Gap, task.ExampleLen()
	v, err := r.Vocab()
	if err != nil {
		t.Fatal(err)
	}
	ids, err := r.Tokens(split)
	if err != nil {
		t.Fatal(err)
	}
	text := string(v.Decode(ids))
	if len(text) != examples*L {
		t.Fatalf("%s: %d characters, want %d examples of %d", split, len(text), examples, L)
	}
	mask, err := r.Scored(split)
	if err != nil {
		t.Fatal(err)
	}
	if len(mask) != len(ids) {
		t.Fatalf("%s: mask of %d for %d tokens", split, len(mask), len(ids))
	}
	seen := map[rune]bool{}
	for k := range examples {
		ex := text[k*L : (k+1)*L]
		src := ex[:N]
		for _, c := range src {
			if !strings.ContainsRune(CopySymbols[:task.Alphabet], c) {
				t.Fatalf("%s example %d: symbol %q outside the alphabet of %d: %q", split, k, c, task.Alphabet, ex)
			}
			seen[c] = true
		}
		want := src + "<" + strings.Repeat(".", G) + ">" + src
		if ex != want {
			t.Fatalf("%s example %d: %q, want %q", split, k, ex, want)
		}
		for o := range L {
			if got, want := mask[k*L+o], o >= task.CopyOffset(); got != want {
				t.Fatalf("%s example %d offset %d (%q): scored %v, want %v", split, k, o, ex[o], got, want)
			}
		}
	}
	if split == "train" && len(seen) != task.Alphabet {
		t.Errorf("train uses %d of %d symbols", len(seen), task.Alphabet)
	}
}

func TestPrepCopyLayout(t *testing.T) {
	for _, task := range []CopyTask{
		{SeqLen: 6, Gap: 11, Alphabet: 4, Examples: 60, EvalExamples: 7, Seed: 1},
		{SeqLen: 1, Gap: 0, Alphabet: 2, Examples: 30, Seed: 2},
		{SeqLen: 16, Gap: 40, Alphabet: MaxCopyAlphabet, Examples: 200, Seed: 3},
	} {
		out, m := copyDataset(t, task, WithShardTokens(37)) // shards cut examples anywhere
		r, err := Open(out)
		if err != nil {
			t.Fatal(err)
		}
		if !r.HasMask() || !slices.Equal(m.Requires, []string{FeatureScoredMask}) || m.Input != "synthetic" {
			t.Errorf("%+v: requires %v, input %q", task, m.Requires, m.Input)
		}
		eval := task.EvalExamples
		if eval == 0 {
			eval = max(1, task.Examples/10)
		}
		tk := r.Manifest().Task
		if tk == nil || tk.Name != TaskCopy || tk.SeqLen != task.SeqLen || tk.Gap != task.Gap || tk.EvalExamples != eval ||
			tk.ExampleLen != 2*task.SeqLen+task.Gap+2 || tk.CopyOffset != task.SeqLen+task.Gap+2 || tk.Symbols != CopySymbols[:task.Alphabet] {
			t.Errorf("%+v: task in the manifest: %+v", task, tk)
		}
		if m.Vocab.Size != task.Alphabet+4 || m.TokenWidth != 1 {
			t.Errorf("%+v: vocabulary of %d ids, width %d", task, m.Vocab.Size, m.TokenWidth)
		}
		for i, name := range SplitNames {
			n := []int{task.Examples, eval, eval}[i]
			s, err := m.Split(name)
			if err != nil {
				t.Fatal(err)
			}
			if s.ExampleLen != int64(task.ExampleLen()) || s.Scored != int64(n*task.SeqLen) {
				t.Errorf("%+v %s: example_len %d, scored %d", task, name, s.ExampleLen, s.Scored)
			}
			checkCopySplit(t, r, name, task, n)
		}
	}
}

func TestCopyMaskChecked(t *testing.T) {
	task := CopyTask{SeqLen: 3, Gap: 4, Alphabet: 3, Examples: 20, Seed: 5}
	out, _ := copyDataset(t, task, WithShardTokens(50))
	path := filepath.Join(out, ManifestName)
	orig, _ := os.ReadFile(path)
	edit := func(old, new string) {
		t.Helper()
		if !strings.Contains(string(orig), old) {
			t.Fatalf("manifest lacks %q", old)
		}
		os.WriteFile(path, []byte(strings.Replace(string(orig), old, new, 1)), 0o644)
	}
	// The manifest must require the feature that its masks carry, and no unknown one.
	edit(`"requires": [
    "scored-mask"
  ],`, ``)
	if _, err := Open(out); err == nil || !strings.Contains(err.Error(), "does not require scored-mask") {
		t.Errorf("masks without requires: %v", err)
	}
	edit(`"scored-mask"`, `"scored-mask", "time-travel"`)
	if _, err := Open(out); err == nil || !strings.Contains(err.Error(), "does not know: time-travel") || strings.Contains(err.Error(), "scored-mask") {
		t.Errorf("unknown feature: %v", err)
	}
	edit(`"file": "train-00001.xsm"`, `"file": "train-00000.xsm"`)
	if _, err := Open(out); err == nil || !strings.Contains(err.Error(), "repeated mask file name") {
		t.Errorf("repeated mask file: %v", err)
	}
	edit(`"example_len": 12,`, `"example_len": 7,`)
	if _, err := Open(out); err == nil || !strings.Contains(err.Error(), "not a whole number of examples of 7") {
		t.Errorf("bad example length: %v", err)
	}
	edit(`"scored": 60`, `"scored": 61`)
	r, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Scored("train"); err == nil || !strings.Contains(err.Error(), "masks score 60 tokens, manifest says 61") {
		t.Errorf("wrong scored count: %v", err)
	}
	os.WriteFile(path, orig, 0o644)

	// A corrupt mask file, or one with a value other than 0 or 1, is an error naming it.
	mpath := filepath.Join(out, "train-00001.xsm")
	good, _ := os.ReadFile(mpath)
	bad := slices.Clone(good)
	bad[len(bad)-3] ^= 0x55
	os.WriteFile(mpath, bad, 0o644)
	r, _ = Open(out)
	if _, err := r.Scored("train"); err == nil || !strings.Contains(err.Error(), mpath) {
		t.Errorf("corrupt mask: %v", err)
	}
	if _, err := NewBatcher(r, "train", 2, 4); err == nil || !strings.Contains(err.Error(), mpath) {
		t.Errorf("batcher over a corrupt mask: %v", err)
	}
	values := make([]byte, 50)
	values[7] = 2
	os.WriteFile(mpath, appendShard(nil, newTestEncoder(t), values, 1), 0o644)
	edit(`"checksum": "`+r.Manifest().Splits[0].Shards[1].Mask.Checksum+`"`, `"checksum": "`+checksum(values)+`"`)
	r, _ = Open(out)
	if _, err := r.ScoredShard("train", 1); err == nil || !strings.Contains(err.Error(), mpath+": mask value 2 at position 7") {
		t.Errorf("mask value 2: %v", err)
	}
	os.Remove(mpath)
	if _, err := r.ScoredShard("train", 1); err == nil || !strings.Contains(err.Error(), mpath) {
		t.Errorf("missing mask: %v", err)
	}

	// A dataset without masks has none to give.
	plain, _ := Open(byteDataset(t, corpus(3000, 4)))
	if plain.HasMask() {
		t.Errorf("a text dataset has a mask")
	}
	if _, err := plain.Scored("train"); err == nil || !strings.Contains(err.Error(), "no scored mask") {
		t.Errorf("Scored of a text dataset: %v", err)
	}
}

func TestExampleBatcher(t *testing.T) {
	task := CopyTask{SeqLen: 4, Gap: 13, Alphabet: 5, Examples: 23, Seed: 9}
	L := int64(task.ExampleLen()) // 23
	out, _ := copyDataset(t, task, WithShardTokens(64))
	r, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := r.Tokens("train")
	mask, _ := r.Scored("train")
	v, _ := r.Vocab()
	for _, c := range []struct{ B, M int }{{3, 7}, {4, 5}, {1, 30}, {23, 8}, {2, 1}} {
		b, err := NewBatcher(r, "train", c.B, c.M)
		if err != nil {
			t.Fatalf("B %d M %d: %v", c.B, c.M, err)
		}
		wantLen := int64(task.Examples/c.B) * L
		if b.StreamLen() != wantLen || b.ExampleLen() != L || !b.HasMask() || b.Blocks() != (wantLen-1)/int64(c.M) {
			t.Fatalf("B %d M %d: stream length %d (want %d), example length %d, mask %v, blocks %d",
				c.B, c.M, b.StreamLen(), wantLen, b.ExampleLen(), b.HasMask(), b.Blocks())
		}
		M, W := c.M, c.M+1
		for pos := int64(0); ; pos++ {
			x, m, err := b.NextWithMask()
			if errors.Is(err, io.EOF) {
				if pos != b.Blocks() {
					t.Fatalf("B %d M %d: EOF after %d blocks, want %d", c.B, c.M, pos, b.Blocks())
				}
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(x) != c.B*W || len(m) != c.B*M {
				t.Fatalf("B %d M %d: %d ids and %d mask values", c.B, c.M, len(x), len(m))
			}
			for s := range c.B {
				off := b.TokenOffset(pos, s)
				if pos == 0 {
					// Every stream starts at an example boundary, with a whole example.
					row := make([]uint32, L)
					copy(row, ids[off:off+L])
					ex := string(v.Decode(row))
					if off%L != 0 || ex[:task.SeqLen] != ex[task.CopyOffset():] || ex[task.SeqLen] != '<' {
						t.Fatalf("B %d M %d: stream %d starts at %d, example %q", c.B, c.M, s, off, ex)
					}
				}
				for j := range W {
					if x[s*W+j] != int64(ids[off+int64(j)]) {
						t.Fatalf("B %d M %d block %d stream %d: token %d differs from the split", c.B, c.M, pos, s, j)
					}
				}
				for j := range M {
					p := off + 1 + int64(j) // the target's position in the split
					want := float32(0)
					if p%L >= int64(task.CopyOffset()) {
						want = 1
					}
					if m[s*M+j] != want || (want == 1) != mask[p] {
						t.Fatalf("B %d M %d block %d stream %d target %d (split offset %d, example offset %d): mask %v, want %v",
							c.B, c.M, pos, s, j, p, p%L, m[s*M+j], want)
					}
				}
			}
		}
	}
	// Too few examples for the streams: an error that says so.
	if _, err := NewBatcher(r, "valid", 3, 4); err == nil || !strings.Contains(err.Error(), "split valid has 2 examples of 23 tokens, too few for 3 streams") {
		t.Errorf("too few examples: %v", err)
	}
}

func TestBatcherMaskWithoutMasks(t *testing.T) {
	out := byteDataset(t, corpus(5000, 3), WithSplit(1, 0, 0), WithShardTokens(700))
	r, _ := Open(out)
	a, err := NewBatcher(r, "train", 3, 10)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewBatcher(r, "train", 3, 10)
	if a.HasMask() || a.ExampleLen() != 0 || a.StreamLen() != 5000/3 {
		t.Fatalf("mask %v, example length %d, stream length %d", a.HasMask(), a.ExampleLen(), a.StreamLen())
	}
	for {
		x, m, err := a.NextWithMask()
		y, err2 := b.Next()
		if errors.Is(err, io.EOF) && errors.Is(err2, io.EOF) {
			break
		}
		if err != nil || err2 != nil {
			t.Fatalf("%v, %v", err, err2)
		}
		if !slices.Equal(x, y) {
			t.Fatalf("block %d: NextWithMask and Next differ", a.Position())
		}
		if len(m) != 30 || slices.ContainsFunc(m, func(f float32) bool { return f != 1 }) {
			t.Fatalf("block %d: mask %v, want 30 ones", a.Position(), m)
		}
	}
}

func TestPrepCopyErrors(t *testing.T) {
	ok := CopyTask{SeqLen: 4, Gap: 2, Alphabet: 3, Examples: 5}
	for _, c := range []struct {
		edit func(*CopyTask)
		want string
	}{
		{func(t *CopyTask) { t.SeqLen = 0 }, "seq-len 0"},
		{func(t *CopyTask) { t.Gap = -1 }, "gap -1"},
		{func(t *CopyTask) { t.Alphabet = 1 }, "alphabet 1: want 2 to 62"},
		{func(t *CopyTask) { t.Alphabet = 63 }, "alphabet 63: want 2 to 62"},
		{func(t *CopyTask) { t.Examples = 0 }, "examples 0"},
		{func(t *CopyTask) { t.EvalExamples = -2 }, "eval-examples -2"},
		{func(t *CopyTask) { t.Examples, t.Gap = 1<<30, 1<<20 }, "more than"},
	} {
		task := ok
		c.edit(&task)
		if err := task.Check(); err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: Check: %v, want one line with %q", task, err, c.want)
		}
		dir := t.TempDir()
		if _, err := PrepCopy(context.Background(), filepath.Join(dir, "ds"), task); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: PrepCopy: %v, want %q", task, err, c.want)
		}
		if left := leftovers(t, dir); len(left) > 0 {
			t.Errorf("%+v: left behind %v", task, left)
		}
	}
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "ds")
	if _, err := PrepCopy(context.Background(), out, ok, WithVocab("byte")); err == nil || !strings.Contains(err.Error(), "do not apply") {
		t.Errorf("vocabulary option: %v", err)
	}
	// A cancelled run leaves nothing; an existing folder needs force.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := PrepCopy(ctx, out, ok); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if left := leftovers(t, dir); len(left) > 0 {
		t.Errorf("cancelled: left behind %v", left)
	}
	if _, err := PrepCopy(context.Background(), out, ok); err != nil {
		t.Fatal(err)
	}
	if _, err := PrepCopy(context.Background(), out, ok); err == nil || !strings.Contains(err.Error(), out+": already exists") {
		t.Errorf("existing folder: %v", err)
	}
	ok.Seed = 7
	if _, err := PrepCopy(context.Background(), out, ok, WithForce(true)); err != nil {
		t.Errorf("force: %v", err)
	}
	if left := leftovers(t, dir, "ds"); len(left) > 0 {
		t.Errorf("left behind %v", left)
	}
}

func TestSplitmixIntn(t *testing.T) {
	rng := splitmix64(1)
	var counts [7]int
	for range 70000 {
		counts[rng.intn(7)]++
	}
	for k, n := range counts {
		if n < 9500 || n > 10500 {
			t.Errorf("value %d drawn %d times of 70000, want about 10000", k, n)
		}
	}
	// Fixed output: datasets made by one xspan must be made again by the next.
	rng = splitmix64(0)
	if got := rng.next(); got != 0xe220a8397b1dcdaf {
		t.Errorf("splitmix64(0) first value %#x", got)
	}
}
