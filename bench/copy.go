// Package bench gathers xspan's benchmarks behind `xspan bench`: the copy-task grid
// (Expire-Span against the fixed-memory baselines of equal memory), and the glue that runs
// the benchmarks owned by other packages (prep, training, generation) side by side.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sugarme/gotch"

	"xspan/checkpoint"
	"xspan/dataset"
	"xspan/eval"
	"xspan/internal/torchrt"
	"xspan/lm"
	"xspan/train"
)

// CopyConfig sets up the copy-task grid.
type CopyConfig struct {
	Gaps     []int  // filler tokens between the string and its copy
	SeqLen   int    // copied string length N (default 16)
	Alphabet int    // symbols (default 8: chance 1/8)
	Out      string // folder for datasets, runs, the table and the PNG
	// Examples is how many training examples each Expire-Span and baseline run sees;
	// the steps follow from it and the example length (default 1000; quick 500).
	Examples int
	// MinSteps and MaxSteps bound the steps of a run (defaults 300 and 12000).
	MinSteps, MaxSteps int
	EvalExamples       int // valid and test examples (default 100)
	Threads            int // libtorch threads (0: one per core)
	Seed               int64
	// Model is the shared shape and recipe; Expire-Span's MaxSpan and PosWindow are set
	// per gap (MaxSpanFactor × (gap + N + 2), rounded up to a block), the baselines'
	// MaxSpan to Expire-Span's measured mean live memory (and PosWindow to it too).
	Model         lm.Config
	MaxSpanFactor float64 // default 2
	Logf          func(format string, args ...any)
}

// DefaultCopyModel is the grid's model: 2 layers, d 64, block 64, batch 8, a span that
// starts at 90% of L (so that every key reaches its copy before the span loss prunes the
// fillers), α 1e-5, a cosine schedule from 2e-3.
func DefaultCopyModel() lm.Config {
	c, _ := lm.Preset("tiny")
	c.Layers, c.Dim, c.Heads, c.FFN = 2, 64, 2, 128
	c.Block, c.Batch = 64, 8
	c.Ramp, c.Alpha, c.InitFrac, c.Noisy, c.Dropout = 32, 1e-5, 0.9, false, 0
	c.LR, c.Warmup, c.Schedule, c.DecayLR, c.Clip = 2e-3, 50, lm.ScheduleCosine, 1e-4, 0.3
	c.EvalEvery, c.CkptEvery = 0, 0
	c.Seed = 1
	return c
}

// CopyRow is one model at one gap.
type CopyRow struct {
	Model      string    `json:"model"` // "expire-span", "transformer-xl" or "last-l"
	Gap        int       `json:"gap"`
	MaxSpan    int       `json:"max_span"` // L
	Steps      int64     `json:"steps"`
	Accuracy   float64   `json:"accuracy"`
	ExactMatch float64   `json:"exact_match"`
	Chance     float64   `json:"chance"`
	BPC        float64   `json:"bpc"` // on the copied tokens
	MeanLive   []float64 `json:"mean_live"`
	TokPerSec  float64   `json:"tok_per_s"`
	PeakRSS    int64     `json:"peak_rss"`
	Seconds    float64   `json:"seconds"` // training
}

func (c CopyConfig) withDefaults() CopyConfig {
	if c.SeqLen <= 0 {
		c.SeqLen = 16
	}
	if c.Alphabet <= 0 {
		c.Alphabet = 8
	}
	if c.Examples <= 0 {
		c.Examples = 1000
	}
	if c.MinSteps <= 0 {
		c.MinSteps = 300
	}
	if c.MaxSteps <= 0 {
		c.MaxSteps = 12000
	}
	if c.EvalExamples <= 0 {
		c.EvalExamples = 100
	}
	if c.MaxSpanFactor <= 0 {
		c.MaxSpanFactor = 2
	}
	if c.Model.Layers == 0 {
		c.Model = DefaultCopyModel()
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return c
}

// RunCopy runs the grid: per gap, a copy dataset, Expire-Span trained and evaluated on
// the test split (one stream, exact pruning), then the two fixed-memory baselines
// (lm.BaselineTransformerXL, the paper's comparison, and lm.BaselineLastL) with L set to
// Expire-Span's mean live memory (over layers, rounded up), trained and evaluated the same
// way. Runs are sequential, in this process. The caller holds its OS thread (torchrt.Lock).
func RunCopy(ctx context.Context, cfg CopyConfig) ([]CopyRow, error) {
	cfg = cfg.withDefaults()
	if len(cfg.Gaps) == 0 {
		return nil, fmt.Errorf("bench copy: no gap")
	}
	for _, g := range cfg.Gaps {
		if g < 1 {
			return nil, fmt.Errorf("bench copy: gap %d: want ≥ 1", g)
		}
	}
	if cfg.Out == "" {
		return nil, fmt.Errorf("bench copy: no output folder")
	}
	torchrt.SetThreads(cfg.Threads)
	var rows []CopyRow
	for _, gap := range cfg.Gaps {
		task := dataset.CopyTask{SeqLen: cfg.SeqLen, Gap: gap, Alphabet: cfg.Alphabet, EvalExamples: cfg.EvalExamples, Seed: uint64(cfg.Seed) + uint64(gap)}
		exLen := task.ExampleLen()
		m := cfg.Model
		steps := int(math.Ceil(float64(cfg.Examples) * float64(exLen) / float64(m.Batch*m.Block)))
		steps = min(max(steps, cfg.MinSteps), cfg.MaxSteps)
		task.Examples = steps*m.Batch*m.Block/exLen + m.Batch + 1 // each example seen about once
		data := filepath.Join(cfg.Out, fmt.Sprintf("data-gap%d", gap))
		if _, err := dataset.PrepCopy(ctx, data, task, dataset.WithForce(true)); err != nil {
			return rows, fmt.Errorf("gap %d: prep: %w", gap, err)
		}
		m.Steps = steps
		m.Warmup = min(m.Warmup, steps/4) // a cosine schedule needs steps beyond the warm-up
		l := int(math.Ceil(cfg.MaxSpanFactor*float64(gap+cfg.SeqLen+2)/float64(m.Block))) * m.Block
		m.Expire, m.MaxSpan, m.PosWindow = true, l, l
		cfg.Logf("gap %d: Expire-Span, L %d, %d steps of %d×%d tokens (%d examples of %d tokens)", gap, l, steps, m.Batch, m.Block, task.Examples, exLen)
		es, err := copyRun(ctx, cfg, "expire-span", gap, m, data)
		if err != nil {
			return rows, err
		}
		rows = append(rows, es)
		live := 0.0
		for _, v := range es.MeanLive {
			live += v / float64(len(es.MeanLive))
		}
		for _, baseline := range []string{lm.BaselineTransformerXL, lm.BaselineLastL} {
			b := m
			b.Expire, b.Baseline, b.MaxSpan = false, baseline, max(1, int(math.Ceil(live)))
			b.PosWindow = b.MaxSpan
			cfg.Logf("gap %d: %s, L %d (Expire-Span's mean live memory)", gap, baseline, b.MaxSpan)
			base, err := copyRun(ctx, cfg, baseline, gap, b, data)
			if err != nil {
				return rows, err
			}
			rows = append(rows, base)
		}
	}
	return rows, nil
}

func copyRun(ctx context.Context, cfg CopyConfig, name string, gap int, m lm.Config, data string) (CopyRow, error) {
	row := CopyRow{Model: name, Gap: gap, MaxSpan: m.MaxSpan}
	run := filepath.Join(cfg.Out, fmt.Sprintf("run-gap%d-%s", gap, name))
	if err := os.RemoveAll(run); err != nil {
		return row, err
	}
	if err := torchrt.ResetPeakRSS(); err != nil {
		cfg.Logf("note: %v", err)
	}
	res, err := train.Run(ctx, m, data, run, train.WithDevice(gotch.CPU), train.WithOutput(io.Discard),
		train.WithProgressBar(false), train.WithoutFinalEval(), train.WithKeep(1))
	if err != nil {
		return row, fmt.Errorf("gap %d, %s: train: %w", gap, name, err)
	}
	row.PeakRSS = torchrt.PeakRSS()
	row.Steps, row.TokPerSec, row.Seconds = res.Steps, res.TokPerSec, res.Seconds
	model, _, err := checkpoint.Load(run, gotch.CPU)
	if err != nil {
		return row, err
	}
	r, err := dataset.Open(data)
	if err != nil {
		return row, err
	}
	start := time.Now()
	ev, err := eval.Run(ctx, model, r, "test")
	if err != nil {
		return row, fmt.Errorf("gap %d, %s: eval: %w", gap, name, err)
	}
	if ev.Copy == nil {
		return row, fmt.Errorf("gap %d, %s: eval gave no copy accuracy", gap, name)
	}
	row.Accuracy, row.ExactMatch, row.Chance = ev.Copy.Accuracy, ev.Copy.ExactRate, ev.Copy.Chance
	row.BPC, row.MeanLive = ev.BPC, ev.MeanLive
	cfg.Logf("gap %d, %s: %d steps at %.0f tokens/s (%.0fs), peak RSS %.0f MiB; test: copy accuracy %.3f, exact match %.3f, %.3f bpc, live memory %s (eval %.0fs)",
		gap, name, row.Steps, row.TokPerSec, row.Seconds, mib(row.PeakRSS), row.Accuracy, row.ExactMatch, row.BPC, floats(row.MeanLive, "%.0f"), time.Since(start).Seconds())
	return row, nil
}

// WriteCopyTable writes the grid as a markdown table.
func WriteCopyTable(w io.Writer, rows []CopyRow) error {
	var b strings.Builder
	b.WriteString("| model | gap | L | steps | copy accuracy | exact match | bpc (copied) | mean live memory per layer | tokens/s | peak RSS |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %.3f | %.3f | %.3f | %s | %.0f | %.0f MiB |\n",
			r.Model, r.Gap, r.MaxSpan, r.Steps, r.Accuracy, r.ExactMatch, r.BPC, floats(r.MeanLive, "%.0f"), r.TokPerSec, mib(r.PeakRSS))
	}
	if len(rows) > 0 && rows[0].Chance > 0 {
		fmt.Fprintf(&b, "\nChance accuracy %.3f (1/alphabet). Accuracy: greedy argmax given the true prefix, on the copied tokens of the test split; exact match: all copied tokens of an example right.\n", rows[0].Chance)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func floats(xs []float64, format string) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(s, " / ")
}

// WriteCopyFiles writes the grid to out as copy.md (the table), copy.json and copy.png,
// and the table to w.
func WriteCopyFiles(out string, rows []CopyRow, w io.Writer) error {
	join := filepath.Join
	var md strings.Builder
	if err := WriteCopyTable(&md, rows); err != nil {
		return err
	}
	js, err := json.MarshalIndent(rows, "", "  ")
	if err != nil {
		return err
	}
	var png bytes.Buffer
	if err := CopyPNG(&png, rows); err != nil {
		return err
	}
	for name, data := range map[string][]byte{"copy.md": []byte(md.String()), "copy.json": js, "copy.png": png.Bytes()} {
		if err := os.WriteFile(join(out, name), data, 0o644); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintf(w, "%s\nwrote %s, %s and %s\n", md.String(), join(out, "copy.md"), join(out, "copy.png"), join(out, "copy.json"))
	return err
}
