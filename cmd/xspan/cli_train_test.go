package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// trainTinyArgs shrink the tiny preset so that a test trains in a second.
var trainTinyArgs = []string{"--preset", "tiny", "--device", "cpu", "--threads", "1", "--no-bar",
	"--batch", "4", "--block", "16", "--warmup", "2", "--lr", "0.003", "--eval-every", "3", "--ckpt-every", "3",
	"--set", "layers=1", "--set", "dim=32", "--set", "heads=2", "--set", "ffn=64", "--set", "max_span=64", "--set", "ramp=8"}

// charData prepares testText as a char dataset without newlines in dir/ds.
func charData(t *testing.T, dir string) string {
	t.Helper()
	in := filepath.Join(dir, "corpus.txt")
	os.WriteFile(in, testText(), 0o644)
	data := filepath.Join(dir, "ds")
	if code, _, stderr := run(t, "prep", "--input", in, "--out", data, "--vocab", "char", "--newlines", "drop"); code != 0 {
		t.Fatalf("prep: exit %d: %s", code, stderr)
	}
	return data
}

func TestCLITrainEvalReport(t *testing.T) {
	dir := t.TempDir()
	data := charData(t, dir)
	out := filepath.Join(dir, "run")
	args := append([]string{"train", "--data", data, "--out", out, "--steps", "6"}, trainTinyArgs...)
	code, stdout, stderr := run(t, args...)
	if code != 0 {
		t.Fatalf("train: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"trained " + out + ": step 6", "valid: ", "bpc (bits per character)", "checkpoint: ", "best: "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("train output lacks %q:\n%s", want, stdout)
		}
	}
	cfgJSON, err := os.ReadFile(filepath.Join(out, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	json.Unmarshal(cfgJSON, &cfg)
	if cfg["dim"] != 32.0 || cfg["layers"] != 1.0 || cfg["steps"] != 6.0 || cfg["vocab"].(float64) < 2 || cfg["tokenizer"] == "" {
		t.Errorf("config.json: %s", cfgJSON)
	}
	// The config printed at start, and --print-config with --data, are config.json's:
	// the dataset's vocabulary size and identity included.
	_, line, _ := strings.Cut(stderr, "config: ")
	line, _, _ = strings.Cut(line, "\n")
	var printed map[string]any
	if err := json.Unmarshal([]byte(line), &printed); err != nil || printed["vocab"] != cfg["vocab"] || printed["tokenizer"] != cfg["tokenizer"] {
		t.Errorf("printed config (%v): %s\nconfig.json: %s", err, line, cfgJSON)
	}
	code, stdout, stderr = run(t, append([]string{"train", "--data", data, "--print-config", "--steps", "6"}, trainTinyArgs...)...)
	printed = nil
	if err := json.Unmarshal([]byte(stdout), &printed); code != 0 || err != nil || printed["vocab"] != cfg["vocab"] || printed["tokenizer"] != cfg["tokenizer"] {
		t.Errorf("--print-config --data: exit %d (%v): %s%s", code, err, stdout, stderr)
	}

	// Resume for 3 more steps: the run's config, with --steps raised.
	code, stdout, stderr = run(t, "train", "--out", out, "--resume", "--steps", "9", "--no-bar", "--threads", "1", "--device", "cpu")
	if code != 0 {
		t.Fatalf("train --resume: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "step 9") || !strings.Contains(stdout, "this run 3 steps") || !strings.Contains(stderr, "resumed") {
		t.Errorf("resume output:\n%s\n%s", stdout, stderr)
	}

	// eval, as JSON, on the run's best checkpoint, with a dump.
	dump := filepath.Join(dir, "dump.jsonl")
	code, stdout, stderr = run(t, "eval", "--ckpt", filepath.Join(out, "best"), "--split", "test", "--json", "--dump", dump, "--threads", "1")
	if code != 0 {
		t.Fatalf("eval: exit %d: %s", code, stderr)
	}
	var res struct {
		Step   int64   `json:"step"`
		Tokens int64   `json:"tokens"`
		BPC    float64 `json:"bpc"`
		Unit   struct {
			Name string `json:"name"`
		} `json:"unit"`
		MeanLive []float64 `json:"mean_live"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("eval --json: %v\n%s", err, stdout)
	}
	if res.Tokens < 100 || !(res.BPC > 0) || res.Unit.Name != "bits per character" || len(res.MeanLive) != 1 {
		t.Errorf("eval result: %+v", res)
	}
	lines, _ := os.ReadFile(dump)
	if n := strings.Count(string(lines), "\n"); int64(n) != res.Tokens+1 {
		t.Errorf("dump has %d lines for %d scored tokens", n, res.Tokens)
	}
	code, stdout, _ = run(t, "eval", "--ckpt", out, "--split", "valid", "--batch", "2", "--threads", "1")
	if code != 0 || !strings.Contains(stdout, "bits per character") || !strings.Contains(stdout, "live memory") {
		t.Errorf("eval text output (exit %d):\n%s", code, stdout)
	}

	// report
	code, stdout, stderr = run(t, "report", out, "--threads", "1")
	if code != 0 {
		t.Fatalf("report: exit %d: %s", code, stderr)
	}
	png, err := os.ReadFile(filepath.Join(out, "report.png"))
	if err != nil || len(png) < 1000 || string(png[1:4]) != "PNG" {
		t.Fatalf("report.png: %d bytes, %v", len(png), err)
	}
	if !strings.Contains(stdout, "spans of step") {
		t.Errorf("report output: %s", stdout)
	}

	// Bad input: one clear line each, exit 1 or 2, nothing half-written.
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"train", "--data", data}, 2, "--out is required"},
		{[]string{"train", "--data", data, "--out", filepath.Join(dir, "x"), "--set", "nope=1"}, 2, `unknown config key "nope"`},
		{[]string{"train", "--data", data, "--out", filepath.Join(dir, "x"), "--steps", "many"}, 2, "not an integer"},
		{[]string{"train", "--data", data, "--out", out}, 1, "--resume"},
		{[]string{"train", "--out", out, "--resume", "--preset", "small"}, 2, "do not apply"},
		{[]string{"eval", "--ckpt", filepath.Join(dir, "nope")}, 1, "nope"},
		{[]string{"eval", "--ckpt", out, "--batch", "2", "--dump", dump}, 2, "--dump needs one stream"},
		{[]string{"report", filepath.Join(dir, "nope")}, 1, "metrics.jsonl"},
	} {
		code, _, stderr := run(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, stderr, c.code, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x", "checkpoints")); err == nil {
		t.Error("a refused train left checkpoints behind")
	}

	// bench-train runs end to end on a couple of steps.
	bargs := []string{"bench-train", "--data", data, "--preset", "tiny", "--steps", "2", "--threads", "1",
		"--set", "batch=4", "--set", "block=16", "--set", "layers=1", "--set", "dim=32", "--set", "heads=2", "--set", "ffn=64"}
	code, stdout, stderr = run(t, bargs...)
	if code != 0 {
		t.Fatalf("bench-train: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"train: ", "tokens/s", "peak RSS", "valid: ", "reference"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("bench-train output lacks %q:\n%s", want, stdout)
		}
	}
}
