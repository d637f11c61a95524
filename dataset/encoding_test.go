package dataset

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestToUTF8(t *testing.T) {
	for _, c := range []struct {
		in, enc, policy, want string
		changed               int64
	}{
		{"caf\xe9", EncodingLatin1, InvalidError, "café", 0},
		{"\x93quoted\x94 \x80", EncodingCP1252, InvalidError, "\u201cquoted\u201d €", 0},
		{"ok \xff\xfe done é", EncodingUTF8, InvalidReplace, "ok \uFFFD\uFFFD done é", 2},
		{"ok \xff done", EncodingUTF8, InvalidSkip, "ok  done", 1},
		{"valid é", EncodingUTF8, InvalidSkip, "valid é", 0},
		{"raw \xff", EncodingUTF8, InvalidError, "raw \xff", 0}, // left for the caller's check
	} {
		got, n, err := toUTF8([]byte(c.in), c.enc, c.policy)
		if err != nil || string(got) != c.want || n != c.changed {
			t.Errorf("toUTF8(%q, %s, %s) = %q, %d, %v; want %q, %d", c.in, c.enc, c.policy, got, n, err, c.want, c.changed)
		}
	}
}

// A dictionary with a stray CP1252 byte: refused by default with a message that names the
// way out, read with --encoding cp1252, or mended with --invalid replace (counted).
func TestPrepNonUTF8Text(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "dict.txt")
	text := strings.Repeat("word: a meaning. ", 200) + "na\xefve \x93caf\xe9\x94\n"
	if err := os.WriteFile(in, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Prep(context.Background(), filepath.Join(dir, "a"), []string{in}, WithVocab("char"))
	if err == nil || !strings.Contains(err.Error(), "dict.txt: invalid UTF-8 at byte offset") || !strings.Contains(err.Error(), "--encoding") {
		t.Fatalf("default: err = %v", err)
	}
	m, err := Prep(context.Background(), filepath.Join(dir, "b"), []string{in}, WithVocab("char"), WithEncoding("cp1252"), WithSplit(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if m.Encoding != EncodingCP1252 || m.Splits[0].Chars != int64(len([]rune(strings.Repeat("word: a meaning. ", 200)+"naïve “café”\n"))) {
		t.Fatalf("cp1252: encoding %q, %d chars", m.Encoding, m.Splits[0].Chars)
	}
	m, err = Prep(context.Background(), filepath.Join(dir, "c"), []string{in}, WithVocab("char"), WithInvalid("replace"), WithSplit(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if m.Invalid != InvalidReplace || m.InvalidCount != 4 {
		t.Fatalf("replace: manifest says %q, %d sequences; want replace, 4", m.Invalid, m.InvalidCount)
	}
	r, err := Open(filepath.Join(dir, "c"))
	if err != nil {
		t.Fatalf("the manifest with the new fields does not read back: %v", err)
	}
	if r.Manifest().InvalidCount != 4 {
		t.Fatalf("read back: %d", r.Manifest().InvalidCount)
	}
	if err := CheckOptions(WithEncoding("ebcdic")); err == nil {
		t.Errorf("encoding ebcdic accepted")
	}
}
