package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"xspan/dataset"
)

func TestCLIPrepSyntheticCopy(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "copy")
	args := []string{"prep", "--synthetic", "copy", "--out", out, "--seq-len", "5", "--gap", "7",
		"--alphabet", "6", "--examples", "30", "--eval-examples", "4", "--seed", "11", "--shard-tokens", "100"}
	code, stdout, stderr := run(t, args...)
	if code != 0 {
		t.Fatalf("prep: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "wrote "+out) || !strings.Contains(stdout, "examples of 19 tokens (copy at offset 14)") {
		t.Errorf("prep output: %q", stdout)
	}
	r, err := dataset.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	m := r.Manifest()
	if !r.HasMask() || m.Task == nil || m.Task.Seed != 11 || m.Task.EvalExamples != 4 {
		t.Fatalf("manifest: mask %v, task %+v", r.HasMask(), m.Task)
	}
	for _, c := range []struct {
		split    string
		examples int
	}{{"train", 30}, {"valid", 4}, {"test", 4}} {
		code, text, stderr := run(t, "cat", out, "--split", c.split)
		if code != 0 {
			t.Fatalf("cat %s: exit %d: %s", c.split, code, stderr)
		}
		if len(text) != 19*c.examples {
			t.Fatalf("cat %s: %d characters, want %d", c.split, len(text), 19*c.examples)
		}
		for k := range c.examples {
			ex := text[19*k : 19*(k+1)]
			if want := ex[:5] + "<......." + ">" + ex[:5]; ex != want || strings.Trim(ex[:5], "abcdef") != "" {
				t.Fatalf("cat %s: example %d is %q", c.split, k, ex)
			}
		}
	}
	code, stdout, stderr = run(t, "inspect", out, "--sample", "38")
	if code != 0 || !strings.Contains(stdout, "input:       synthetic") || !strings.Contains(stdout, "<.......>") {
		t.Errorf("inspect: exit %d: %q %q", code, stdout, stderr)
	}
	// The same flags make the same dataset.
	again := filepath.Join(dir, "again")
	args[4] = again
	if code, _, stderr := run(t, args...); code != 0 {
		t.Fatalf("prep again: %s", stderr)
	}
	for _, name := range []string{"manifest.json", "train-00000.xsh", "train-00005.xsm", "test-00000.xsm"} {
		a, err1 := os.ReadFile(filepath.Join(out, name))
		b, err2 := os.ReadFile(filepath.Join(again, name))
		if err1 != nil || err2 != nil || string(a) != string(b) {
			t.Errorf("%s: differs between two runs with the same seed (%v, %v)", name, err1, err2)
		}
	}
}

func TestCLIPrepSyntheticErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := filepath.Join(dir, "copy")
	if code, _, stderr := run(t, "prep", "--synthetic", "copy", "--out", out, "--examples", "3", "--gap", "2"); code != 0 {
		t.Fatalf("prep: %s", stderr)
	}
	in := filepath.Join(dir, "corpus.txt")
	os.WriteFile(in, []byte("some text\n"), 0o644)
	x := filepath.Join(dir, "x")
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--seq-len", "0"}, 2, "seq-len 0: want 1 to"},
		{[]string{"--seq-len", "-3"}, 2, "seq-len -3"},
		{[]string{"--gap", "-1"}, 2, "gap -1: want 0 to"},
		{[]string{"--alphabet", "63"}, 2, "alphabet 63: want 2 to 62"},
		{[]string{"--alphabet", "1"}, 2, "alphabet 1: want 2 to 62"},
		{[]string{"--examples", "0"}, 2, "examples 0: want at least 1"},
		{[]string{"--eval-examples", "-1"}, 2, "eval-examples -1"},
		{[]string{"--examples", "1000000000", "--gap", "1000000"}, 2, "more than"},
		{[]string{"--seq-len", "x"}, 2, `invalid value "x" for flag -seq-len`},
		{[]string{"--input", in}, 2, "--input does not apply to --synthetic copy"},
		{[]string{"--vocab", "byte"}, 2, "--vocab does not apply"},
		{[]string{"--split", "1,0,0"}, 2, "--split does not apply"},
		{[]string{in}, 2, "--synthetic copy takes no input"},
		{[]string{"--level", "99"}, 2, "--level"},
		{[]string{"--shard-tokens", "0"}, 2, "shard tokens 0"},
	}
	for _, c := range cases {
		args := append([]string{"prep", "--synthetic", "copy", "--out", x}, c.args...)
		code, stdout, stderr := run(t, args...)
		if code != c.code || !strings.Contains(stderr, c.want) || stdout != "" {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr, c.code, c.want)
		}
		if strings.Contains(c.want, "invalid value") {
			continue // the flag package prints the usage too
		}
		if first := strings.SplitN(stderr, "\n", 2)[0]; !strings.HasPrefix(first, "xspan prep: ") || !strings.Contains(first, c.want) {
			t.Errorf("%v: first line %q does not say %q", c.args, first, c.want)
		}
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"prep", "--synthetic", "parity", "--out", x}, 2, `--synthetic "parity": want copy`},
		{[]string{"prep", "--synthetic", "copy"}, 2, "--out is required"},
		{[]string{"prep", "--input", in, "--out", x, "--gap", "5"}, 2, "--gap needs --synthetic copy"},
		{[]string{"prep", "--synthetic", "copy", "--out", out}, 1, "xspan prep: " + out + ": already exists (use --force"},
	} {
		code, _, stderr := run(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr, c.code, c.want)
		}
	}
	// Nothing half-written: only the one dataset and the input are left.
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("left behind in %s: %v", dir, names)
	}
	if code, _, stderr := run(t, "prep", "--synthetic", "copy", "--out", out, "--examples", "3", "--force"); code != 0 {
		t.Errorf("--force: exit %d: %s", code, stderr)
	}
}
