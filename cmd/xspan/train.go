package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

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

func runTrain(e *env, args []string) error {
	fs := newFlagSet("train", "--data DIR --out RUN [--preset NAME | --config FILE] [--set key=value ...] [flags]", trainDescription)
	data := fs.String("data", "", "dataset `folder` (required, except with --resume: the checkpoint's)")
	out := fs.String("out", "", "run `folder` to write (required)")
	resume := fs.Bool("resume", false, "continue RUN's latest checkpoint exactly")
	initFrom := fs.String("init-from", "", "start from this checkpoint's weights (a run folder, RUN/best or a checkpoint folder)")
	keep := fs.Int("keep", 3, "latest checkpoints to keep besides the best (0: all)")
	logEvery := fs.Int("log-every", 10, "steps per metrics row and progress line")
	validBatch := fs.Int("valid-batch", 0, "streams of the validations during training (0: --batch)")
	validBlocks := fs.Int64("valid-blocks", 0, "validate on the first N blocks per stream only (0: the whole split)")
	noBar := fs.Bool("no-bar", false, "plain progress lines even on a terminal")
	var cf configFlags
	cf.register(fs, "tiny")
	fs.group("config")
	printConfig := fs.Bool("print-config", false, "print the resolved config as JSON and exit (needs no --data or --out):\n'xspan train --print-config --preset small > cfg.json', edit it, then train with --config cfg.json")
	fs.group("flags")
	var df deviceFlags
	df.register(fs)
	fs.group("distributed")
	nproc := fs.Int("nproc", 0, "start N ranks on this machine (distributed over Gloo, or NCCL with --device cuda: one GPU each by LOCAL_RANK)")
	distTimeout := fs.Duration("dist-timeout", dist.DefaultTimeout, "distributed runs: how long a rank waits for the others at the rendezvous and each collective before failing")
	if err := fs.noArgs(e, args); err != nil {
		return err
	}
	set := fs.visited()
	if *out == "" && (*resume || !*printConfig) {
		return usageErrorf("--out is required")
	}
	if *resume && (set["preset"] || set["config"] || set["init-from"]) {
		return usageErrorf("--resume takes the config from %s; --preset, --config and --init-from do not apply", filepath.Join(*out, checkpoint.ConfigName))
	}
	switch {
	case !*resume && !*printConfig && *data == "":
		return usageErrorf("--data is required")
	case *keep < 0:
		return usageErrorf("--keep %d: must not be negative", *keep)
	case *logEvery < 1:
		return usageErrorf("--log-every %d: need at least 1", *logEvery)
	case *validBatch < 0:
		return usageErrorf("--valid-batch %d: must not be negative", *validBatch)
	case *validBlocks < 0:
		return usageErrorf("--valid-blocks %d: must not be negative", *validBlocks)
	}
	if err := df.check(); err != nil {
		return err
	}
	if *nproc < 0 {
		return usageErrorf("--nproc %d: want ≥ 1", *nproc)
	}
	if *distTimeout <= 0 {
		return usageErrorf("--dist-timeout %v: must be positive", *distTimeout)
	}
	denv, launched, err := dist.FromEnv()
	if err != nil {
		return err
	}
	if *nproc > 1 && !launched && !*printConfig {
		return launchLocal(e, *nproc, args)
	}

	var cfg lm.Config
	switch {
	case *resume && launched && denv.Rank != 0 && !fileExists(filepath.Join(*out, checkpoint.ConfigName)):
		// A rank on another machine: the config comes from rank 0.
		if cfg, err = lm.Preset("tiny"); err != nil {
			return err
		}
	case *resume:
		if cfg, err = checkpoint.ReadRunConfig(*out); err != nil {
			return err
		}
	default:
		if cfg, err = cf.base(set); err != nil {
			return err
		}
	}
	if err := cf.apply(&cfg); err != nil {
		return err
	}
	if *data != "" {
		// A wrong dataset folder is the commonest mistake: say so before anything else.
		// The config then shows the dataset's vocabulary, as config.json will.
		r, err := dataset.Open(*data)
		if err != nil {
			return err
		}
		v, err := r.Vocab()
		if err != nil {
			return err
		}
		if cfg, err = train.ForData(cfg, v, *data); err != nil {
			return err
		}
	}
	if *printConfig {
		js, _ := json.MarshalIndent(cfg, "", "  ")
		_, err := fmt.Fprintf(e.stdout, "%s\n", js)
		return err
	}

	defer torchrt.Lock()()
	dev, note, err := df.open()
	if err != nil {
		return err
	}
	var group *dist.Group
	if launched {
		if dev.IsCuda() && (df.device == "cuda" || df.device == "auto") {
			// One GPU per local rank.
			if denv.LocalRank < torchrt.CUDADeviceCount() {
				dev = gotch.CudaBuilder(uint(denv.LocalRank))
			}
		}
		if group, err = joinFromEnv(context.Background(), dev.IsCuda(), dev.Value, *distTimeout); err != nil {
			return err
		}
		defer group.Close()
	}
	quiet := group != nil && group.Rank != 0 // rank 0 reports for all
	if !quiet {
		fmt.Fprintln(e.stderr, note)
		js, _ := json.Marshal(cfg)
		fmt.Fprintf(e.stderr, "config: %s\n", js)
	}

	ctx, stop := e.interruptible()
	defer stop()
	opts := []train.Option{
		train.WithDevice(dev), train.WithResume(*resume), train.WithKeep(*keep), train.WithLogEvery(*logEvery),
		train.WithValidBatch(*validBatch), train.WithValidBlocks(*validBlocks), train.WithProgressBar(!*noBar),
		train.WithOutput(e.stderr),
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
	w := e.stdout
	fmt.Fprintf(w, "trained %s: step %d, %d tokens; this run %d steps at %.0f tokens/s (%d parameters)\n",
		res.Run, res.Step, res.Tokens, res.Steps, res.TokPerSec, res.NumParams)
	if res.Valid != nil {
		fmt.Fprintf(w, "valid: %.4f %s (%s), %.4f bits/token over %d tokens\n", res.Valid.BPC, res.Valid.Unit.Abbrev, res.Valid.Unit.Name, res.Valid.BitsPerToken, res.Valid.Tokens)
	}
	fmt.Fprintf(w, "checkpoint: %s\n", res.Checkpoint)
	if res.Best != "" {
		fmt.Fprintf(w, "best: %s\n", res.Best)
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
