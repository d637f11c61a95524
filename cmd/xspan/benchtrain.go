package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"

	"xspan/checkpoint"
	"xspan/dataset"
	"xspan/eval"
	"xspan/internal/torchrt"
	"xspan/lm"
	"xspan/train"
)

func init() {
	register(command{name: "bench-train", summary: "measure training speed, peak memory and validation bpc", run: runBenchTrain})
}

const benchTrainDescription = `
Trains a preset for --steps steps on a dataset (no checkpoints but the last, no
validation on the way), then validates on the whole valid split with the memory carried,
and prints training tokens per second (steps only), peak resident memory while training
and while validating, and the validation bpc, beside the reference implementation's figures on the same kind of
machine (README, Results: "Training on the CPU").

The reference's data: the first 2,000,000 bytes of 'bible -f "Gen1:1-Rev22:21"'
(Debian's bible-kjv), newlines dropped, char vocabulary, split 1.8M/100k/100k:

  bible -f "Gen1:1-Rev22:21" | head -c 2000000 > kjv.txt
  xspan prep --input kjv.txt --out kjv --split 0.9,0.05,0.05 --newlines drop --vocab char
  xspan bench-train --data kjv --preset tiny --steps 200
  xspan bench-train --data kjv --preset small --steps 30`

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

func runBenchTrain(args []string) error {
	fs := newFlagSet("bench-train", "--data DIR [--preset tiny] [--steps N] [flags]", benchTrainDescription)
	data := fs.String("data", "", "dataset folder (required)")
	preset := fs.String("preset", "tiny", "preset config: "+strings.Join(lm.PresetNames(), ", "))
	steps := fs.Int("steps", 200, "training steps")
	var sets trainSetFlag
	fs.Var(&sets, "set", "set a config key: key=value (repeatable)")
	out := fs.String("out", "", "run folder to keep (default: a temporary folder, removed)")
	device := fs.String("device", "cpu", "auto, cpu, cuda or cuda:N")
	threads := fs.Int("threads", 0, "CPU threads for libtorch (0: one per core)")
	validBatch := fs.Int("valid-batch", 0, "streams of the validation (0: the training batch, as the reference)")
	noValid := fs.Bool("no-valid", false, "skip the validation")
	cpuProfile := fs.String("cpuprofile", "", "write a Go CPU profile of the training to this file (cgo time shows as runtime.cgocall)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *data == "" {
		return usageErrorf("--data is required")
	}
	cfg, err := lm.Preset(*preset)
	if err != nil {
		return usageErrorf("--preset: %v", err)
	}
	cfg.Steps, cfg.EvalEvery, cfg.CkptEvery = *steps, 0, 0
	for _, kv := range sets {
		k, v, _ := strings.Cut(kv, "=")
		if err := cfg.Set(strings.TrimSpace(k), strings.TrimSpace(v)); err != nil {
			return usageErrorf("--set %s: %v", kv, err)
		}
	}
	run := *out
	if run == "" {
		dir, err := os.MkdirTemp("", "xspan-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		run = dir + "/run"
	}

	defer torchrt.Lock()()
	n := torchrt.SetThreads(*threads)
	dev, note, err := torchrt.ParseDevice(*device)
	if err != nil {
		return usageErrorf("--device: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	if err := torchrt.ResetPeakRSS(); err != nil {
		fmt.Fprintln(os.Stderr, "note:", err)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	res, err := train.Run(ctx, cfg, *data, run, train.WithDevice(dev), train.WithOutput(os.Stderr),
		train.WithProgressBar(false), train.WithLogEvery(max(1, *steps/10)), train.WithoutFinalEval())
	if *cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return err
	}
	trainPeak := torchrt.PeakRSS()

	var valid *eval.Result
	var validPeak int64
	if !*noValid {
		m, ck, err := checkpoint.Load(run, dev)
		if err != nil {
			return err
		}
		r, err := dataset.Open(*data)
		if err != nil {
			return err
		}
		if err := torchrt.ResetPeakRSS(); err != nil {
			fmt.Fprintln(os.Stderr, "note:", err)
		}
		b := *validBatch
		if b == 0 {
			b = ck.Config.Batch
		}
		valid, err = eval.Run(ctx, m, r, "valid", eval.WithBatch(b))
		if err != nil {
			return err
		}
		validPeak = torchrt.PeakRSS()
	}

	c := cfg
	fmt.Printf("config: preset %s: %d layers, d %d, %d heads, FFN %d, block %d, batch %d, L %d, R %d, alpha %g, noisy %v, dropout %g, lr %g, warm-up %d, clip %g; %d steps; %d parameters\n",
		*preset, c.Layers, c.Dim, c.Heads, c.FFN, c.Block, c.Batch, c.MaxSpan, c.Ramp, c.Alpha, c.Noisy, c.Dropout, c.LR, c.Warmup, c.Clip, res.Steps, res.NumParams)
	fmt.Printf("machine: %s, %d intra-op threads, %s\n", note, n, torchrt.LibtorchVersion())
	msPerStep := 1000 * res.Seconds / float64(max(res.Steps, 1))
	fmt.Printf("train: %.0f tokens/s (%.1f ms per step of %d tokens), peak RSS %.0f MiB\n",
		res.TokPerSec, msPerStep, c.Batch*c.Block, mib(trainPeak))
	if valid != nil {
		fmt.Printf("valid: %.4f %s over the whole split (%d tokens, batch %d, memory carried, %.1fs), peak RSS %.0f MiB, mean live memory %s\n",
			valid.BPC, valid.Unit.Abbrev, valid.Tokens, valid.Batch, valid.Seconds, mib(validPeak), evalFloats(valid.MeanLive, "%.0f"))
	}
	if ref, ok := benchReference[*preset]; ok {
		fmt.Printf("reference (PyTorch 1.13.1, 2 vCPUs, SkylakeX kernels, measured 2026-12-03 on another machine of this kind): %.0f tokens/s, peak RSS %.0f MiB, valid bpc %s\n", ref.tokPerSec, ref.peakMiB, ref.bpc)
		fmt.Printf("ratio: %.2fx the tokens/s, %.2fx the peak memory\n", res.TokPerSec/ref.tokPerSec, mib(trainPeak)/ref.peakMiB)
	}
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
