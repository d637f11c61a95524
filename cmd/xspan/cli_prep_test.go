package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run calls runMain with an empty standard input and stdout and stderr captured; tests
// may call it side by side.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runWith(t, strings.NewReader(""), args...)
}

// runWith is run with stdin as standard input.
func runWith(t *testing.T, stdin io.Reader, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = runMain(&env{stdin: stdin, stdout: &o, stderr: &e}, args)
	return code, o.String(), e.String()
}

func testText() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 60000; i++ {
		b.WriteString("Expire-Span forgets what it does not need — ça marche, line ")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString("\n")
	}
	b.WriteString("Ω in test\n")
	return b.Bytes()
}

func TestCLIPrepInspectCat(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	text := testText()
	in := filepath.Join(dir, "corpus.txt")
	os.WriteFile(in, text, 0o644)

	for _, vocab := range []string{"byte", "char"} {
		out := filepath.Join(dir, "ds-"+vocab)
		code, stdout, stderr := run(t, "prep", "--input", in, "--out", out, "--vocab", vocab, "--shard-tokens", "5000", "--level", "fastest")
		if code != 0 {
			t.Fatalf("prep: exit %d: %s", code, stderr)
		}
		if !strings.Contains(stdout, "wrote "+out) || !strings.Contains(stderr, "format: text") {
			t.Errorf("prep output: %q / %q", stdout, stderr)
		}
		code, stdout, stderr = run(t, "inspect", out)
		if code != 0 {
			t.Fatalf("inspect: exit %d: %s", code, stderr)
		}
		for _, want := range []string{"vocabulary:  " + vocab, "train", "valid", "test", "ratio", "sample: the first 300 tokens of valid"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("inspect output lacks %q:\n%s", want, stdout)
			}
		}
		var back []byte
		for _, split := range []string{"train", "valid", "test"} {
			code, stdout, stderr = run(t, "cat", out, "--split", split)
			if code != 0 {
				t.Fatalf("cat %s: exit %d: %s", split, code, stderr)
			}
			back = append(back, stdout...)
		}
		want := text
		if vocab == "char" {
			want = bytes.Replace(text, []byte("Ω"), []byte("\ufffd"), 1)
		}
		if !bytes.Equal(back, want) {
			t.Errorf("%s: cat of the three splits differs from the input", vocab)
		}
	}
}

func TestCLIErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := filepath.Join(dir, "corpus.txt")
	os.WriteFile(in, testText(), 0o644)
	out := filepath.Join(dir, "ds")
	if code, _, stderr := run(t, "prep", "--input", in, "--out", out); code != 0 {
		t.Fatalf("prep: %s", stderr)
	}
	shard := filepath.Join(out, "train-00000.xsh")
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"prep", "--input", in}, 2, "--out is required"},
		{[]string{"prep", "--nosuch"}, 2, "flag provided but not defined"},
		{[]string{"prep", "--input", in, "--out", out, "--split", "0.5,0.5"}, 2, "--split"},
		{[]string{"prep", "--input", in, "--out", out, "--newlines", "maybe"}, 2, "newlines"},
		{[]string{"prep", "--input", in, "--out", out, "--level", "11000"}, 2, "--level"},
		{[]string{"prep", "--input", filepath.Join(dir, "nosuch.txt"), "--out", filepath.Join(dir, "x")}, 1, "xspan prep: " + filepath.Join(dir, "nosuch.txt") + ": no such file"},
		{[]string{"prep", "--input", in, "--out", out}, 1, "xspan prep: " + out + ": already exists (use --force"},
		{[]string{"cat", out}, 2, "--split is required"},
		{[]string{"cat", out, "--split", "nosuch"}, 1, `no split "nosuch"`},
		{[]string{"inspect", filepath.Join(dir, "nosuch")}, 1, "no such file"},
	}
	for _, c := range cases {
		code, _, stderr := run(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr, c.code, c.want)
		}
		if c.code == 1 && strings.Count(strings.TrimSpace(stderr), "\n") > 3 {
			t.Errorf("%v: more than a short message: %q", c.args, stderr)
		}
	}
	// A corrupt shard: cat fails naming the shard.
	data, _ := os.ReadFile(shard)
	data[len(data)-5] ^= 0xff
	os.WriteFile(shard, data, 0o644)
	code, stdout, stderr := run(t, "cat", out, "--split", "train")
	if code != 1 || !strings.Contains(stderr, shard) || stdout != "" {
		t.Errorf("corrupt shard: exit %d, stderr %q, %d bytes out", code, stderr, len(stdout))
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("left behind in %s: %d entries", dir, len(entries))
	}
}
