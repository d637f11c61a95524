package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// genArgs are the flags of a quick generation from the random tiny model.
func genArgs(extra ...string) []string {
	return append([]string{"generate", "--preset", "tiny", "--random", "--device", "cpu", "--threads", "1", "--max-new-tokens", "60"}, extra...)
}

func mustRun(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	code, stdout, stderr := run(t, args...)
	if code != 0 {
		t.Fatalf("xspan %s: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
	return stdout, stderr
}

func TestCLIGenerateSameSeedSameText(t *testing.T) {
	a, errA := mustRun(t, genArgs("--prompt", "Hello there", "--seed", "5", "--top-k", "40", "--top-p", "0.9")...)
	b, _ := mustRun(t, genArgs("--prompt", "Hello there", "--seed", "5", "--top-k", "40", "--top-p", "0.9")...)
	c, _ := mustRun(t, genArgs("--prompt", "Hello there", "--seed", "6", "--top-k", "40", "--top-p", "0.9")...)
	if a == "" || a != b {
		t.Errorf("seed 5 twice: %q vs %q", a, b)
	}
	if a == c {
		t.Errorf("seeds 5 and 6 gave the same text %q", a)
	}
	if !strings.Contains(errA, "random weights") || strings.Contains(errA, "seed:") {
		t.Errorf("stderr %q", errA)
	}
	// The prompt from a file or standard input is the same prompt.
	dir := t.TempDir()
	pf := filepath.Join(dir, "prompt.txt")
	os.WriteFile(pf, []byte("Hello there"), 0o644)
	d, _ := mustRun(t, genArgs("--prompt-file", pf, "--seed", "5", "--top-k", "40", "--top-p", "0.9")...)
	code, e, stderr := runWith(t, strings.NewReader("Hello there"), genArgs("--seed", "5", "--top-k", "40", "--top-p", "0.9")...)
	if code != 0 {
		t.Fatalf("prompt from stdin: exit %d: %s", code, stderr)
	}
	if d != a || e != a {
		t.Errorf("prompt from a file %q or stdin %q differs from --prompt %q", d, e, a)
	}
	// --echo prints the prompt first.
	f, _ := mustRun(t, genArgs("--prompt", "Hello there", "--seed", "5", "--top-k", "40", "--top-p", "0.9", "--echo")...)
	if f != "Hello there"+a {
		t.Errorf("--echo: %q", f)
	}
}

func TestCLIGenerateGreedyPruningStats(t *testing.T) {
	on, stderr := mustRun(t, genArgs("--prompt", "abc", "--temperature", "0", "--max-new-tokens", "300", "--stats", "--stats-every", "100")...)
	off, _ := mustRun(t, genArgs("--prompt", "abc", "--temperature", "0", "--max-new-tokens", "300", "--no-prune")...)
	if on != off {
		t.Errorf("greedy text changes with pruning off")
	}
	for _, want := range []string{"seed: ", "stats: 100 tokens", "stats: 200 tokens", "stats (end): 300 tokens", "tok/s", "live memories [", "dropped ", "rss "} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "stats: 300 tokens") {
		t.Errorf("the last snapshot is printed twice:\n%s", stderr)
	}
	out, _ := mustRun(t, genArgs("--prompt", "abc", "--seed", "5", "--num-samples", "2", "--max-new-tokens", "10")...)
	if !strings.Contains(out, "--- sample 1 of 2 (seed 5) ---\n") || !strings.Contains(out, "--- sample 2 of 2 (seed 6) ---\n") {
		t.Errorf("--num-samples 2: %q", out)
	}
}

func TestCLIGenerateBench(t *testing.T) {
	out, stderr := mustRun(t, genArgs("--bench", "400", "--bench-marks", "100,400", "--bench-window", "50", "--seed", "1")...)
	for _, want := range []string{"flatness benchmark: 400 tokens", "random weights: preset tiny", "ms/token", "pruning on: 100 → 400 tokens", "pruning off: 100 → 400 tokens"} {
		if !strings.Contains(out, want) {
			t.Errorf("bench output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(stderr, "bench: 400 tokens with pruning") {
		t.Errorf("stderr: %s", stderr)
	}
}

func TestCLIGenerateBadInput(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-run")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"generate", "--prompt", "x"}, 2, "give --ckpt"},
		{[]string{"generate", "--random", "--prompt", "x"}, 2, "--random needs --preset"},
		{[]string{"generate", "--ckpt", "a", "--random", "--preset", "tiny"}, 2, "exclude each other"},
		{[]string{"generate", "--preset", "huge", "--random", "--prompt", "x", "--device", "cpu"}, 2, "unknown preset"},
		{genArgs("--prompt", "x", "--temperature", "-1"), 2, "temperature"},
		{genArgs("--prompt", "x", "--top-p", "0"), 2, "top_p"},
		{genArgs("--prompt", "x", "--top-k", "-2"), 2, "top_k"},
		{genArgs("--prompt", "x", "--seed", "-7"), 2, "--seed -7"},
		{genArgs("--prompt", "x", "--max-new-tokens", "0"), 2, "--max-new-tokens 0"},
		{genArgs("--prompt", "x", "--num-samples", "0"), 2, "--num-samples 0"},
		{genArgs("--prompt", "x", "--unk", "drop"), 2, "--unk"},
		{genArgs("--prompt", "x", "--bench-marks", "10,x"), 2, "--bench-marks"},
		{genArgs("--prompt", "x", "--prompt-file", "f"), 2, "exclude each other"},
		{genArgs("--prompt", "x", "extra"), 2, "unexpected arguments"},
		{genArgs("--prompt-file", missing), 1, "--prompt-file"},
		{[]string{"generate", "--ckpt", missing, "--prompt", "x", "--device", "cpu"}, 1, "no-such-run"},
	} {
		code, _, stderr := run(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("xspan %s: exit %d, %q; want exit %d with %q", strings.Join(c.args, " "), code, stderr, c.code, c.want)
		}
		if c.code == 1 && strings.Count(strings.TrimSpace(stderr), "\n") > 2 {
			t.Errorf("xspan %s: want a short error, got:\n%s", strings.Join(c.args, " "), stderr)
		}
	}
}

// An empty prompt starts from a newline; --stop cuts a sample; --logprobs writes one
// JSON line per token.
func TestCLIGenerateEmptyPromptStopLogProbs(t *testing.T) {
	empty, _ := mustRun(t, genArgs("--prompt", "", "--seed", "3", "--temperature", "0")...)
	nl, _ := mustRun(t, genArgs("--prompt", "\n", "--seed", "3", "--temperature", "0")...)
	if empty == "" || empty != nl {
		t.Errorf("empty prompt %q, newline prompt %q", empty, nl)
	}
	text := strings.TrimSuffix(nl, "\n")
	runes := []rune(text)
	stop := string(runes[len(runes)/2 : len(runes)/2+2])
	lp := filepath.Join(t.TempDir(), "lp.jsonl")
	cut, _ := mustRun(t, genArgs("--prompt", "\n", "--seed", "3", "--temperature", "0", "--stop", "never", "--stop", stop, "--logprobs", lp)...)
	if want := text[:strings.Index(text, stop)] + "\n"; cut != want {
		t.Errorf("--stop %q: %q, want %q", stop, cut, want)
	}
	data, err := os.ReadFile(lp)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	var first struct {
		Index   int
		ID      int
		Token   string
		LogProb *float64
		Top     []struct{ ID int } `json:"top_logprobs"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.LogProb == nil || *first.LogProb > 0 || len(first.Top) != 5 || first.Top[0].ID != first.ID {
		t.Errorf("first line %s (%v): want the greedy token first among 5", lines[0], err)
	}
	if len(lines) < 2 || len(lines) > 60 {
		t.Errorf("%d lines of log-probs", len(lines))
	}
}

// On one screen (stdout and stderr to the same place), every stats snapshot stands on a
// line of its own instead of breaking into a line of generated text; stdout alone is the
// text as generated.
func TestCLIGenerateStatsOnTheirOwnLines(t *testing.T) {
	var screen bytes.Buffer
	code := runMain(&env{stdin: strings.NewReader(""), stdout: &screen, stderr: &screen},
		genArgs("--prompt", "abc", "--temperature", "0", "--max-new-tokens", "300", "--stats", "--stats-every", "50"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, screen.String())
	}
	n := 0
	for _, line := range strings.Split(screen.String(), "\n") {
		if i := strings.Index(line, "stats: "); i >= 0 {
			n++
			if i > 0 {
				t.Errorf("a stats snapshot starts mid-line: %q", line)
			}
		}
	}
	if n != 5 {
		t.Errorf("%d interim snapshots, want 5 (every 50 of 300 tokens, the last one final):\n%s", n, screen.String())
	}
	plain, _ := mustRun(t, genArgs("--prompt", "abc", "--temperature", "0", "--max-new-tokens", "300", "--stats", "--stats-every", "50")...)
	alone, _ := mustRun(t, genArgs("--prompt", "abc", "--temperature", "0", "--max-new-tokens", "300")...)
	if plain != alone {
		t.Errorf("stdout changes with --stats")
	}
}
