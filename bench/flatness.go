package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"xspan/generate"
)

// FlatnessConfig sets up the flatness benchmark.
type FlatnessConfig struct {
	Tokens      int                    // new tokens per run (default 20000)
	Marks       []int                  // where to measure (default 1k, 5k, 10k, 20k; clipped to Tokens)
	Window      int                    // tokens before each mark whose step times are measured (default 500)
	Sampler     generate.SamplerConfig // how tokens are drawn (the same seed in both runs)
	PromptBlock int                    // feed the prompt in pieces of this many tokens
	// BytesPerMemory, when set, converts live memories to bytes in the table (a cached
	// hidden state is dim float32s: 4·dim bytes).
	BytesPerMemory int64
	// Progress, when set, is called every 1000 tokens.
	Progress func(pruning bool, tokens int)
}

// FlatMark is one measurement of a run.
type FlatMark struct {
	Tokens     int     // new tokens so far
	MsPerToken float64 // median step time over the window before the mark
	MsP10      float64 // its 10th percentile: the cost with the least interference from other work
	MsMean     float64 // the mean (its inverse is the window's tokens per second; pauses weigh in)
	Live       []int   // live memories per layer at the mark
	Dropped    int64   // memories dropped so far
	RSS        int64   // process resident set size in bytes
}

// FlatRun is one run of the benchmark.
type FlatRun struct {
	Pruning bool
	Tokens  int // new tokens generated
	Marks   []FlatMark
	Total   time.Duration
}

func (c FlatnessConfig) withDefaults() FlatnessConfig {
	if c.Tokens <= 0 {
		c.Tokens = 20000
	}
	if len(c.Marks) == 0 {
		c.Marks = []int{1000, 5000, 10000, 20000}
	}
	var marks []int
	for _, m := range c.Marks {
		if m > 0 && m <= c.Tokens && !slices.Contains(marks, m) {
			marks = append(marks, m)
		}
	}
	slices.Sort(marks)
	c.Marks = marks
	if c.Window <= 0 {
		c.Window = 500
	}
	if c.Sampler == (generate.SamplerConfig{}) {
		c.Sampler = generate.DefaultSampler()
	}
	return c
}

// Flatness generates cfg.Tokens tokens after prompt twice, with pruning on and then off
// (newStepper(pruning) gives a fresh decoder), and measures per-token time and live memory
// at each mark. It is a benchmark, not a test: its figures depend on the machine.
func Flatness(ctx context.Context, newStepper func(pruning bool) (generate.Stepper, error), prompt []int64, cfg FlatnessConfig) ([]FlatRun, error) {
	cfg = cfg.withDefaults()
	if len(prompt) == 0 {
		return nil, generate.ErrEmptyPrompt
	}
	var runs []FlatRun
	for _, pruning := range []bool{true, false} {
		st, err := newStepper(pruning)
		if err != nil {
			return runs, err
		}
		run, err := flatRun(ctx, st, prompt, cfg, pruning)
		generate.CloseStepper(st)
		if err != nil {
			return runs, fmt.Errorf("pruning %v: %w", pruning, err)
		}
		runs = append(runs, run)
	}
	return runs, nil
}

func flatRun(ctx context.Context, st generate.Stepper, prompt []int64, cfg FlatnessConfig, pruning bool) (FlatRun, error) {
	run := FlatRun{Pruning: pruning}
	sampler, err := generate.NewSampler(cfg.Sampler)
	if err != nil {
		return run, err
	}
	piece := cfg.PromptBlock
	if piece <= 0 {
		piece = len(prompt)
	}
	var logp []float32
	for i := 0; i < len(prompt); i += piece {
		if logp, err = st.Feed(prompt[i:min(i+piece, len(prompt))]); err != nil {
			return run, fmt.Errorf("feeding the prompt: %w", err)
		}
	}
	steps := make([]time.Duration, cfg.Tokens) // steps[i]: drawing and feeding token i
	start := time.Now()
	next := 0
	for i := 0; i < cfg.Tokens; i++ {
		if err := ctx.Err(); err != nil {
			return run, err
		}
		t := time.Now()
		id, err := sampler.Sample(logp)
		if err != nil {
			return run, fmt.Errorf("token %d: %w", i, err)
		}
		if logp, err = st.Feed([]int64{int64(id)}); err != nil {
			return run, fmt.Errorf("token %d: %w", i, err)
		}
		steps[i] = time.Since(t)
		if n := i + 1; next < len(cfg.Marks) && n == cfg.Marks[next] {
			run.Marks = append(run.Marks, measure(steps[max(0, n-cfg.Window):n], n, st))
			next++
		}
		if cfg.Progress != nil && (i+1)%1000 == 0 {
			cfg.Progress(pruning, i+1)
		}
	}
	run.Total = time.Since(start)
	run.Tokens = cfg.Tokens
	return run, nil
}

func measure(window []time.Duration, tokens int, st generate.Stepper) FlatMark {
	m := FlatMark{Tokens: tokens, Live: st.Live(), Dropped: st.Dropped()}
	m.RSS, _ = generate.ProcessRSS()
	sorted := slices.Clone(window)
	slices.Sort(sorted)
	var total time.Duration
	for _, d := range window {
		total += d
	}
	if len(sorted) > 0 {
		m.MsPerToken = float64(sorted[len(sorted)/2]) / 1e6
		m.MsP10 = float64(sorted[len(sorted)/10]) / 1e6
		m.MsMean = float64(total) / 1e6 / float64(len(window))
	}
	return m
}

// WriteFlatness prints the benchmark's table and, per run, the change from the first mark
// to the last (the target: within 10% with pruning). Step times are all in ms per token
// (median, 10th percentile, mean: a machine busy with other work lifts the mean far above
// the median), so that no column contradicts another; tokens per second come once, for
// the whole run.
func WriteFlatness(w io.Writer, runs []FlatRun, cfg FlatnessConfig) {
	cfg = cfg.withDefaults()
	fmt.Fprintf(w, "%-8s %7s %9s %9s %9s %12s %12s %10s %10s  %s\n", "pruning", "tokens", "ms/token", "ms p10", "ms mean", "live (all)", "live memory", "dropped", "rss", "live per layer")
	for _, r := range runs {
		for _, m := range r.Marks {
			mem := "-"
			if cfg.BytesPerMemory > 0 {
				mem = generate.FormatBytes(int64(sum(m.Live)) * cfg.BytesPerMemory)
			}
			fmt.Fprintf(w, "%-8s %7d %9.3f %9.3f %9.3f %12d %12s %10d %10s  %v\n", onOff(r.Pruning), m.Tokens, m.MsPerToken, m.MsP10, m.MsMean, sum(m.Live), mem, m.Dropped, generate.FormatBytes(m.RSS), m.Live)
		}
	}
	for _, r := range runs {
		if len(r.Marks) < 2 {
			continue
		}
		a, b := r.Marks[0], r.Marks[len(r.Marks)-1]
		fmt.Fprintf(w, "pruning %s: %d → %d tokens: ms/token ×%.2f (p10 ×%.2f), live memories ×%.2f (%d → %d), whole run %.1fs (%.1f tok/s)\n",
			onOff(r.Pruning), a.Tokens, b.Tokens, ratio(b.MsPerToken, a.MsPerToken), ratio(b.MsP10, a.MsP10), ratio(float64(sum(b.Live)), float64(sum(a.Live))),
			sum(a.Live), sum(b.Live), r.Total.Seconds(), float64(r.Tokens)/r.Total.Seconds())
	}
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
