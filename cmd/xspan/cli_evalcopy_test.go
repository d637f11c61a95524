package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIEvalCopy trains a few steps on a copy-task dataset and checks that eval reports
// copy accuracy and exact match, in text and in JSON, over the scored tokens only.
func TestCLIEvalCopy(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "copy")
	if code, _, stderr := run(t, "prep", "--synthetic", "copy", "--out", data, "--seq-len", "4", "--gap", "20",
		"--alphabet", "4", "--examples", "40", "--eval-examples", "6", "--seed", "5"); code != 0 {
		t.Fatalf("prep: exit %d: %s", code, stderr)
	}
	out := filepath.Join(dir, "run")
	args := append([]string{"train", "--data", data, "--out", out, "--steps", "3", "--valid-batch", "1"}, trainTinyArgs...)
	if code, _, stderr := run(t, args...); code != 0 {
		t.Fatalf("train: exit %d: %s", code, stderr)
	}
	code, stdout, stderr := run(t, "eval", "--ckpt", out, "--split", "valid", "--threads", "1", "--device", "cpu")
	if code != 0 {
		t.Fatalf("eval: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"tokens      24 scored", "copy acc    ", "; chance 0.2500)", "exact match ", "of 6 complete examples"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("eval output lacks %q:\n%s", want, stdout)
		}
	}
	code, stdout, stderr = run(t, "eval", "--ckpt", out, "--split", "valid", "--threads", "1", "--device", "cpu", "--json")
	if code != 0 {
		t.Fatalf("eval --json: exit %d: %s", code, stderr)
	}
	var res struct {
		Tokens int64 `json:"tokens"`
		Copy   *struct {
			Scored, Correct, Examples, Exact int64
			Accuracy                         float64
		} `json:"copy"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("eval --json: %v\n%s", err, stdout)
	}
	if c := res.Copy; c == nil || c.Scored != 24 || res.Tokens != 24 || c.Examples != 6 || c.Correct > c.Scored || c.Exact > c.Examples ||
		c.Accuracy != float64(c.Correct)/float64(c.Scored) {
		t.Errorf("eval --json copy: %+v (tokens %d)", res.Copy, res.Tokens)
	}
}
