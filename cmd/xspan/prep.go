package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"xspan/dataset"
)

func init() {
	register(command{name: "prep", summary: "turn a corpus into compressed token shards", run: runPrep})
}

// listFlag is a flag that may be repeated; each value may also hold several
// comma-free paths separated by the shell.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

const prepDescription = `
Reads enwik8 (enwik8.zip or the raw file: 90M/5M/5M bytes train/valid/test) or UTF-8
text (files, folders or globs, split by --split in input order, or given per split by
--train/--valid/--test), tokenizes it and writes DIR: manifest.json and zstd-compressed
token shards. Gzip and zstd inputs are decompressed by magic number. The folder appears
only when complete; an existing one needs --force.

--vocab is byte (256 ids), char (the train split's characters plus <unk>) or the path
of a HuggingFace tokenizer.json; the default is byte for enwik8, char for text.

--synthetic copy generates the copy task instead of reading a corpus: each example is a
random string of --seq-len symbols over --alphabet symbols (a-z, A-Z, 0-9), '<', --gap
'.' fillers, '>', then the string again, as in "cabd<......>cabd". Only the copied
string is scored: the dataset records a scored mask and its example length, so
training starts streams at example boundaries and counts only the copied tokens.
Train has --examples examples; valid and test --eval-examples each.`

func runPrep(e *env, args []string) error {
	fs := newFlagSet("prep", "--input PATH... --out DIR [flags]", prepDescription)
	var inputs, train, valid, test listFlag
	fs.Var(&inputs, "input", "input file, folder or glob (repeatable; extra arguments are inputs too)")
	out := fs.String("out", "", "dataset folder to write (required)")
	format := fs.String("format", "auto", "input format: auto, enwik8 or text")
	vocab := fs.String("vocab", "", "vocabulary: byte, char or a tokenizer.json path (default byte for enwik8, char for text)")
	split := fs.String("split", "0.9,0.05,0.05", "train,valid,test fractions of text input (contiguous, in input order)")
	fs.Var(&train, "train", "input of the train split, instead of --split (repeatable)")
	fs.Var(&valid, "valid", "input of the valid split (repeatable)")
	fs.Var(&test, "test", "input of the test split (repeatable)")
	newlines := fs.String("newlines", "keep", "keep or drop newline characters before tokenizing")
	encoding := fs.String("encoding", "utf-8", "the text inputs' encoding: utf-8, latin-1 or cp1252 (turned into UTF-8 first)")
	invalid := fs.String("invalid", "error", "invalid UTF-8 in text inputs: error, replace (with U+FFFD) or skip; the manifest counts them")
	level := fs.String("level", "default", "zstd level: fastest, default, better, best or 1-22")
	shardTokens := fs.Int("shard-tokens", dataset.DefaultShardTokens, "tokens per shard")
	force := fs.Bool("force", false, "replace an existing dataset folder")
	synthetic := fs.String("synthetic", "", "generate a synthetic task instead of reading input: copy")
	def := dataset.DefaultCopyTask()
	seqLen := fs.Int("seq-len", def.SeqLen, "copy task: length of the string to copy")
	gap := fs.Int("gap", def.Gap, "copy task: filler tokens between the string and the go marker")
	alphabet := fs.Int("alphabet", def.Alphabet, fmt.Sprintf("copy task: symbols the string is drawn from (2 to %d)", dataset.MaxCopyAlphabet))
	examples := fs.Int("examples", def.Examples, "copy task: examples in the train split")
	evalExamples := fs.Int("eval-examples", 0, "copy task: examples in valid and in test (0: a tenth of --examples, at least 1)")
	seed := fs.Uint64("seed", def.Seed, "copy task: random seed (the same seed gives the same dataset)")
	pos, err := fs.parse(e, args)
	if err != nil {
		return err
	}
	inputs = append(inputs, pos...)
	if *out == "" {
		return usageErrorf("--out is required")
	}
	set := fs.visited()
	lvl, err := parseLevel(*level)
	if err != nil {
		return usageErrorf("--level: %w", err)
	}
	if *synthetic != "" || set["synthetic"] {
		if *synthetic != dataset.TaskCopy {
			return usageErrorf("--synthetic %q: want copy", *synthetic)
		}
		for _, name := range []string{"input", "format", "vocab", "split", "train", "valid", "test", "newlines", "encoding", "invalid"} {
			if set[name] {
				return usageErrorf("--%s does not apply to --synthetic copy", name)
			}
		}
		if len(inputs) > 0 {
			return usageErrorf("--synthetic copy takes no input, got %q", inputs[0])
		}
		task := dataset.CopyTask{SeqLen: *seqLen, Gap: *gap, Alphabet: *alphabet, Examples: *examples,
			EvalExamples: *evalExamples, Seed: *seed}
		return prepCopy(e, *out, task, lvl, *shardTokens, *force)
	}
	for _, name := range []string{"seq-len", "gap", "alphabet", "examples", "eval-examples", "seed"} {
		if set[name] {
			return usageErrorf("--%s needs --synthetic copy", name)
		}
	}
	opts := []dataset.Option{
		dataset.WithFormat(*format), dataset.WithVocab(*vocab), dataset.WithNewlines(*newlines),
		dataset.WithEncoding(*encoding), dataset.WithInvalid(*invalid),
		dataset.WithLevel(lvl), dataset.WithShardTokens(*shardTokens), dataset.WithForce(*force),
		dataset.WithLogf(func(f string, a ...any) { fmt.Fprintf(e.stderr, "prep: "+f+"\n", a...) }),
		dataset.WithProgress(newProgress(e.stderr, "prep")),
	}
	if set["split"] {
		fr, err := parseSplit(*split)
		if err != nil {
			return usageErrorf("--split: %w", err)
		}
		opts = append(opts, dataset.WithSplit(fr[0], fr[1], fr[2]))
	}
	if len(train)+len(valid)+len(test) > 0 {
		if len(train) == 0 {
			return usageErrorf("--valid and --test need --train")
		}
		if len(inputs) > 0 || set["split"] {
			return usageErrorf("give either --input (with --split) or --train/--valid/--test")
		}
		opts = append(opts, dataset.WithSplitFiles(train, valid, test))
	} else if len(inputs) == 0 {
		return usageErrorf("no input: give --input PATH (or --train/--valid/--test)")
	}
	// Bad option values (say --format or --newlines) are usage errors.
	if err := dataset.CheckOptions(opts...); err != nil {
		return usageErrorf("%w", err)
	}
	ctx, stop := e.interruptible()
	defer stop()
	start := time.Now()
	m, err := dataset.Prep(ctx, *out, inputs, opts...)
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	var in int64
	for _, s := range m.Splits {
		in += s.Source.Bytes
	}
	fmt.Fprintf(e.stdout, "wrote %s in %.1fs (%.1f MB/s): %s vocabulary of %d ids, newlines %s\n",
		*out, secs, float64(in)/1e6/secs, m.Vocab.Kind, m.Vocab.Size, m.Newlines)
	for _, s := range m.Splits {
		fmt.Fprintf(e.stdout, "  %-6s %12d tokens  %3d shards  ratio %.2f\n", s.Name, s.Tokens, len(s.Shards), ratio(m, &s))
	}
	return nil
}

// prepCopy writes a copy-task dataset.
func prepCopy(e *env, out string, task dataset.CopyTask, level, shardTokens int, force bool) error {
	if err := task.Check(); err != nil {
		return usageErrorf("%w", err)
	}
	opts := []dataset.Option{
		dataset.WithLevel(level), dataset.WithShardTokens(shardTokens), dataset.WithForce(force),
		dataset.WithLogf(func(f string, a ...any) { fmt.Fprintf(e.stderr, "prep: "+f+"\n", a...) }),
		dataset.WithProgress(newProgress(e.stderr, "prep")),
	}
	if err := dataset.CheckOptions(opts...); err != nil {
		return usageErrorf("%w", err)
	}
	ctx, stop := e.interruptible()
	defer stop()
	start := time.Now()
	m, err := dataset.PrepCopy(ctx, out, task, opts...)
	if err != nil {
		return err
	}
	t := m.Task
	fmt.Fprintf(e.stdout, "wrote %s in %.1fs: copy task, strings of %d over %d symbols, gap %d, examples of %d tokens (copy at offset %d), seed %d\n",
		out, time.Since(start).Seconds(), t.SeqLen, t.Alphabet, t.Gap, t.ExampleLen, t.CopyOffset, t.Seed)
	for _, s := range m.Splits {
		fmt.Fprintf(e.stdout, "  %-6s %12d tokens  %8d examples  %10d scored  %3d shards  ratio %.2f\n",
			s.Name, s.Tokens, s.Tokens/s.ExampleLen, s.Scored, len(s.Shards), ratio(m, &s))
	}
	return nil
}

func ratio(m *dataset.Manifest, s *dataset.Split) float64 {
	var stored int64
	for _, sh := range s.Shards {
		stored += sh.Bytes
	}
	if stored == 0 {
		return 0
	}
	return float64(s.Tokens*int64(m.TokenWidth)) / float64(stored)
}

func parseLevel(s string) (int, error) {
	switch s {
	case "fastest":
		return 1, nil
	case "default":
		return 3, nil
	case "better":
		return 7, nil
	case "best":
		return 11, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 22 {
		return 0, fmt.Errorf("%q: want fastest, default, better, best or 1-22", s)
	}
	return n, nil
}

func parseSplit(s string) ([3]float64, error) {
	var f [3]float64
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return f, fmt.Errorf("%q: want three fractions train,valid,test", s)
	}
	for i, p := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return f, fmt.Errorf("%q: %q is not a number", s, p)
		}
		f[i] = v
	}
	return f, nil
}

// newProgress returns a progress function: a bar with throughput and ETA when stderr
// is a terminal, else a plain line every few seconds.
func newProgress(w io.Writer, what string) func(done, total int64) {
	if isTerminal(w) {
		var bar *progressbar.ProgressBar
		return func(done, total int64) {
			if bar == nil {
				bar = progressbar.NewOptions64(total,
					progressbar.OptionSetWriter(w),
					progressbar.OptionSetDescription(what),
					progressbar.OptionShowBytes(true),
					progressbar.OptionSetPredictTime(true),
					progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionClearOnFinish())
			}
			_ = bar.Set64(done)
			if done >= total {
				_ = bar.Finish()
			}
		}
	}
	start := time.Now()
	last := start
	return func(done, total int64) {
		now := time.Now()
		if now.Sub(last) < 5*time.Second && done < total {
			return
		}
		if done >= total && now.Sub(start) < 5*time.Second {
			return // short runs need no progress line
		}
		last = now
		el := now.Sub(start).Seconds()
		rate := float64(done) / el
		eta := "?"
		if rate > 0 {
			eta = time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
		}
		fmt.Fprintf(w, "%s: %.1f of %.1f MB (%.0f%%), %.1f MB/s, ETA %s\n",
			what, float64(done)/1e6, float64(total)/1e6, 100*float64(done)/float64(max(total, 1)), rate/1e6, eta)
	}
}
