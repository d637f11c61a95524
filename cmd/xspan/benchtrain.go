package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/sugarme/gotch"

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
	b := benchTrain{e: e, df: df, preset: cf.preset, out: *out, validBatch: *validBatch, noValid: *noValid, cpuProfile: *cpuProfile}
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
	}{{"Expire-Span", true}, {"baseline (fixed memory of the last L keys)", false}} {
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
	res, err := train.Run(ctx, cfg, data, run, train.WithDevice(dev), train.WithOutput(e.stderr),
		train.WithProgressBar(false), train.WithLogEvery(max(1, cfg.Steps/10)), train.WithoutFinalEval())
	if b.cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return err
	}
	trainPeak := torchrt.PeakRSS()

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
	fmt.Fprintf(w, "machine: %s, %s\n", note, torchrt.LibtorchVersion())
	msPerStep := 1000 * res.Seconds / float64(max(res.Steps, 1))
	fmt.Fprintf(w, "train: %.0f tokens/s (%.1f ms per step of %d tokens), peak RSS %.0f MiB\n",
		res.TokPerSec, msPerStep, c.Batch*c.Block, mib(trainPeak))
	if valid != nil {
		fmt.Fprintf(w, "valid: %.4f %s over the whole split (%d tokens, batch %d, memory carried, %.1fs), peak RSS %.0f MiB, mean live memory %s\n",
			valid.BPC, valid.Unit.Abbrev, valid.Tokens, valid.Batch, valid.Seconds, mib(validPeak), evalFloats(valid.MeanLive, "%.0f"))
	}
	if ref, ok := benchReference[b.preset]; ok && dev == gotch.CPU {
		fmt.Fprintf(w, "reference (PyTorch 1.13.1, 2 vCPUs, SkylakeX kernels, measured 2026-12-03 on another machine of this kind): %.0f tokens/s, peak RSS %.0f MiB, valid bpc %s\n", ref.tokPerSec, ref.peakMiB, ref.bpc)
		fmt.Fprintf(w, "ratio: %.2fx the tokens/s, %.2fx the peak memory\n", res.TokPerSec/ref.tokPerSec, mib(trainPeak)/ref.peakMiB)
	}
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
