package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/sugarme/gotch"

	"xspan/checkpoint"
	"xspan/dataset"
	"xspan/dist"
	"xspan/internal/torchrt"
	"xspan/lm"
	"xspan/train"
)

func init() {
	register(command{name: "train", summary: "train an Expire-Span language model on a prepared dataset", run: runTrain})
}

const trainDescription = `
Trains a model on the train split of a dataset made by 'xspan prep' and writes the run
folder RUN: config.json (the resolved config, also printed at start), metrics.jsonl,
checkpoints/step-N (the last --keep, plus the best on validation) and best (a pointer to
the best checkpoint).

The config starts from --preset (or --config FILE, a JSON object with the config's
keys), then the flags below, then each --set key=value (keys are config.json's names).
With --resume it starts from RUN/config.json instead and continues the latest
checkpoint exactly; settings that change the model's shape are refused then.

Ctrl-C stops after the step under way and writes a checkpoint first. A NaN or infinite
loss stops the run before the update, leaving the last good checkpoint.

Distributed (data-parallel, over libtorch's c10d: Gloo on CPUs, NCCL on CUDA): started
by a launcher that sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT
(torchrun; or SLURM's SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID with MASTER_ADDR), each
process is a rank; --nproc N starts N ranks on this machine itself. --batch is the
global batch: each rank trains batch/WORLD_SIZE streams (in --accumulate micro-batches);
rank 0 writes the run folder. A rank that dies or hangs stops the others with an error
within --dist-timeout.`

// trainConfigFlags maps flags to config keys; a flag given on the command line sets its key.
var trainConfigFlags = []struct{ flag, key, usage string }{
	{"steps", "steps", "optimizer steps"},
	{"batch", "batch", "streams per step"},
	{"block", "block", "tokens per stream per step (M)"},
	{"lr", "lr", "peak learning rate"},
	{"warmup", "warmup", "linear warm-up steps"},
	{"schedule", "schedule", "learning-rate schedule after warm-up: constant, cosine or step"},
	{"clip", "clip", "gradient clipping by global norm (0: none)"},
	{"alpha", "alpha", "span-loss coefficient"},
	{"dropout", "dropout", "dropout rate"},
	{"accumulate", "accumulate", "micro-batches per step (gradient accumulation; must divide --batch)"},
	{"seed", "seed", "random seed (weights, dropout, span noise)"},
	{"eval-every", "eval_every", "steps between validations (0: at the end only)"},
	{"ckpt-every", "ckpt_every", "steps between checkpoints (0: at the end only)"},
}

// trainSetFlag is a repeatable key=value flag.
type trainSetFlag []string

func (s *trainSetFlag) String() string { return strings.Join(*s, " ") }
func (s *trainSetFlag) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("%q: want key=value", v)
	}
	*s = append(*s, v)
	return nil
}

func runTrain(args []string) error {
	fs := newFlagSet("train", "--data DIR --out RUN [--preset NAME | --config FILE] [--set key=value ...] [flags]", trainDescription)
	data := fs.String("data", "", "dataset folder (required, except with --resume: the checkpoint's)")
	out := fs.String("out", "", "run folder to write (required)")
	preset := fs.String("preset", "tiny", "preset config: "+strings.Join(lm.PresetNames(), ", "))
	configFile := fs.String("config", "", "config JSON file (instead of --preset)")
	var sets trainSetFlag
	fs.Var(&sets, "set", "set a config key: key=value (repeatable)")
	for _, f := range trainConfigFlags {
		fs.String(f.flag, "", f.usage+" (config key "+f.key+")")
	}
	device := fs.String("device", "auto", "auto, cpu, cuda or cuda:N")
	threads := fs.Int("threads", 0, "CPU threads for libtorch (0: one per core)")
	resume := fs.Bool("resume", false, "continue RUN's latest checkpoint exactly")
	initFrom := fs.String("init-from", "", "start from this checkpoint's weights (a run folder, RUN/best or a checkpoint folder)")
	keep := fs.Int("keep", 3, "latest checkpoints to keep besides the best (0: all)")
	logEvery := fs.Int("log-every", 10, "steps per metrics row and progress line")
	validBatch := fs.Int("valid-batch", 0, "streams of the validations during training (0: --batch)")
	validBlocks := fs.Int64("valid-blocks", 0, "validate on the first N blocks per stream only (0: the whole split)")
	noBar := fs.Bool("no-bar", false, "plain progress lines even on a terminal")
	nproc := fs.Int("nproc", 0, "start N ranks on this machine (distributed over Gloo, or NCCL with --device cuda: one GPU each by LOCAL_RANK)")
	distTimeout := fs.Duration("dist-timeout", dist.DefaultTimeout, "distributed runs: how long a rank waits for the others at the rendezvous and each collective before failing")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q", fs.Arg(0))
	}
	if *out == "" {
		return usageErrorf("--out is required")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *resume && (set["preset"] || set["config"] || set["init-from"]) {
		return usageErrorf("--resume takes the config from %s; --preset, --config and --init-from do not apply", filepath.Join(*out, checkpoint.ConfigName))
	}
	if set["preset"] && set["config"] {
		return usageErrorf("give --preset or --config, not both")
	}
	if !*resume && *data == "" {
		return usageErrorf("--data is required")
	}
	_, launched, err := dist.FromEnv()
	if err != nil {
		return err
	}
	if *nproc > 1 && !launched {
		return launchLocal(*nproc, args)
	}
	if *nproc < 0 {
		return usageErrorf("--nproc %d: want ≥ 1", *nproc)
	}

	var cfg lm.Config
	switch {
	case *resume && launched && os.Getenv("RANK") != "0" && !fileExists(filepath.Join(*out, checkpoint.ConfigName)):
		// A rank on another machine: the config comes from rank 0.
		cfg, err = lm.Preset("tiny")
	case *resume:
		cfg, err = checkpoint.ReadRunConfig(*out)
	case *configFile != "":
		var b []byte
		if b, err = os.ReadFile(*configFile); err == nil {
			if cfg, err = lm.ParseConfig(b); err != nil {
				err = fmt.Errorf("%s: %w", *configFile, err)
			}
		}
	default:
		cfg, err = lm.Preset(*preset)
		if err != nil {
			return usageErrorf("--preset: %v", err)
		}
	}
	if err != nil {
		return err
	}
	for _, f := range trainConfigFlags {
		if set[f.flag] {
			if err := cfg.Set(f.key, fs.Lookup(f.flag).Value.String()); err != nil {
				return usageErrorf("--%s: %v", f.flag, err)
			}
		}
	}
	for _, kv := range sets {
		k, v, _ := strings.Cut(kv, "=")
		if err := cfg.Set(strings.TrimSpace(k), strings.TrimSpace(v)); err != nil {
			return usageErrorf("--set %s: %v", kv, err)
		}
	}

	if *data != "" {
		// A wrong dataset folder is the commonest mistake: say so before anything else.
		if _, err := dataset.Open(*data); err != nil {
			return err
		}
	}

	defer torchrt.Lock()()
	n := torchrt.SetThreads(*threads)
	dev, note, err := torchrt.ParseDevice(*device)
	if err != nil {
		return usageErrorf("--device: %v", err)
	}
	var group *dist.Group
	if launched {
		if dev.IsCuda() && *device == "cuda" || *device == "auto" && dev.IsCuda() {
			// One GPU per local rank.
			if c, _, _ := dist.FromEnv(); c.LocalRank < torchrt.CUDADeviceCount() {
				dev = gotch.CudaBuilder(uint(c.LocalRank))
			}
		}
		if group, err = joinFromEnv(context.Background(), dev.IsCuda(), dev.Value, *distTimeout); err != nil {
			return err
		}
		defer group.Close()
	}
	quiet := group != nil && group.Rank != 0
	if !quiet {
		fmt.Fprintf(os.Stderr, "%s; %d threads\n", note, n)
		js, _ := json.Marshal(cfg)
		fmt.Fprintf(os.Stderr, "config: %s\n", js)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills at once
	}()
	opts := []train.Option{
		train.WithDevice(dev), train.WithResume(*resume), train.WithKeep(*keep), train.WithLogEvery(*logEvery),
		train.WithValidBatch(*validBatch), train.WithValidBlocks(*validBlocks), train.WithProgressBar(!*noBar),
	}
	if *initFrom != "" {
		opts = append(opts, train.WithInitFrom(*initFrom))
	}
	if group != nil {
		opts = append(opts, train.WithGroup(group))
	}
	res, err := train.Run(ctx, cfg, *data, *out, opts...)
	if err != nil {
		if group != nil && !errors.Is(err, train.ErrInterrupted) {
			group.Abandon() // the peers may be gone: leave without waiting on them
			return fmt.Errorf("rank %d: %w", group.Rank, err)
		}
		return err
	}
	if quiet {
		return nil
	}
	fmt.Printf("trained %s: step %d, %d tokens; this run %d steps at %.0f tokens/s (%d parameters)\n",
		res.Run, res.Step, res.Tokens, res.Steps, res.TokPerSec, res.NumParams)
	if res.Valid != nil {
		fmt.Printf("valid: %.4f %s (%s), %.4f bits/token over %d tokens\n", res.Valid.BPC, res.Valid.Unit.Abbrev, res.Valid.Unit.Name, res.Valid.BitsPerToken, res.Valid.Tokens)
	}
	fmt.Printf("checkpoint: %s\n", res.Checkpoint)
	if res.Best != "" {
		fmt.Printf("best: %s\n", res.Best)
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
