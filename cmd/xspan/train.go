package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"xspan/checkpoint"
	"xspan/dataset"
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
loss stops the run before the update, leaving the last good checkpoint.`

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

	var cfg lm.Config
	var err error
	if *resume {
		if cfg, err = checkpoint.ReadRunConfig(*out); err != nil {
			return err
		}
	} else if cfg, err = cf.base(set); err != nil {
		return err
	}
	if err := cf.apply(&cfg); err != nil {
		return err
	}
	if *printConfig {
		js, _ := json.MarshalIndent(cfg, "", "  ")
		_, err := fmt.Fprintf(e.stdout, "%s\n", js)
		return err
	}

	if *data != "" {
		// A wrong dataset folder is the commonest mistake: say so before anything else.
		if _, err := dataset.Open(*data); err != nil {
			return err
		}
	}

	defer torchrt.Lock()()
	dev, note, err := df.open()
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stderr, note)
	js, _ := json.Marshal(cfg)
	fmt.Fprintf(e.stderr, "config: %s\n", js)

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
	res, err := train.Run(ctx, cfg, *data, *out, opts...)
	if err != nil {
		return err
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
