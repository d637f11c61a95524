package tokenize

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

const bpeFile = "testdata/bytelevel-bpe.json"

func sampleText(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "Line %d: the cat sat on the mat and the others ran, héllo 日本 %d\n  indented\ttab\n", i, i*i)
	}
	return b.Bytes()
}

func TestHFByteLevelRoundTrip(t *testing.T) {
	h, err := LoadHF(bpeFile)
	if err != nil {
		t.Fatal(err)
	}
	if h.Kind() != KindHF || h.Size() != 271 {
		t.Fatalf("kind %s size %d", h.Kind(), h.Size())
	}
	text := []byte("the cat sat on the mat.\n  and the\tothers, héllo 日本\n")
	ids, err := h.Encode(text)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) >= len(text) {
		t.Fatalf("%d ids for %d bytes: no merges applied", len(ids), len(text))
	}
	if got := h.Decode(ids); !bytes.Equal(got, text) {
		t.Fatalf("decode %q, want %q", got, text)
	}
}

func TestHFParallelMatchesSingle(t *testing.T) {
	h, err := LoadHF(bpeFile)
	if err != nil {
		t.Fatal(err)
	}
	defer func(n int) { hfChunk = n }(hfChunk)
	hfChunk = 16 << 10 // keep the test fast: the tokenizer runs at well under 1 MB/s
	text := sampleText(5 * hfChunk)
	if n := len(SplitText(text, hfChunk)); n < 4 {
		t.Fatalf("%d chunks", n)
	}
	one, err := h.EncodeWorkers(text, 1)
	if err != nil {
		t.Fatal(err)
	}
	// One pass over the whole text, without chunking, is the reference.
	tk := h.get()
	enc, err := tk.EncodeSingle(string(text), false)
	h.pool.Put(tk)
	if err != nil {
		t.Fatal(err)
	}
	if len(enc.Ids) != len(one) {
		t.Fatalf("chunked: %d ids, one pass: %d", len(one), len(enc.Ids))
	}
	// Progress comes chunk by chunk, and adds up to the text.
	var mu sync.Mutex
	var calls, seen int
	par, err := h.EncodeProgress(text, 4, func(n int) {
		mu.Lock()
		calls, seen = calls+1, seen+n
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := len(SplitText(text, hfChunk)); calls != want || seen != len(text) {
		t.Errorf("progress: %d calls for %d bytes; want %d for %d", calls, seen, want, len(text))
	}
	if !slices.Equal(one, par) {
		t.Fatal("parallel ids differ from single-worker ids")
	}
	if got := h.Decode(par); !bytes.Equal(got, text) {
		t.Fatal("parallel encoding does not decode to the text")
	}
}

func TestHFWordLevel(t *testing.T) {
	h, err := LoadHF("testdata/wordlevel.json")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := h.Encode([]byte("the cat sat on a dog."))
	if err != nil {
		t.Fatal(err)
	}
	want := []uint32{1, 2, 3, 4, 7, 0, 6}
	if !slices.Equal(ids, want) {
		t.Fatalf("ids %v, want %v", ids, want)
	}
	if got := string(h.Decode(ids)); got != "the cat sat on a [UNK] ." {
		t.Fatalf("decode %q", got)
	}
}

func TestHFErrors(t *testing.T) {
	if _, err := LoadHF("testdata/missing.json"); err == nil {
		t.Fatal("missing file: no error")
	}
	dir := t.TempDir()
	for name, body := range map[string]string{
		"notjson.json":  "{",
		"nomodel.json":  `{"model": {"type": "Nonesuch"}}`,
		"badvocab.json": `{"model": {"type": "WordLevel", "vocab": 3}}`,
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		_, err := LoadHF(p)
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: err %v, want one naming the file", name, err)
		}
	}
	h, _ := LoadHF(bpeFile)
	if _, err := h.Encode([]byte("a\xffb")); err == nil {
		t.Fatal("invalid UTF-8: no error")
	}
	spec := h.Spec()
	spec.File, _ = filepath.Abs(bpeFile)
	if _, err := FromSpec(spec, ""); err != nil {
		t.Fatal(err)
	}
	spec.SHA256 = strings.Repeat("0", 64)
	if _, err := FromSpec(spec, ""); err == nil {
		t.Fatal("hash mismatch: no error")
	}
}

func TestSplitText(t *testing.T) {
	text := []byte("aa\n bb\ncc\n\ndd\nee")
	got := SplitText(text, 2)
	if !bytes.Equal(bytes.Join(got, nil), text) {
		t.Fatal("pieces do not join to the text")
	}
	for _, p := range got[:len(got)-1] {
		if p[len(p)-1] != '\n' {
			t.Fatalf("piece %q does not end at a newline", p)
		}
	}
	if want := []string{"aa\n bb\n", "cc\n\n", "dd\n", "ee"}; fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Fatalf("pieces %q, want %q", got, want)
	}
}

// BenchmarkHFEncode measures the tokenizer.json path single-threaded and in parallel.
func BenchmarkHFEncode(b *testing.B) {
	h, err := LoadHF(bpeFile)
	if err != nil {
		b.Fatal(err)
	}
	text := sampleText(1 << 20)
	for _, w := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				if _, err := h.EncodeWorkers(text, w); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A BPE tokenizer.json without a pre-tokenizer sees its input as one word, which BPE
// merges in time quadratic in its length: such text is encoded a line at a time (long
// lines in pieces), the same for a whole text and for its lines one by one, and the Spec
// records it.
func TestHFWithoutPreTokenizerEncodesInPieces(t *testing.T) {
	var j map[string]any
	if err := json.Unmarshal(mustReadTestdata(t, "testdata/bytelevel-bpe.json"), &j); err != nil {
		t.Fatal(err)
	}
	j["pre_tokenizer"] = nil
	vocab := j["model"].(map[string]any)["vocab"].(map[string]any)
	vocab[" "], vocab["\n"] = float64(len(vocab)), float64(len(vocab)+1)
	b, _ := json.Marshal(j)
	path := filepath.Join(t.TempDir(), "nopre.json")
	os.WriteFile(path, b, 0o644)
	h, err := LoadHF(path)
	if err != nil {
		t.Fatal(err)
	}
	if h.Pieces() != MaxPiece || h.Spec().Pieces != MaxPiece {
		t.Fatalf("pieces %d, spec %d: want %d", h.Pieces(), h.Spec().Pieces, MaxPiece)
	}
	line := "the quick brown fox jumps over the lazy dog\n"
	long := strings.Repeat("abcdefgh ", 300) + "\n" // 2,700 bytes: cut in pieces
	text := strings.Repeat(line, 200) + long
	all, err := h.EncodeWorkers([]byte(text), 1)
	if err != nil {
		t.Fatal(err)
	}
	var want []uint32
	for _, p := range splitPieces([]byte(text), MaxPiece) {
		if len(p) > MaxPiece {
			t.Fatalf("a piece of %d bytes", len(p))
		}
		ids, err := h.EncodeWorkers(p, 1)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, ids...)
	}
	if !slices.Equal(all, want) {
		t.Fatalf("the whole text and its pieces give other ids (%d vs %d)", len(all), len(want))
	}
	if got := splitPieces([]byte(long), MaxPiece); len(got) != 3 || !strings.HasSuffix(string(got[0]), " ") {
		t.Fatalf("a 2,700-byte line cut into %d pieces", len(got))
	}
	// With a pre-tokenizer, nothing changes.
	hb, err := LoadHF("testdata/bytelevel-bpe.json")
	if err != nil || hb.Pieces() != 0 || hb.Spec().Pieces != 0 {
		t.Fatalf("byte-level BPE: pieces %d, %v", hb.Pieces(), err)
	}
}

func mustReadTestdata(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
