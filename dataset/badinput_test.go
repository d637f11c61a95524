package dataset

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func zipOf(t *testing.T, members map[string][]byte) []byte {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for name, data := range members {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	zw.Close()
	return b.Bytes()
}

// TestPrepBadInput checks that each bad input fails with an error naming the file and
// the problem, and leaves nothing behind.
func TestPrepBadInput(t *testing.T) {
	text := corpus(5000, 7)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(text)
	zw.Close()
	enc, _ := zstd.NewWriter(nil)
	zst := enc.EncodeAll(text, nil)
	corruptZst := bytes.Clone(zst)
	for i := 20; i < len(corruptZst)-10; i += 7 {
		corruptZst[i] ^= 0x5a
	}
	goodZip := zipOf(t, map[string][]byte{"enwik8": text})
	badZip := bytes.Clone(goodZip)
	copy(badZip[30:], "garbage garbage garbage") // inside the member's data

	cases := []struct {
		name  string
		file  string // file name to create ("" for none)
		data  []byte
		opts  []Option
		input string // input path if not the file
		want  string // in the error, besides the file name
	}{
		{name: "missing file", input: "nosuch.txt", want: "no such file"},
		{name: "missing glob", input: "nosuch-*.txt", want: "matches no file"},
		{name: "empty input", file: "empty.txt", data: nil, want: "empty input"},
		{name: "empty split", file: "tiny.txt", data: []byte("ab"), want: "split valid is empty"},
		{name: "non-UTF-8 char", file: "latin1.txt", data: []byte("caf\xe9 au lait"), want: "invalid UTF-8 at byte offset 3"},
		{name: "truncated gzip", file: "a.txt.gz", data: gz.Bytes()[:gz.Len()/2], want: "truncated or corrupt gzip"},
		{name: "corrupt gzip header", file: "b.gz", data: []byte{0x1f, 0x8b, 0, 0}, want: "gzip"},
		{name: "truncated zstd", file: "a.zst", data: zst[:len(zst)/2], want: "truncated or corrupt zstd"},
		{name: "corrupt zstd", file: "b.zst", data: corruptZst, want: "zstd"},
		{name: "truncated zip", file: "enwik8.zip", data: goodZip[:len(goodZip)/2], want: "truncated or corrupt zip"},
		{name: "corrupt zip", file: "enwik8.zip", data: badZip, want: "corrupt"},
		{name: "zip without member", file: "enwik8.zip", data: zipOf(t, map[string][]byte{"other.txt": text}), want: "no member named enwik8"},
		{name: "enwik8 of the wrong size", file: "enwik8", data: text, want: "enwik8 must be 100000000 bytes, this is 5000"},
		{name: "zip as text", file: "c.zip", data: goodZip, want: "zip archive"},
		{name: "missing tokenizer", file: "d.txt", data: text, opts: []Option{WithVocab("nosuch.json")}, want: "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, c.input)
			if c.file != "" {
				in = writeFile(t, dir, c.file, c.data)
			}
			out := filepath.Join(dir, "ds")
			_, err := Prep(context.Background(), out, []string{in}, c.opts...)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			t.Log(msg)
			named := strings.Contains(msg, in) || (c.opts != nil && strings.Contains(msg, "nosuch.json"))
			if !named || !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line naming %s and saying %q", msg, in, c.want)
			}
			if left := leftovers(t, dir, filepath.Base(in)); len(left) > 0 && c.file != "" {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

func TestPrepOutputExists(t *testing.T) {
	dir := t.TempDir()
	in := writeFile(t, dir, "a.txt", corpus(5000, 8))
	out := filepath.Join(dir, "ds")
	first, _ := mustPrep(t, out, []string{in})
	_, err := Prep(context.Background(), out, []string{in}, WithVocab("byte"))
	if err == nil || !strings.Contains(err.Error(), out+": already exists (use --force") {
		t.Fatalf("err %v", err)
	}
	if r, err := Open(out); err != nil || r.Manifest().Vocab.Kind != first.Vocab.Kind {
		t.Fatalf("the existing dataset changed: %v", err)
	}
	// --force replaces a dataset folder ...
	m, _ := mustPrep(t, out, []string{in}, WithVocab("byte"), WithForce(true))
	if r, err := Open(out); err != nil || r.Manifest().Vocab.Kind != "byte" || m.Vocab.Kind != "byte" {
		t.Fatalf("after --force: %v", err)
	}
	if left := leftovers(t, dir, "a.txt", "ds"); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	// ... but not a folder that holds something else.
	other := filepath.Join(dir, "home")
	writeFile(t, other, "precious.txt", []byte("keep me"))
	_, err = Prep(context.Background(), other, []string{in}, WithForce(true))
	if err == nil || !strings.Contains(err.Error(), "not a dataset folder") {
		t.Fatalf("err %v", err)
	}
	if _, err := os.Stat(filepath.Join(other, "precious.txt")); err != nil {
		t.Fatal(err)
	}
}

func TestPrepCancelled(t *testing.T) {
	dir := t.TempDir()
	in := writeFile(t, dir, "a.txt", corpus(50000, 9))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Prep(ctx, filepath.Join(dir, "ds"), []string{in}, WithShardTokens(1000))
	if err == nil {
		t.Fatal("no error")
	}
	if left := leftovers(t, dir, "a.txt"); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// The temporary folders that killed preps left beside out (nobody holds their lock) go
// at the next prep to out; one whose writer still runs (holds its lock) stays; a dataset
// that a killed install had moved aside comes back.
func TestPrepRemovesWhatKilledPrepsLeft(t *testing.T) {
	dir := t.TempDir()
	in := writeFile(t, dir, "a.txt", []byte(strings.Repeat("some text\n", 500)))
	out := filepath.Join(dir, "ds")
	for i := 0; i < 3; i++ {
		writeFile(t, filepath.Join(dir, fmt.Sprintf(".ds.tmp-dead%d", i)), "train-00000.xsh", make([]byte, 1000))
	}
	live := filepath.Join(dir, ".ds.tmp-live")
	writeFile(t, live, "train-00000.xsh", []byte("busy"))
	d, err := os.Open(live)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, ".other.tmp-dead"), "x", []byte("another dataset's"))
	mustPrep(t, out, []string{in})
	if left := leftovers(t, dir, "a.txt", "ds", ".ds.tmp-live", ".other.tmp-dead"); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	for _, keep := range []string{live, filepath.Join(dir, ".other.tmp-dead")} {
		if _, err := os.Stat(keep); err != nil {
			t.Errorf("%s: %v", keep, err)
		}
	}
	// Killed between the two renames of an install with --force.
	os.Rename(out, filepath.Join(dir, ".ds.tmp-x.old"))
	if _, err := Prep(context.Background(), out, []string{in}, WithVocab("byte")); err == nil {
		t.Fatal("prep over the restored dataset without --force: no error")
	}
	if r, err := Open(out); err != nil || r.Manifest().Vocab.Kind == "byte" {
		t.Fatalf("the dataset moved aside by a killed install was not put back: %v", err)
	}
}
