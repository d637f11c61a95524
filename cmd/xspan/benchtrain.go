package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

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
// 2 vCPUs, the data above), as the README's Results give them.
var benchReference = map[string]struct {
	tokPerSec float64
	peakMiB   float64
	bpc       string
}{
	"tiny":  {4400, 742, "2.84 ± 0.03 after 200 steps"},
	"small": {1080, 2355, "not measured"},
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
	refCmd := fs.String("reference-cmd", "", "after xspan, run this shell command (e.g. the reference implementation installed locally, on the same data and settings) and measure it the same way: time per training step from its log, peak RSS; print the ratios")
	refStep := fs.String("reference-step-regex", `ms/batch:\s*([0-9.]+)`, "regular expression whose first group is the reference's milliseconds per training step in its output (the mean of all matches counts)")
	refBPC := fs.String("reference-bpc-regex", `val:\s*([0-9.]+)\s*bpc`, "regular expression whose first group is the reference's validation bpc (the last match counts)")
	refTokens := fs.Int("reference-tokens-per-step", 0, "tokens per step of the reference (0: batch × block of this config)")
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
	ceiling := matmulCeiling(dev)

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
	fmt.Printf("machine: %s, %d intra-op threads, %s, BLAS kernels %s, attention %s\n", note, n, torchrt.LibtorchVersion(), blasKernels(), c.EffectiveAttention())
	msPerStep := 1000 * res.Seconds / float64(max(res.Steps, 1))
	fmt.Printf("train: %.0f tokens/s (%.1f ms per step of %d tokens), peak RSS %.0f MiB\n",
		res.TokPerSec, msPerStep, c.Batch*c.Block, mib(trainPeak))
	if valid != nil {
		fmt.Printf("valid: %.4f %s over the whole split (%d tokens, batch %d, memory carried, %.1fs), peak RSS %.0f MiB, mean live memory %s\n",
			valid.BPC, valid.Unit.Abbrev, valid.Tokens, valid.Batch, valid.Seconds, mib(validPeak), evalFloats(valid.MeanLive, "%.0f"))
	}
	live := float64(c.EffectiveInitCache())
	if valid != nil && len(valid.MeanLive) > 0 {
		live = 0
		for _, l := range valid.MeanLive {
			live += l / float64(len(valid.MeanLive))
		}
	}
	// Model FLOPs per token, forward and backward: 6 per parameter (the weights' products)
	// and 12·d per key attended (q·k and a·v, each 2·d forward and twice that backward)
	// per layer, over the mean live memory plus the block (gpu-check.sh's count).
	flopTok := 6*float64(res.NumParams) + float64(c.Layers)*12*float64(c.Dim)*(live+float64(c.Block))
	if ceiling > 0 {
		fmt.Printf("model FLOPs: %.1f MFLOP per token (6 × %d parameters + %d layers × 12 × %d × (%.0f live + %d block)): %.1f GFLOP/s, %.1f%% of the matrix-product ceiling of %.1f GFLOP/s measured in this run (2048×2048 float32)\n",
			flopTok/1e6, res.NumParams, c.Layers, c.Dim, live, c.Block, res.TokPerSec*flopTok/1e9, 100*res.TokPerSec*flopTok/1e9/ceiling, ceiling)
	}
	if *refCmd != "" {
		tokens := *refTokens
		if tokens <= 0 {
			tokens = c.Batch * c.Block
		}
		ref, err := runReference(ctx, *refCmd, *refStep, *refBPC)
		if err != nil {
			return err
		}
		refTPS := float64(tokens) / (ref.msPerStep / 1000)
		fmt.Printf("reference (--reference-cmd, measured in this run): %.0f tokens/s (%.1f ms per step of %d tokens, mean of %d logged figures), peak RSS %.0f MiB, %.0fs in all, valid bpc %s (its own validation)\n",
			refTPS, ref.msPerStep, tokens, ref.steps, mib(ref.peakRSS), ref.seconds, ref.bpc)
		fmt.Printf("ratio (measured in this run): %.2fx the tokens/s, %.2fx the peak memory\n", res.TokPerSec/refTPS, mib(trainPeak)/mib(ref.peakRSS))
		return nil
	}
	if ref, ok := benchReference[*preset]; ok {
		fmt.Printf("reference (figures from the README, PyTorch 1.13.1, 2 vCPUs; --reference-cmd measures it here): %.0f tokens/s, peak RSS %.0f MiB, valid bpc %s\n", ref.tokPerSec, ref.peakMiB, ref.bpc)
		fmt.Printf("ratio: %.2fx the tokens/s, %.2fx the peak memory\n", res.TokPerSec/ref.tokPerSec, mib(trainPeak)/ref.peakMiB)
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
