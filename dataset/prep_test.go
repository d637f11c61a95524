package dataset

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"
)

// corpus returns n bytes of varied UTF-8 text, deterministic in seed.
func corpus(n int, seed uint64) []byte {
	words := []string{"the", "cat", "sat", "on", "mat", "Expire-Span", "ça", "über", "日本語", "naïve", "—", "λ", "\n", "\n\n", "a", "of", "42", "x\ty"}
	rng := rand.New(rand.NewPCG(seed, 1))
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteByte(' ')
	}
	out := b.Bytes()[:n]
	for !utf8.Valid(out) {
		out = out[:len(out)-1]
	}
	return out
}

// withUnk replaces the characters of text that are not in train with U+FFFD.
func withUnk(text, train []byte) ([]byte, int) {
	seen := map[rune]bool{}
	for _, r := range string(train) {
		seen[r] = true
	}
	var out []byte
	n := 0
	for _, r := range string(text) {
		if !seen[r] {
			r = utf8.RuneError
			n++
		}
		out = utf8.AppendRune(out, r)
	}
	return out, n
}

func TestPrepTextCharRoundTrip(t *testing.T) {
	dir := t.TempDir()
	parts := [][]byte{corpus(30000, 1), []byte("rare ✓ only here; "), corpus(20000, 2), []byte("and Ω, ✓ and 🙂 at the end\n")}
	var paths []string
	for i, p := range parts {
		paths = append(paths, writeFile(t, dir, fmt.Sprintf("in/%d.txt", i), p))
	}
	all := bytes.Join(parts, nil)
	out := filepath.Join(dir, "ds")
	m, log := mustPrep(t, out, paths, WithShardTokens(4096))
	for _, want := range []string{"format: text", "vocabulary: char (the default for text"} {
		if !strings.Contains(log, want) {
			t.Errorf("log %q lacks %q", log, want)
		}
	}
	if m.Vocab.Kind != "char" || m.TokenWidth != 1 || len(m.Splits) != 3 {
		t.Fatalf("manifest %+v", m)
	}
	r, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	var off int64
	train := all[:m.Splits[0].Source.Bytes]
	for _, s := range m.Splits {
		src := all[off : off+s.Source.Bytes]
		off += s.Source.Bytes
		want, unk := withUnk(src, train)
		if got := decodeSplit(t, r, s.Name); !bytes.Equal(got, want) {
			t.Errorf("split %s: decoded text differs from the source with <unk> substitutions", s.Name)
		}
		if s.Unk != int64(unk) || s.Tokens != int64(utf8.RuneCount(src)) || s.Chars != s.Tokens || s.Bytes != int64(len(src)) {
			t.Errorf("split %s: unk %d tokens %d chars %d bytes %d; want unk %d, %d characters, %d bytes",
				s.Name, s.Unk, s.Tokens, s.Chars, s.Bytes, unk, utf8.RuneCount(src), len(src))
		}
		if s.Source.Checksum != fmt.Sprintf("xxh64:%016x", xxhash.Sum64(src)) {
			t.Errorf("split %s: source checksum %s", s.Name, s.Source.Checksum)
		}
		if s.Name != "train" && len(s.Shards) > 0 && s.Shards[0].Tokens > 4096 {
			t.Errorf("split %s: shard of %d tokens", s.Name, s.Shards[0].Tokens)
		}
	}
	if off != int64(len(all)) {
		t.Fatalf("splits cover %d of %d bytes", off, len(all))
	}
	if m.Splits[2].Unk == 0 {
		t.Fatal("test split has no <unk>: the test text is not testing it")
	}
	// Splits are contiguous and about 90/5/5.
	if f := float64(m.Splits[0].Source.Bytes) / float64(len(all)); f < 0.89 || f > 0.91 {
		t.Errorf("train holds %.3f of the text", f)
	}
	rs := m.Splits[1].Source.Ranges
	if len(rs) != 1 || rs[0].Path != paths[2] {
		t.Errorf("valid ranges %+v", rs)
	}
}

func TestPrepByteRoundTrip(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 100000)
	rng := rand.New(rand.NewPCG(3, 3))
	for i := range data {
		data[i] = byte(rng.IntN(256))
	}
	in := writeFile(t, dir, "blob.bin", data)
	out := filepath.Join(dir, "ds")
	m, _ := mustPrep(t, out, []string{in}, WithVocab("byte"), WithShardTokens(7000), WithSplit(0.5, 0.5, 0))
	if len(m.Splits) != 2 || m.Splits[0].Tokens+m.Splits[1].Tokens != int64(len(data)) {
		t.Fatalf("splits %+v", m.Splits)
	}
	r, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	got := append(decodeSplit(t, r, "train"), decodeSplit(t, r, "valid")...)
	if !bytes.Equal(got, data) {
		t.Fatal("byte vocabulary: decoded splits differ from the input")
	}
}

func TestPrepNewlinesDrop(t *testing.T) {
	dir := t.TempDir()
	text := corpus(20000, 4)
	in := writeFile(t, dir, "a.txt", text)
	out := filepath.Join(dir, "ds")
	m, _ := mustPrep(t, out, []string{in}, WithNewlines("drop"), WithVocab("byte"))
	if m.Newlines != "drop" {
		t.Fatalf("newlines %q", m.Newlines)
	}
	r, _ := Open(out)
	var got []byte
	var dropped int64
	for _, s := range m.Splits {
		got = append(got, decodeSplit(t, r, s.Name)...)
		dropped += s.DroppedNewlines
		if s.Bytes+s.DroppedNewlines != s.Source.Bytes {
			t.Errorf("split %s: %d bytes + %d newlines != %d source bytes", s.Name, s.Bytes, s.DroppedNewlines, s.Source.Bytes)
		}
	}
	want := bytes.ReplaceAll(text, []byte("\n"), nil)
	if !bytes.Equal(got, want) || dropped != int64(bytes.Count(text, []byte("\n"))) {
		t.Fatalf("got %d bytes (%d newlines dropped), want %d", len(got), dropped, len(want))
	}
}

func TestPrepCompressedInputs(t *testing.T) {
	dir := t.TempDir()
	text := corpus(50000, 5)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(text)
	zw.Close()
	enc, _ := zstd.NewWriter(nil)
	inputs := map[string][]byte{"plain.txt": text, "gz.txt": gz.Bytes(), "zst.data": enc.EncodeAll(text, nil)}
	var sums []string
	for _, name := range []string{"plain.txt", "gz.txt", "zst.data"} {
		in := writeFile(t, dir, name, inputs[name])
		m, _ := mustPrep(t, filepath.Join(dir, "ds-"+name), []string{in})
		var s []string
		for _, sp := range m.Splits {
			s = append(s, sp.Source.Checksum)
			for _, sh := range sp.Shards {
				s = append(s, sh.Checksum)
			}
		}
		sums = append(sums, strings.Join(s, ","))
	}
	if sums[0] != sums[1] || sums[0] != sums[2] {
		t.Fatalf("plain, gzip and zstd inputs give different datasets:\n%s", strings.Join(sums, "\n"))
	}
}

func TestPrepSplitFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "train/b.txt", []byte("bbbb\n"))
	writeFile(t, dir, "train/a.txt", []byte("aaaa\n"))
	writeFile(t, dir, "train/.hidden", []byte("never read"))
	v := writeFile(t, dir, "valid-1.txt", []byte("ab\n"))
	writeFile(t, dir, "valid-2.txt", []byte("ba!\n"))
	out := filepath.Join(dir, "ds")
	m, _ := mustPrep(t, out, nil, WithSplitFiles([]string{filepath.Join(dir, "train")}, []string{filepath.Join(dir, "valid-*.txt")}, nil))
	if len(m.Splits) != 2 {
		t.Fatalf("%d splits", len(m.Splits))
	}
	r, _ := Open(out)
	if got := string(decodeSplit(t, r, "train")); got != "aaaa\nbbbb\n" {
		t.Errorf("train %q", got)
	}
	if got := string(decodeSplit(t, r, "valid")); got != "ab\nba\ufffd\n" {
		t.Errorf("valid %q", got)
	}
	if m.Splits[1].Source.Ranges[0].Path != v || m.Splits[1].Unk != 1 {
		t.Errorf("valid %+v", m.Splits[1])
	}
	if _, err := r.SplitLen("test"); err == nil {
		t.Error("no test split, but SplitLen gives no error")
	}
}

func TestPrepHFTokenizer(t *testing.T) {
	dir := t.TempDir()
	text := corpus(20000, 6)
	in := writeFile(t, dir, "a.txt", text)
	out := filepath.Join(dir, "ds")
	m, _ := mustPrep(t, out, []string{in}, WithVocab("../tokenize/testdata/bytelevel-bpe.json"))
	if m.Vocab.Kind != "hf" || m.Vocab.File != "tokenizer.json" || len(m.Vocab.SHA256) != 64 {
		t.Fatalf("vocab %+v", m.Vocab)
	}
	r, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	var chars int64
	for _, s := range m.Splits {
		got = append(got, decodeSplit(t, r, s.Name)...)
		chars += s.Chars
		if s.Tokens >= s.Bytes {
			t.Errorf("split %s: %d tokens for %d bytes", s.Name, s.Tokens, s.Bytes)
		}
	}
	if !bytes.Equal(got, text) || chars != int64(utf8.RuneCount(text)) {
		t.Fatalf("byte-level BPE round trip: %d bytes back of %d; %d chars", len(got), len(text), chars)
	}
}

// TestPrepEnwik8 checks the standard split on a synthetic file of the real size: a
// sparse file of zeros with markers around the split offsets.
func TestPrepEnwik8(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MB file")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "enwik8")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(Enwik8Size); err != nil {
		t.Fatal(err)
	}
	marks := map[int64]byte{0: 'A', Enwik8Train - 1: 'B', Enwik8Train: 'C', Enwik8Train + Enwik8Valid - 1: 'D', Enwik8Train + Enwik8Valid: 'E', Enwik8Size - 1: '\n'}
	for off, b := range marks {
		f.WriteAt([]byte{b}, off)
	}
	f.Close()

	// The raw file and a zip of it give the same dataset.
	zpath := filepath.Join(dir, "zip", "enwik8.zip")
	os.Mkdir(filepath.Dir(zpath), 0o755)
	zf, _ := os.Create(zpath)
	zw := zip.NewWriter(zf)
	w, _ := zw.Create("enwik8")
	src, _ := os.Open(path)
	if _, err := io.Copy(w, src); err != nil {
		t.Fatal(err)
	}
	src.Close()
	zw.Close()
	zf.Close()

	for _, in := range []string{path, zpath} {
		out := filepath.Join(dir, "ds-"+filepath.Base(in))
		m, log := mustPrep(t, out, []string{in})
		if !strings.Contains(log, "format: enwik8") || !strings.Contains(log, "vocabulary: byte") {
			t.Errorf("%s: log %q", in, log)
		}
		want := []int64{Enwik8Train, Enwik8Valid, Enwik8Size - Enwik8Train - Enwik8Valid}
		r, err := Open(out)
		if err != nil {
			t.Fatal(err)
		}
		var base int64
		for i, s := range m.Splits {
			if s.Name != SplitNames[i] || s.Tokens != want[i] || s.Source.Bytes != want[i] {
				t.Fatalf("%s: split %s: %d tokens, want %d", in, s.Name, s.Tokens, want[i])
			}
			first, last := make([]uint32, 1), make([]uint32, 1)
			r.ReadAt(s.Name, 0, first)
			r.ReadAt(s.Name, s.Tokens-1, last)
			if byte(first[0]) != marks[base] || byte(last[0]) != marks[base+s.Tokens-1] {
				t.Errorf("%s: split %s: first/last tokens %q %q, want %q %q", in, s.Name, byte(first[0]), byte(last[0]), marks[base], marks[base+s.Tokens-1])
			}
			base += s.Tokens
		}
	}
}

// A tokenizer.json's prep says how far it got chunk by chunk (of 256 KB): it used to
// say nothing until a 4 MB piece was done, 77% of a 5.4 MB corpus.
func TestPrepHFProgress(t *testing.T) {
	dir := t.TempDir()
	// Lines that begin with a word: the tokenizer's chunks end at such line starts.
	text := bytes.ReplaceAll(corpus(600<<10, 7), []byte("\n "), []byte("\nx"))
	in := writeFile(t, dir, "a.txt", text)
	var first, total int64 // the first progress past 0, of the total
	progress := func(done, all int64) {
		if first == 0 && done > 0 {
			first, total = done, all
		}
	}
	mustPrep(t, filepath.Join(dir, "ds"), []string{in}, WithVocab("../tokenize/testdata/bytelevel-bpe.json"), WithProgress(progress))
	if first <= 0 || first > total/2 || total < int64(len(text))*8/10 {
		t.Errorf("%d bytes: first progress at %d of %d", len(text), first, total)
	}
}
