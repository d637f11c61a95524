package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"xspan/checkpoint"
	"xspan/dataset"
	"xspan/eval"
	"xspan/internal/torchrt"
)

func init() {
	register(command{name: "eval", summary: "measure a checkpoint's loss and bits per character on a split", run: runEval})
}

const evalDescription = `
Reads a whole split in order with the memory carried from block to block, and prints
the loss (nats per token), bits per token, and bpc in the dataset's unit: bits per byte
for byte vocabularies (what the enwik8 literature reports), bits per character for char
vocabularies, bits per original character for tokenizer.json vocabularies. Also the
tokens scored and the mean live memory per layer.

--ckpt is a run folder (its latest checkpoint), RUN/best, or a checkpoint folder.
With batch 1 (the default) the split is one stream, every token after the first is
scored, and memories are dropped at the exact step they expire. Batch B cuts it into B
streams, each starting with an empty memory, and leaves each stream's tail unscored.

On a dataset with a scored mask (the copy task, 'xspan prep --synthetic copy') the loss
and bpc count the scored (copied) tokens only, and eval also reports copy accuracy: the
fraction of scored tokens predicted correctly by greedy decoding with teacher forcing
(the argmax of the model's distribution at that position, given the true prefix, equals
the true token), and the exact-match rate: the fraction of examples whose every scored
token is right, over the complete examples only (those whose scored tokens were all
evaluated; with --batch B a stream's cut tail leaves some out). Chance is 1/alphabet.

--dump FILE writes one JSON object per token: its position, id and text, the bits to
predict it, and per layer the span the model gave it as a memory. (With --dump the model
runs a path that returns spans but not predictions: no copy accuracy then.)`

func runEval(e *env, args []string) error {
	fs := newFlagSet("eval", "--ckpt PATH_OR_RUN [--data DIR] [--split test] [flags]", evalDescription)
	ckpt := fs.String("ckpt", "", "checkpoint: run folder, RUN/best or checkpoint folder (required)")
	data := fs.String("data", "", "dataset folder (default: the one the checkpoint was trained on)")
	split := fs.String("split", "test", "split to evaluate: train, valid or test")
	batch := fs.Int("batch", 1, "parallel streams")
	maxBlocks := fs.Int64("max-blocks", 0, "evaluate only the first N blocks of each stream (0: all)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	dump := fs.String("dump", "", "write per-token bits and spans as JSONL to this file (batch 1)")
	var df deviceFlags
	df.register(fs)
	if err := fs.noArgs(e, args); err != nil {
		return err
	}
	if *ckpt == "" {
		return usageErrorf("--ckpt is required")
	}
	if *batch < 1 {
		return usageErrorf("--batch %d: want ≥ 1", *batch)
	}
	if *maxBlocks < 0 {
		return usageErrorf("--max-blocks %d: must not be negative (0: all)", *maxBlocks)
	}
	if *dump != "" && *batch != 1 {
		return usageErrorf("--dump needs --batch 1")
	}
	if err := df.check(); err != nil {
		return err
	}
	// The dump's file is made before the evaluation, so that a bad path fails first.
	var tmp *os.File
	if *dump != "" {
		if st, err := os.Stat(*dump); err == nil && st.IsDir() {
			return usageErrorf("--dump %s is a folder: want the path of a file to write", *dump)
		}
		var err error
		if tmp, err = os.CreateTemp(filepath.Dir(*dump), "."+filepath.Base(*dump)+".tmp*"); err != nil {
			return fmt.Errorf("--dump: %w", err)
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
	}
	defer torchrt.Lock()()
	dev, note, err := df.open()
	if err != nil {
		return err
	}
	m, ck, err := checkpoint.Load(*ckpt, dev)
	if err != nil {
		return err
	}
	dir := *data
	if dir == "" {
		dir = ck.Header.Data.Dir
	}
	r, err := dataset.Open(dir)
	if err != nil {
		return err
	}
	if err := ck.CheckVocab(r); err != nil {
		return err
	}
	ctx, stop := e.interruptible()
	defer stop()
	opts := []eval.Option{eval.WithBatch(*batch), eval.WithMaxBlocks(*maxBlocks)}
	if tmp != nil {
		opts = append(opts, eval.WithDump(tmp, ck.Vocab))
	}
	res, err := eval.Run(ctx, m, r, *split, opts...)
	if err != nil {
		return err
	}
	if tmp != nil {
		if err := tmp.Close(); err != nil {
			return err
		}
		if err := os.Rename(tmp.Name(), *dump); err != nil {
			return err
		}
	}
	if *asJSON {
		out := struct {
			Checkpoint string `json:"checkpoint"`
			Step       int64  `json:"step"`
			Data       string `json:"data"`
			*eval.Result
		}{ck.Path, ck.Step, dir, res}
		js, _ := json.MarshalIndent(out, "", "  ")
		_, err := fmt.Fprintln(e.stdout, string(js))
		return err
	}
	w := e.stdout
	fmt.Fprintln(e.stderr, note)
	fmt.Fprintf(w, "checkpoint %s (step %d), %s split of %s\n", ck.Path, ck.Step, res.Split, dir)
	fmt.Fprintf(w, "tokens      %d scored (%d not), batch %d, %.1fs\n", res.Tokens, res.Skipped, res.Batch, res.Seconds)
	fmt.Fprintf(w, "loss        %.4f nats/token\n", res.Loss)
	fmt.Fprintf(w, "bits/token  %.4f\n", res.BitsPerToken)
	fmt.Fprintf(w, "%-11s %.4f %s\n", res.Unit.Abbrev, res.BPC, res.Unit.Name)
	fmt.Fprintf(w, "live memory %s keys per layer (mean over blocks, per stream)\n", evalFloats(res.MeanLive, "%.1f"))
	if len(res.MeanSpan) > 0 && res.MeanSpan[0] > 0 {
		fmt.Fprintf(w, "mean span   %s per layer\n", evalFloats(res.MeanSpan, "%.1f"))
	}
	if a := res.Copy; a != nil {
		fmt.Fprintf(w, "copy acc    %.4f (%d of %d scored tokens right, greedy argmax given the true prefix", a.Accuracy, a.Correct, a.Scored)
		if a.Chance > 0 {
			fmt.Fprintf(w, "; chance %.4f", a.Chance)
		}
		fmt.Fprintln(w, ")")
		if a.Examples > 0 {
			fmt.Fprintf(w, "exact match %.4f (%d of %d complete examples all right)\n", a.ExactRate, a.Exact, a.Examples)
		}
	}
	if *dump != "" {
		fmt.Fprintf(w, "dump        %s\n", *dump)
	}
	return nil
}

func evalFloats(xs []float64, format string) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(s, " ")
}
