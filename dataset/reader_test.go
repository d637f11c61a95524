package dataset

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// byteDataset writes a byte-vocabulary dataset of text and returns its folder.
func byteDataset(t testing.TB, text []byte, opts ...Option) string {
	t.Helper()
	dir := t.TempDir()
	in := writeFile(t, dir, "a.txt", text)
	out := filepath.Join(dir, "ds")
	mustPrep(t, out, []string{in}, append([]Option{WithVocab("byte")}, opts...)...)
	return out
}

func TestReaderRandomAccess(t *testing.T) {
	text := corpus(100000, 10)
	out := byteDataset(t, text, WithShardTokens(1000), WithSplit(1, 0, 0))
	r, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	n, err := r.SplitLen("train")
	if err != nil || n != int64(len(text)) {
		t.Fatalf("SplitLen %d, %v", n, err)
	}
	for _, c := range []struct{ off, n int64 }{{0, 10}, {995, 10}, {1000, 1}, {2500, 3000}, {n - 5, 5}} {
		dst := make([]uint32, c.n)
		got, err := r.ReadAt("train", c.off, dst)
		if err != nil || int64(got) != c.n {
			t.Fatalf("ReadAt(%d, %d): %d, %v", c.off, c.n, got, err)
		}
		for i, id := range dst {
			if byte(id) != text[c.off+int64(i)] {
				t.Fatalf("ReadAt(%d): token %d is %d, want %d", c.off, i, id, text[c.off+int64(i)])
			}
		}
	}
	dst := make([]uint32, 10)
	if got, err := r.ReadAt("train", n-4, dst); got != 4 || !errors.Is(err, io.EOF) {
		t.Fatalf("ReadAt past the end: %d, %v", got, err)
	}
	all, err := r.Tokens("train")
	if err != nil || len(all) != len(text) {
		t.Fatalf("Tokens: %d, %v", len(all), err)
	}
	for i, id := range all {
		if byte(id) != text[i] {
			t.Fatalf("Tokens: token %d", i)
		}
	}
	// Iteration stops when asked to.
	shards := 0
	for ids, err := range r.All("train") {
		if err != nil || len(ids) == 0 {
			t.Fatal(err)
		}
		if shards++; shards == 3 {
			break
		}
	}
	if _, err := r.Tokens("nosuch"); err == nil || !strings.Contains(err.Error(), `no split "nosuch"`) {
		t.Fatalf("unknown split: %v", err)
	}
}

func TestReaderCorruptShard(t *testing.T) {
	out := byteDataset(t, corpus(50000, 11), WithShardTokens(10000))
	p := filepath.Join(out, "train-00001.xsh")
	data, _ := os.ReadFile(p)
	data[len(data)/2] ^= 0xff
	os.WriteFile(p, data, 0o644)
	r, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Tokens("train"); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("corrupt shard: %v", err)
	}
	// A valid shard in the wrong place fails its checksum.
	a, _ := os.ReadFile(filepath.Join(out, "train-00002.xsh"))
	os.WriteFile(p, a, 0o644)
	r, _ = Open(out)
	dst := make([]uint32, 5)
	_, err = r.ReadAt("train", 10000, dst)
	if err == nil || !strings.Contains(err.Error(), p+": checksum mismatch") {
		t.Fatalf("swapped shard: %v", err)
	}
	if _, err := r.ReadAt("train", 0, dst); err != nil {
		t.Fatalf("an intact shard: %v", err)
	}
	os.Remove(p)
	if _, err := r.Shard("train", 1); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("missing shard: %v", err)
	}
}

func TestOpenManifestVersions(t *testing.T) {
	out := byteDataset(t, corpus(5000, 12))
	path := filepath.Join(out, ManifestName)
	orig, _ := os.ReadFile(path)
	edit := func(old, new string) {
		t.Helper()
		if !strings.Contains(string(orig), old) {
			t.Fatalf("manifest lacks %q", old)
		}
		os.WriteFile(path, []byte(strings.Replace(string(orig), old, new, 1)), 0o644)
	}
	edit(`"version": 1,`, `"version": 2,`)
	if _, err := Open(out); err == nil || !strings.Contains(err.Error(), path+": manifest version 2 is not supported") {
		t.Fatalf("version 2: %v", err)
	}
	edit(`"version": 1,`, `"version": 1, "requires": ["scored-mask"],`)
	if _, err := Open(out); err == nil || !strings.Contains(err.Error(), "scored-mask") {
		t.Fatalf("unknown required feature: %v", err)
	}
	// An optional field this version does not know is ignored.
	edit(`"version": 1,`, `"version": 1, "comment": {"note": "made by a later xspan"},`)
	if _, err := Open(out); err != nil {
		t.Fatalf("unknown optional field: %v", err)
	}
	edit(`"format": "xspan-dataset"`, `"format": "something-else"`)
	if _, err := Open(out); err == nil || !strings.Contains(err.Error(), "not an xspan dataset") {
		t.Fatalf("wrong format: %v", err)
	}
	os.WriteFile(path, orig[:len(orig)/2], 0o644)
	if _, err := Open(out); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("truncated manifest: %v", err)
	}
	os.Remove(path)
	if _, err := Open(out); err == nil || !strings.Contains(err.Error(), "not a dataset folder") {
		t.Fatalf("no manifest: %v", err)
	}
}

func TestShardWidths(t *testing.T) {
	for _, w := range []int{1, 2, 4} {
		ids := []uint32{0, 1, 255}
		if w > 1 {
			ids = append(ids, 256, 65535)
		}
		if w > 2 {
			ids = append(ids, 65536, 1<<31)
		}
		packed := pack(nil, ids, w)
		enc := newTestEncoder(t)
		file := appendShard(nil, enc, packed, w)
		gw, got, err := decodeShard(file, int64(len(ids)), nil)
		if err != nil || gw != w {
			t.Fatalf("width %d: %v", w, err)
		}
		back := make([]uint32, len(ids))
		unpack(back, got, w)
		if !slices.Equal(back, ids) {
			t.Fatalf("width %d: %v, want %v", w, back, ids)
		}
		if _, _, err := decodeShard(file, int64(len(ids))-1, nil); err == nil {
			t.Fatalf("width %d: more tokens than allowed: no error", w)
		}
	}
}

// A missing folder or shard is reported plainly and still answers errors.Is.
func TestNotExistWraps(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "no such file or folder") {
		t.Fatalf("Open of a missing folder: %v", err)
	}
}
