package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"regexp"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"xspan/bench"
	"xspan/checkpoint"
	"xspan/dataset"
	"xspan/eval"
	"xspan/internal/torchrt"
	"xspan/lm"
	"xspan/train"
)

func init() {
	register(command{name: "bench-train", summary: "the same as 'xspan bench train'", run: runBenchTrain})
}

const benchTrainDescription = `
With --data: trains a preset for --steps steps on a dataset (no checkpoints but the last, no
validation on the way), then validates on the whole valid split with the memory carried,
and prints training tokens per second (steps only), peak resident memory while training
and while validating, and the validation bpc, beside the reference implementation's figures on the same kind of
machine (README, Results: "Training on the CPU").

The reference's data: the first 2,000,000 bytes of 'bible -f "Gen1:1-Rev22:21"'
(Debian's bible-kjv), newlines dropped, char vocabulary, split 1.8M/100k/100k:

  bible -f "Gen1:1-Rev22:21" | head -c 2000000 > kjv.txt
  xspan prep --input kjv.txt --out kjv --split 0.9,0.05,0.05 --newlines drop --vocab char
  xspan bench train --data kjv --preset tiny --steps 200
  xspan bench train --data kjv --preset small --steps 30

Without --data (as in 'xspan bench --quick'): prepares a 2 MB text dataset in a temporary
folder and trains on it twice, Expire-Span and the fixed-memory baseline (expire=false)
of the same preset, for --steps steps each (default 30), without validation.

The reference's figures are shown for runs on the CPU. 'xspan bench-train' is another
name for 'xspan bench train'.`

// The reference implementation's figures (the authors' PyTorch code on PyTorch 1.13.1,
// 2 vCPUs, the data above, OPENBLAS_CORETYPE=SkylakeX as xspan picks), measured beside
// xspan on 2026-12-03, as the README's Results give them: a figure from another day and
// machine, so a ratio against it is a rough guide, not a measurement.
var benchReference = map[string]struct {
	tokPerSec float64
	peakMiB   float64
	bpc       string
}{
	"tiny":  {7449, 760, "2.78–2.84 after 200 steps (two runs)"},
	"small": {1249, 2364, "not measured"},
}

// runBenchTrain is 'xspan bench train' (and bench-train): one preset on a dataset, or
// Expire-Span beside the baseline on a generated corpus.
func runBenchTrain(e *env, args []string) error {
	fs := newFlagSet("bench train", "[--data DIR] [--preset tiny] [--steps N] [flags]", benchTrainDescription)
	data := fs.String("data", "", "dataset `folder` (default: Expire-Span beside the baseline on a generated corpus)")
	out := fs.String("out", "", "run `folder` to keep, with --data (default: a temporary folder, removed)")
	validBatch := fs.Int("valid-batch", 0, "streams of the validation (0: the training batch, as the reference)")
	noValid := fs.Bool("no-valid", false, "skip the validation")
	cpuProfile := fs.String("cpuprofile", "", "write a Go CPU profile of the training to this `file` (cgo time shows as runtime.cgocall)")
	refCmd := fs.String("reference-cmd", "", "after xspan, run this shell `command` (e.g. the reference implementation installed locally, on the same data and settings) and measure it the same way: time per training step from its log, peak RSS; print the ratios")
	refStep := fs.String("reference-step-regex", `ms/batch:\s*([0-9.]+)`, "regular `expression` whose first group is the reference's milliseconds per training step in its output (the mean of all matches counts)")
	refBPC := fs.String("reference-bpc-regex", `val:\s*([0-9.]+)\s*bpc`, "regular `expression` whose first group is the reference's validation bpc (the last match counts)")
	refTokens := fs.Int("reference-tokens-per-step", 0, "tokens per step of the reference (0: batch × block of this config)")
	fs.Bool("quick", false, "without --data: as 'xspan bench --quick' runs it (the default, kept for that)")
	var cf configFlags
	cf.register(fs, "tiny")
	var df deviceFlags
	df.register(fs)
	if err := fs.noArgs(e, args); err != nil {
		return err
	}
	set := fs.visited()
	switch {
	case *validBatch < 0:
		return usageErrorf("--valid-batch %d: must not be negative", *validBatch)
	case *out != "" && *data == "":
		return usageErrorf("--out needs --data")
	}
	if err := df.check(); err != nil {
		return err
	}
	cfg, err := cf.base(set)
	if err != nil {
		return err
	}
	cfg.EvalEvery, cfg.CkptEvery = 0, 0
	if *data == "" && !set["steps"] {
		cfg.Steps = 30
	}
	if err := cf.apply(&cfg); err != nil {
		return err
	}
	ctx, stop := e.interruptible()
	defer stop()
	b := benchTrain{e: e, df: df, preset: cf.preset, out: *out, validBatch: *validBatch, noValid: *noValid, cpuProfile: *cpuProfile,
		refCmd: *refCmd, refStep: *refStep, refBPC: *refBPC, refTokens: *refTokens}
	if set["config"] {
		b.preset = cf.file
	}
	if *data != "" {
		return b.run(ctx, cfg, *data)
	}
	dir, err := os.MkdirTemp("", "xspan-bench-train-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	gen, err := bench.TextDataset(ctx, dir, 2<<20)
	if err != nil {
		return err
	}
	b.noValid = true
	for _, model := range []struct {
		name   string
		expire bool
	}{{"Expire-Span", true}, {"baseline last-l (fixed memory of the last L keys)", false}} {
		fmt.Fprintf(e.stdout, "-- %s --\n", model.name)
		c := cfg
		c.Expire = model.expire
		if err := b.run(ctx, c, gen); err != nil {
			return err
		}
	}
	return nil
}

// benchTrain is one benchmark run's settings.
type benchTrain struct {
	e           *env
	df          deviceFlags
	preset, out string
	validBatch  int
	noValid     bool
	cpuProfile  string
	// A command to measure beside xspan (--reference-cmd) and how to read its log.
	refCmd, refStep, refBPC string
	refTokens               int
}

func (b *benchTrain) run(ctx context.Context, cfg lm.Config, data string) error {
	e := b.e
	run := b.out
	if run == "" {
		dir, err := os.MkdirTemp("", "xspan-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		run = dir + "/run"
	}

	defer torchrt.Lock()()
	dev, note, err := b.df.open()
	if err != nil {
		return err
	}
	if err := torchrt.ResetPeakRSS(); err != nil {
		fmt.Fprintln(e.stderr, "note:", err)
	}
	if b.cpuProfile != "" {
		f, err := os.Create(b.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	// The keys each step attended: the mean over its layers of the live memory per stream,
	// averaged over the steps (a fixed memory of L holds L once it has filled).
	var liveSum float64
	var liveSteps int
	onStep := func(_ int64, r *checkpoint.Row) {
		if len(r.Live) > 0 {
			liveSum += mean(r.Live)
			liveSteps++
		}
	}
	res, err := train.Run(ctx, cfg, data, run, train.WithDevice(dev), train.WithOutput(e.stderr),
		train.WithProgressBar(false), train.WithLogEvery(max(1, cfg.Steps/10)), train.WithoutFinalEval(), train.WithOnStep(onStep))
	if b.cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return err
	}
	trainPeak := torchrt.PeakRSS()
	ceiling := matmulCeiling(dev)

	var valid *eval.Result
	var validPeak int64
	if !b.noValid {
		m, ck, err := checkpoint.Load(run, dev)
		if err != nil {
			return err
		}
		r, err := dataset.Open(data)
		if err != nil {
			return err
		}
		if err := torchrt.ResetPeakRSS(); err != nil {
			fmt.Fprintln(e.stderr, "note:", err)
		}
		vb := b.validBatch
		if vb == 0 {
			vb = ck.Config.Batch
		}
		valid, err = eval.Run(ctx, m, r, "valid", eval.WithBatch(vb))
		if err != nil {
			return err
		}
		validPeak = torchrt.PeakRSS()
	}

	w, c := e.stdout, cfg
	fmt.Fprintf(w, "config: preset %s: %d layers, d %d, %d heads, FFN %d, block %d, batch %d, L %d, R %d, alpha %g, noisy %v, dropout %g, lr %g, warm-up %d, clip %g; %d steps; %d parameters\n",
		b.preset, c.Layers, c.Dim, c.Heads, c.FFN, c.Block, c.Batch, c.MaxSpan, c.Ramp, c.Alpha, c.Noisy, c.Dropout, c.LR, c.Warmup, c.Clip, res.Steps, res.NumParams)
	fmt.Fprintf(w, "machine: %s, %s, BLAS kernels %s, attention %s\n", note, torchrt.LibtorchVersion(), blasKernels(), c.EffectiveAttention())
	msPerStep := 1000 * res.Seconds / float64(max(res.Steps, 1))
	fmt.Fprintf(w, "train: %.0f tokens/s (%.1f ms per step of %d tokens), peak RSS %.0f MiB\n",
		res.TokPerSec, msPerStep, c.Batch*c.Block, mib(trainPeak))
	if valid != nil {
		fmt.Fprintf(w, "valid: %.4f %s over the whole split (%d tokens, batch %d, memory carried, %.1fs), peak RSS %.0f MiB, mean live memory %s\n",
			valid.BPC, valid.Unit.Abbrev, valid.Tokens, valid.Batch, valid.Seconds, mib(validPeak), evalFloats(valid.MeanLive, "%.0f"))
	}
	live := float64(c.EffectiveInitCache())
	if liveSteps > 0 {
		live = liveSum / float64(liveSteps)
	}
	// Model FLOPs per token, forward and backward: 6 per parameter (the weights' products)
	// and 12·d per key attended (q·k and a·v, each 2·d forward and twice that backward)
	// per layer, over the training steps' mean live memory plus the block (gpu-check.sh's
	// count).
	flopTok := 6*float64(res.NumParams) + float64(c.Layers)*12*float64(c.Dim)*(live+float64(c.Block))
	if ceiling > 0 {
		fmt.Fprintf(w, "model FLOPs: %.1f MFLOP per token (6 × %d parameters + %d layers × 12 × %d × (%.0f live in training + %d block)): %.1f GFLOP/s, %.1f%% of the matrix-product ceiling of %.1f GFLOP/s measured in this run (2048×2048 float32)\n",
			flopTok/1e6, res.NumParams, c.Layers, c.Dim, live, c.Block, res.TokPerSec*flopTok/1e9, 100*res.TokPerSec*flopTok/1e9/ceiling, ceiling)
	}
	if b.refCmd != "" {
		tokens := b.refTokens
		if tokens <= 0 {
			tokens = c.Batch * c.Block
		}
		ref, err := runReference(ctx, b.refCmd, b.refStep, b.refBPC)
		if err != nil {
			return err
		}
		refTPS := float64(tokens) / (ref.msPerStep / 1000)
		fmt.Fprintf(w, "reference (--reference-cmd, measured in this run): %.0f tokens/s (%.1f ms per step of %d tokens, mean of %d logged figures), peak RSS %.0f MiB, %.0fs in all, valid bpc %s (its own validation)\n",
			refTPS, ref.msPerStep, tokens, ref.steps, mib(ref.peakRSS), ref.seconds, ref.bpc)
		fmt.Fprintf(w, "ratio (measured in this run): %.2fx the tokens/s, %.2fx the peak memory\n", res.TokPerSec/refTPS, mib(trainPeak)/mib(ref.peakRSS))
		return nil
	}
	if ref, ok := benchReference[b.preset]; ok && dev == gotch.CPU {
		fmt.Fprintf(w, "reference (figures from the README, PyTorch 1.13.1, 2 vCPUs; --reference-cmd measures it here): %.0f tokens/s, peak RSS %.0f MiB, valid bpc %s\n", ref.tokPerSec, ref.peakMiB, ref.bpc)
		fmt.Fprintf(w, "ratio: %.2fx the tokens/s, %.2fx the peak memory\n", res.TokPerSec/ref.tokPerSec, mib(trainPeak)/ref.peakMiB)
	}
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// refRun is what runReference measured.
type refRun struct {
	msPerStep float64 // mean of the figures its log gives
	steps     int     // how many it gave
	peakRSS   int64   // bytes, the largest of the command and the processes it waited for
	seconds   float64 // wall time of the whole command
	bpc       string  // its last validation figure, or "not found"
}

// runReference runs cmd under sh, echoing its output to stderr, and reads its time per
// step and validation bpc from that output.
func runReference(ctx context.Context, cmd, stepRe, bpcRe string) (*refRun, error) {
	step, err := regexp.Compile(stepRe)
	if err != nil {
		return nil, usageErrorf("--reference-step-regex: %v", err)
	}
	bpc, err := regexp.Compile(bpcRe)
	if err != nil {
		return nil, usageErrorf("--reference-bpc-regex: %v", err)
	}
	var buf bytes.Buffer
	c := exec.CommandContext(ctx, "sh", "-c", cmd)
	c.Stdout = io.MultiWriter(&buf, os.Stderr)
	c.Stderr = c.Stdout
	start := time.Now()
	if err := c.Run(); err != nil {
		return nil, fmt.Errorf("--reference-cmd: %v", err)
	}
	r := &refRun{seconds: time.Since(start).Seconds(), bpc: "not found"}
	if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.peakRSS = ru.Maxrss * 1024 // kB on Linux
	}
	var sum float64
	for _, m := range step.FindAllStringSubmatch(buf.String(), -1) {
		if len(m) > 1 {
			if x, err := strconv.ParseFloat(m[1], 64); err == nil {
				sum += x
				r.steps++
			}
		}
	}
	if r.steps == 0 {
		return nil, fmt.Errorf("--reference-cmd: no time per step in its output (--reference-step-regex %q)", stepRe)
	}
	r.msPerStep = sum / float64(r.steps)
	if ms := bpc.FindAllStringSubmatch(buf.String(), -1); len(ms) > 0 && len(ms[len(ms)-1]) > 1 {
		r.bpc = ms[len(ms)-1][1]
	}
	return r, nil
}

// matmulCeiling measures float32 matrix products of 2048×2048 on dev with the threads
// set, in GFLOP/s: the ceiling that model FLOPs utilisation is read against. 0 when it
// cannot tell.
func matmulCeiling(dev gotch.Device) (gflops float64) {
	defer func() {
		if recover() != nil {
			gflops = 0
		}
	}()
	const n = 2048
	a := ts.MustRandn([]int64{n, n}, gotch.Float, dev)
	b := ts.MustRandn([]int64{n, n}, gotch.Float, dev)
	defer a.MustDrop()
	defer b.MustDrop()
	a.MustMatmul(b, false).MustDrop() // warm-up
	best := 0.0
	for i := 0; i < 5; i++ {
		t := time.Now()
		c := a.MustMatmul(b, false)
		s := c.MustSum(gotch.Float, true) // reading one value waits for the device
		torchrt.Float64(s)
		s.MustDrop()
		best = math.Max(best, 2*n*n*n/time.Since(t).Seconds()/1e9)
	}
	return best
}

// blasKernels names the OpenBLAS kernels this process asked for.
func blasKernels() string {
	if k := os.Getenv("OPENBLAS_CORETYPE"); k != "" {
		return "OPENBLAS_CORETYPE=" + k
	}
	return "OpenBLAS's own choice"
}

// mean is the mean of xs (0 for none).
func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}
