package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"xspan/lm"
)

// TestCLIBenchCopy runs a two-gap grid of a few steps and checks its files and table:
// three rows per gap, each baseline's L set to Expire-Span's mean live memory.
func TestCLIBenchCopy(t *testing.T) {
	out := filepath.Join(t.TempDir(), "bc")
	code, stdout, stderr := run(t, "bench", "copy", "--gaps", "6,10", "--seq-len", "2", "--alphabet", "3", "--max-steps", "3", "--set", "lr=0.0011", "--out", out)
	if code != 0 {
		t.Fatalf("bench copy: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "| model | gap | L |") || !strings.Contains(stdout, "Chance accuracy 0.333") {
		t.Errorf("bench copy output:\n%s", stdout)
	}
	for _, f := range []string{"copy.md", "copy.png", "copy.json"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	// --set reaches every run's config.
	for _, run := range []string{"run-gap6-expire-span", "run-gap10-transformer-xl"} {
		b, err := os.ReadFile(filepath.Join(out, run, "config.json"))
		if err != nil || !strings.Contains(string(b), `"lr": 0.0011`) {
			t.Errorf("%s/config.json (%v) lacks --set lr=0.0011:\n%s", run, err, b)
		}
	}
	js, _ := os.ReadFile(filepath.Join(out, "copy.json"))
	var rows []struct {
		Model    string    `json:"model"`
		Gap      int       `json:"gap"`
		MaxSpan  int       `json:"max_span"`
		Steps    int64     `json:"steps"`
		Accuracy float64   `json:"accuracy"`
		MeanLive []float64 `json:"mean_live"`
		PeakRSS  int64     `json:"peak_rss"`
	}
	if err := json.Unmarshal(js, &rows); err != nil {
		t.Fatal(err)
	}
	models := []string{"expire-span", lm.BaselineTransformerXL, lm.BaselineLastL}
	if len(rows) != 2*len(models) {
		t.Fatalf("%d rows, want %d: %s", len(rows), 2*len(models), js)
	}
	for i, r := range rows {
		m := i % len(models)
		if r.Model != models[m] || r.Gap != []int{6, 10}[i/len(models)] || r.Steps != 3 || r.Accuracy < 0 || r.Accuracy > 1 || len(r.MeanLive) != 2 {
			t.Errorf("row %d: %+v", i, r)
		}
		if m > 0 {
			es := rows[i-m]
			live := (es.MeanLive[0] + es.MeanLive[1]) / 2
			if float64(r.MaxSpan) < live || float64(r.MaxSpan) >= live+1 {
				t.Errorf("%s L %d, Expire-Span's mean live memory %v", r.Model, r.MaxSpan, live)
			}
		}
	}
}

func TestCLIBenchErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "nope"}, `unknown benchmark "nope"`},
		{[]string{"bench", "copy", "--gaps", "1,x"}, `--gaps "1,x"`},
		{[]string{"bench", "copy", "--gaps", "0"}, `--gaps "0"`},
		{[]string{"bench", "copy", "--alphabet", "1"}, "--alphabet ≥ 2"},
		{[]string{"bench", "copy", "--set", "alpha=x"}, "--set alpha=x"},
		{[]string{"bench", "copy", "--set", "nope=1"}, "--set nope=1"},
		{[]string{"bench", "prep", "--size", "-1"}, "--size -1"},
	} {
		code, _, stderr := run(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, stderr, c.want)
		}
	}
}

// TestCLIBenchPrep measures prep on 1 MB beside the zstd ceiling.
func TestCLIBenchPrep(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := run(t, "bench", "prep", "--size", "1")
	if code != 0 || !strings.Contains(stdout, "prep: ") || !strings.Contains(stdout, "zstd ceiling") || !strings.Contains(stdout, "% of the ceiling") {
		t.Errorf("bench prep: exit %d:\n%s%s", code, stdout, stderr)
	}
}

// TestCLIBenchTrain runs bench train as bench-train (with --data), and without --data as
// Expire-Span beside the baseline on a generated corpus.
func TestCLIBenchTrain(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "corpus.txt")
	os.WriteFile(in, testText(), 0o644)
	data := filepath.Join(dir, "ds")
	if code, _, stderr := run(t, "prep", "--input", in, "--out", data, "--vocab", "char", "--newlines", "drop"); code != 0 {
		t.Fatalf("prep: exit %d: %s", code, stderr)
	}
	small := []string{"--threads", "1", "--set", "batch=4", "--set", "block=16", "--set", "layers=1", "--set", "dim=32", "--set", "heads=2", "--set", "ffn=64", "--set", "max_span=64", "--set", "ramp=8"}
	code, stdout, stderr := run(t, append([]string{"bench", "train", "--data", data, "--steps", "2"}, small...)...)
	if code != 0 {
		t.Fatalf("bench train --data: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"train: ", "tokens/s", "peak RSS", "valid: "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("bench train --data output lacks %q:\n%s", want, stdout)
		}
	}
	// --reference-cmd: a stand-in that logs two step times and a validation: its figures
	// and the ratios come out of the same run.
	ref := `echo "1 ms/batch: 100.0"; echo "2 ms/batch: 300.0"; echo "val: 2.50bpc"`
	code, stdout, stderr = run(t, append([]string{"bench", "train", "--data", data, "--steps", "2", "--no-valid", "--reference-cmd", ref}, small...)...)
	if code != 0 {
		t.Fatalf("bench train --reference-cmd: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"(--reference-cmd, measured in this run): 320 tokens/s (200.0 ms per step of 64 tokens, mean of 2 logged figures)", "valid bpc 2.50", "ratio (measured in this run): ", "model FLOPs: "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("bench train --reference-cmd output lacks %q:\n%s", want, stdout)
		}
	}
	if code, _, stderr := run(t, append([]string{"bench", "train", "--data", data, "--steps", "1", "--no-valid", "--reference-cmd", "echo nothing"}, small...)...); code == 0 || !strings.Contains(stderr, "no time per step") {
		t.Errorf("a reference that logs no step time: exit %d, %s", code, stderr)
	}
	code, stdout, stderr = run(t, append([]string{"bench", "train", "--quick", "--steps", "2"}, small...)...)
	if code != 0 {
		t.Fatalf("bench train: exit %d: %s", code, stderr)
	}
	if strings.Count(stdout, "train: ") != 2 || !strings.Contains(stdout, "-- Expire-Span --") || !strings.Contains(stdout, "-- baseline") || strings.Contains(stdout, "valid: ") {
		t.Errorf("bench train output:\n%s", stdout)
	}
	// The baseline's FLOPs count the keys its training attended (a fixed memory that
	// fills by a block a step), not the initial cache of one block, as without validation
	// they did.
	_, baseline, _ := strings.Cut(stdout, "-- baseline")
	m := regexp.MustCompile(`\((\d+) live in training \+ 16 block\)`).FindStringSubmatch(baseline)
	if m == nil {
		t.Fatalf("baseline's FLOPs line:\n%s", baseline)
	}
	if live, _ := strconv.Atoi(m[1]); live <= 16 {
		t.Errorf("baseline: %d live keys counted, want more than the initial block of 16:\n%s", live, baseline)
	}
}
