package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"xspan/checkpoint"
	"xspan/dataset"
)

// Out-of-range values are usage errors (exit 2, a message naming the value), caught
// before any work: the folders named need not exist.
func TestCLIBoundsAreUsageErrors(t *testing.T) {
	t.Parallel()
	train := []string{"train", "--data", "no-such-data", "--out", "no-such-run"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{append(train, "--threads", "100000"), "--threads 100000"},
		{append(train, "--threads", "-3"), "--threads -3"},
		{append(train, "--ckpt-every", "-1"), "ckpt_every = -1"},
		{append(train, "--eval-every", "-1"), "eval_every = -1"},
		{append(train, "--set", "seed=-1"), "seed = -1"},
		{append(train, "--set", "dropout=2"), "dropout = 2"},
		{append(train, "--set", "dropout=NaN"), "not a finite number"},
		{append(train, "--lr", "Inf"), "not a finite number"},
		{append(train, "--keep", "-1"), "--keep -1"},
		{append(train, "--log-every", "0"), "--log-every 0"},
		{[]string{"train", "--print-config", "--set", "alpha=-inf"}, "not a finite number"},
		{[]string{"bench", "train", "--threads", "100000"}, "--threads 100000"},
		{[]string{"eval", "--ckpt", "no-such-run", "--max-blocks", "-1"}, "--max-blocks -1"},
		{[]string{"eval", "--ckpt", "no-such-run", "--threads", "-3"}, "--threads -3"},
		{[]string{"inspect", "no-such-data", "--sample", "-5"}, "--sample -5"},
		{[]string{"report", "no-such-run", "--sample", "-5"}, "--sample -5"},
		{[]string{"generate", "--preset", "tiny", "--random", "--threads", "100000", "--prompt", "x"}, "--threads 100000"},
		{[]string{"serve", "--preset", "tiny", "--random", "--threads", "-1"}, "--threads -1"},
		{[]string{"bench", "copy", "--threads", "100000"}, "--threads 100000"},
		{[]string{"bench", "gen", "--tokens", "0"}, "--tokens 0"},
	} {
		code, stdout, stderr := run(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) || stdout != "" {
			t.Errorf("xspan %s: exit %d, %q; want exit 2 with %q", strings.Join(c.args, " "), code, stderr, c.want)
		}
	}
}

// A command whose output cannot be written fails (exit 1) and says so.
func TestCLIFullStdoutFails(t *testing.T) {
	t.Parallel()
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip("no /dev/full")
	}
	defer full.Close()
	dir := t.TempDir()
	in := filepath.Join(dir, "corpus.txt")
	os.WriteFile(in, testText(), 0o644)
	data := filepath.Join(dir, "ds")
	if code, _, stderr := run(t, "prep", "--input", in, "--out", data, "--vocab", "char"); code != 0 {
		t.Fatalf("prep: exit %d: %s", code, stderr)
	}
	for _, args := range [][]string{
		{"inspect", data},
		{"inspect", data, "--sample", "0"},
		{"cat", data, "--split", "valid"},
		{"train", "--print-config"},
		{"help"},
		{"train", "-h"},
	} {
		var stderr bytes.Buffer
		code := runMain(&env{stdin: strings.NewReader(""), stdout: full, stderr: &stderr}, args)
		if code != 1 || !strings.Contains(stderr.String(), "standard output") || !strings.Contains(stderr.String(), "no space left") {
			t.Errorf("xspan %s > /dev/full: exit %d, %q; want exit 1 with the write error", strings.Join(args, " "), code, stderr.String())
		}
	}
}

// buildXspan builds the binary into a temporary folder.
func buildXspan(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go toolchain to build the binary")
	}
	bin := filepath.Join(t.TempDir(), "xspan")
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// SIGINT, SIGTERM and SIGHUP stop training after the step under way with a checkpoint,
// and the exit status is the shell's for the signal: 130, 143, 129.
func TestCLITrainSignalsCheckpointAndExit(t *testing.T) {
	bin := buildXspan(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "corpus.txt")
	os.WriteFile(in, testText(), 0o644)
	data := filepath.Join(dir, "ds")
	if code, _, stderr := run(t, "prep", "--input", in, "--out", data, "--vocab", "char"); code != 0 {
		t.Fatalf("prep: exit %d: %s", code, stderr)
	}
	for _, c := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}, {syscall.SIGHUP, 129}} {
		runDir := filepath.Join(dir, "run-"+c.sig.String())
		args := append([]string{"train", "--data", data, "--out", runDir, "--steps", "100000"}, trainTinyArgs...)
		args = append(args, "--log-every", "1", "--eval-every", "0", "--ckpt-every", "0")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, bin, args...)
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait for the second step, then signal.
		var log strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "step 2/") {
				cmd.Process.Signal(c.sig)
				break
			}
		}
		io.Copy(&log, stderr)
		err := cmd.Wait()
		cancel()
		code := cmd.ProcessState.ExitCode()
		if code != c.code {
			t.Errorf("%v: exit %d (%v), want %d:\n%s", c.sig, code, err, c.code, log.String())
		}
		latest, err := checkpoint.Latest(runDir)
		if err != nil || latest == "" {
			t.Errorf("%v: no checkpoint in %s (%v):\n%s", c.sig, runDir, err, log.String())
		}
		if !strings.Contains(log.String(), "continue with --resume") {
			t.Errorf("%v: stderr does not say how to continue:\n%s", c.sig, log.String())
		}
	}
}

// Messages say what is wrong: how two vocabularies of one kind and size differ; that a
// file given as --ckpt is no pointer (not its first line as a path); that --dump names a
// folder, before any evaluation.
func TestCLIMessagesSayWhatDiffers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	prep := func(name string, text string) *dataset.Reader {
		in := filepath.Join(dir, name+".txt")
		os.WriteFile(in, []byte(strings.Repeat(text, 400)), 0o644)
		out := filepath.Join(dir, name)
		if code, _, stderr := run(t, "prep", "--input", in, "--out", out, "--vocab", "char"); code != 0 {
			t.Fatalf("prep: exit %d: %s", code, stderr)
		}
		r, err := dataset.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a := prep("a", "hello world, a line\n")
	b := prep("b", "hellö wörld, a line\n")
	va, _ := a.Vocab()
	vb, _ := b.Vocab()
	if va.Size() != vb.Size() {
		t.Fatalf("vocabularies of %d and %d ids", va.Size(), vb.Size())
	}
	ck := &checkpoint.Checkpoint{Path: "ck", Vocab: va}
	err := ck.CheckVocab(b)
	if err == nil || !strings.Contains(err.Error(), `extra 1 character "ö"`) || !strings.Contains(err.Error(), `missing 1 character "o"`) {
		t.Errorf("vocabulary mismatch: %v", err)
	}
	if err := ck.CheckVocab(a); err != nil {
		t.Errorf("the same vocabulary: %v", err)
	}

	notes := filepath.Join(dir, "notes.txt")
	os.WriteFile(notes, []byte("Hello world\nsecond line\n"), 0o644)
	code, _, stderr := run(t, "eval", "--ckpt", notes, "--device", "cpu")
	if code != 1 || !strings.Contains(stderr, notes+" is a file, but not a pointer file") || strings.Contains(stderr, "Hello world") {
		t.Errorf("--ckpt a text file: exit %d, %q", code, stderr)
	}
	run := filepath.Join(dir, "run")
	os.MkdirAll(filepath.Join(run, "checkpoints"), 0o755)
	os.WriteFile(filepath.Join(run, "best"), []byte("checkpoints/step-5\n"), 0o644)
	code, _, stderr = runWith(t, nil, "eval", "--ckpt", filepath.Join(run, "best"), "--device", "cpu")
	if code != 1 || !strings.Contains(stderr, "was it pruned?") {
		t.Errorf("--ckpt a pointer to a pruned checkpoint: exit %d, %q", code, stderr)
	}

	// The checkpoint does not exist, but the dump's path is checked first.
	code, _, stderr = runWith(t, nil, "eval", "--ckpt", filepath.Join(dir, "no-such-run"), "--dump", dir)
	if code != 2 || !strings.Contains(stderr, "--dump "+dir+" is a folder") {
		t.Errorf("--dump DIR: exit %d, %q", code, stderr)
	}
	code, _, stderr = runWith(t, nil, "eval", "--ckpt", filepath.Join(dir, "no-such-run"), "--dump", filepath.Join(dir, "no-such-folder", "d.jsonl"))
	if code != 1 || !strings.Contains(stderr, "--dump: ") || strings.Contains(stderr, "no-such-run") {
		t.Errorf("--dump in a missing folder: exit %d, %q", code, stderr)
	}
}
