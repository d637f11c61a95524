package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"

	"golang.org/x/term"

	"xspan/bench"
	"xspan/checkpoint"
	"xspan/eval"
	"xspan/generate"
	"xspan/internal/torchrt"
	"xspan/lm"
	"xspan/serve"
	"xspan/spanview"
	"xspan/tokenize"
)

func init() {
	register(command{name: "generate", summary: "sample text from a checkpoint with pruned memory (or benchmark it)", run: runGenerate})
}

const generateDescription = `
Feeds the prompt (--prompt, --prompt-file, or standard input) to the model in blocks, then
samples tokens one at a time and streams the text to stdout as it comes. Every memory is
dropped at the exact step it expires. The same --seed, checkpoint and prompt give the same
text; --temperature 0 is greedy. --seed -1 (the default) picks a seed and prints it.

The model is a checkpoint (--ckpt: a run folder for its latest checkpoint, RUN/best, or
one checkpoint folder), or a randomly initialised preset (--preset tiny --random, byte
vocabulary) for trying the pipeline without training.

Prompt characters outside a char vocabulary are an error naming them; --unk replace maps
them to <unk> with a warning instead. An empty prompt starts from a newline (where the
vocabulary has one; else token 0).

--stop S (repeatable) ends a sample at the first S in its text, which is cut before it.
--logprobs FILE writes one JSON line per token: its log-probability under the model and
the 5 most likely tokens at its step ("-": standard error).

--bench N generates N tokens twice, with pruning and with pruning off, and prints
per-token time and live memory at --bench-marks (the flatness benchmark).`

// modelFlags choose the model that generate, serve and bench gen load, and its device.
type modelFlags struct {
	ckpt   string
	preset string
	random bool
	deviceFlags
}

func (f *modelFlags) register(fs *flagSet) {
	fs.group("model")
	fs.StringVar(&f.ckpt, "ckpt", "", "checkpoint: a run folder (latest), RUN/best, or a checkpoint folder")
	fs.StringVar(&f.preset, "preset", "", "with --random: the preset whose shape to initialise ("+strings.Join(lm.PresetNames(), ", ")+")")
	fs.BoolVar(&f.random, "random", false, "use a randomly initialised --preset model with a byte vocabulary instead of a checkpoint")
	f.deviceFlags.register(fs)
}

func (f *modelFlags) check() error {
	switch {
	case f.ckpt != "" && (f.random || f.preset != ""):
		return usageErrorf("--ckpt and --preset/--random exclude each other")
	case f.ckpt == "" && !f.random:
		return usageErrorf("give --ckpt PATH_OR_RUN, or --preset NAME --random for an untrained model")
	case f.random && f.preset == "":
		return usageErrorf("--random needs --preset (%s)", strings.Join(lm.PresetNames(), ", "))
	}
	return f.deviceFlags.check()
}

// load loads the model; the caller holds its OS thread.
func (f *modelFlags) load(logf func(string, ...any)) (*lmModel, error) {
	dev, note, err := f.deviceFlags.open()
	if err != nil {
		return nil, err
	}
	logf("%s", note)
	if f.random {
		cfg, err := lm.Preset(f.preset)
		if err != nil {
			return nil, usageErrorf("--preset: %v", err)
		}
		cfg.Vocab = 256
		torchrt.Seed(cfg.Seed) // the same random model every time
		m, err := lm.New(cfg, dev)
		if err != nil {
			return nil, err
		}
		logf("model: preset %s, random weights (seed %d), %d parameters, byte vocabulary", f.preset, cfg.Seed, m.NumParams())
		return &lmModel{m: m, vocab: tokenize.Byte{}, pruning: true,
			info: map[string]any{"preset": f.preset, "random_init": true, "config": cfg, "params": m.NumParams(), "device": torchrt.DeviceName(dev)}}, nil
	}
	m, ck, err := checkpoint.Load(f.ckpt, dev)
	if err != nil {
		return nil, err
	}
	logf("model: %s, step %d, %d parameters, %s vocabulary of %d", ck.Path, ck.Step, m.NumParams(), ck.Vocab.Kind(), ck.Vocab.Size())
	return &lmModel{m: m, vocab: ck.Vocab, pruning: true, start: ck.Header.StartID,
		info: map[string]any{"checkpoint": ck.Path, "step": ck.Step, "tokens": ck.Tokens, "config": ck.Config, "params": m.NumParams(), "device": torchrt.DeviceName(dev)}}, nil
}

// lmModel serves an lm.Model as a generate.Model, and as a generate.StartIDer with its
// checkpoint's start id (checkpoint.Header.StartID).
type lmModel struct {
	m       *lm.Model
	vocab   tokenize.Vocab
	info    map[string]any
	pruning bool
	start   *int64 // the checkpoint's start id; nil: none (a random model, an older checkpoint)
}

func (l *lmModel) NewStepper() (generate.Stepper, error) { return l.stepper(l.pruning), nil }
func (l *lmModel) Vocab() tokenize.Vocab                 { return l.vocab }
func (l *lmModel) Info() any                             { return l.info }

// StartID is the start id of the model's checkpoint: the token its training texts begin
// with, which generate.StartToken starts an empty prompt from where the vocabulary has
// no single-token newline.
func (l *lmModel) StartID() (int64, bool) {
	if l.start == nil {
		return 0, false
	}
	return *l.start, true
}

// Score runs a text through the model for POST /v1/score and xspan spans.
func (l *lmModel) Score(ctx context.Context, ids []int64) (*spanview.Score, error) {
	s, err := eval.ScoreText(ctx, l.m, l.vocab, ids)
	if err != nil {
		return nil, err
	}
	s.Model = strings.TrimPrefix(defaultModelName(l.info), "xspan-")
	if step, ok := l.info["step"].(int64); ok {
		s.Model += fmt.Sprintf(", step %d", step)
	}
	return s, nil
}

func (l *lmModel) stepper(pruning bool) *lmStepper {
	d := l.m.NewDecoder()
	d.SetPruning(pruning)
	return &lmStepper{Decoder: d}
}

// bytesPerMemory estimates one memory's size in one layer: its hidden state, key and
// value, each dim float32s.
func (l *lmModel) bytesPerMemory() int64 { return 3 * 4 * int64(l.m.Cfg.Dim) }

// lmStepper turns a failed libtorch op in the decoder (a panic) into that call's error.
type lmStepper struct{ *lm.Decoder }

func (s *lmStepper) Feed(tokens []int64) (logp []float32, err error) {
	defer torchrt.Recover(&err)
	return s.Decoder.Feed(tokens)
}

// readPrompt returns the prompt from --prompt, --prompt-file or standard input.
func readPrompt(prompt, file string, set map[string]bool, stdin io.Reader) ([]byte, error) {
	switch {
	case set["prompt"] && file != "":
		return nil, usageErrorf("--prompt and --prompt-file exclude each other")
	case set["prompt"]:
		return []byte(prompt), nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--prompt-file: %w", err)
		}
		return b, nil
	}
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return nil, usageErrorf("give --prompt TEXT, --prompt-file F, or the prompt on standard input")
	}
	b, err := io.ReadAll(stdin)
	if err != nil {
		return nil, fmt.Errorf("reading the prompt from standard input: %w", err)
	}
	return b, nil
}

// parseMarks parses "1000,5000,10000,20000".
func parseMarks(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q: want positive token counts separated by commas", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func runGenerate(e *env, args []string) error {
	fs := newFlagSet("generate", "(--ckpt PATH_OR_RUN | --preset NAME --random) [--prompt TEXT | --prompt-file F | < F] [flags]", generateDescription)
	var mf modelFlags
	mf.register(fs)
	prompt := fs.String("prompt", "", "the prompt text")
	promptFile := fs.String("prompt-file", "", "read the prompt from this file")
	maxNew := fs.Int("max-new-tokens", 500, "tokens to generate per sample")
	temp := fs.Float64("temperature", 1, "sampling temperature (0: greedy)")
	topK := fs.Int("top-k", 0, "keep the K most likely tokens (0: all)")
	topP := fs.Float64("top-p", 1, "keep the most likely tokens up to this total probability (1: all)")
	seed := fs.Int64("seed", -1, "sampling seed (-1: pick one and print it)")
	samples := fs.Int("num-samples", 1, "samples to draw, each from a fresh memory, with seeds seed, seed+1, …")
	echo := fs.Bool("echo", false, "print the prompt before the generated text")
	unk := fs.String("unk", "error", "prompt characters outside a char vocabulary: error or replace (with <unk>)")
	var stops []string
	fs.Func("stop", "end a sample at this text, cut before it (repeatable)", func(v string) error {
		stops = append(stops, v)
		return nil
	})
	logprobs := fs.String("logprobs", "", "write each token's log-probability and the 5 most likely tokens as JSON lines to this file (-: stderr)")
	stats := fs.Bool("stats", false, "print tokens/s, live memories per layer, memories dropped and process RSS to stderr")
	statsEvery := fs.Int("stats-every", 1000, "with --stats: print every N tokens too")
	noPrune := fs.Bool("no-prune", false, "keep every memory (for comparison; the text does not change)")
	benchN := fs.Int("bench", 0, "run the flatness benchmark over N tokens instead of printing text (as 'xspan bench gen')")
	benchMarks := fs.String("bench-marks", "1000,5000,10000,20000", "with --bench: where to measure")
	benchWindow := fs.Int("bench-window", 500, "with --bench: tokens before each mark whose step times are measured")
	pos, err := fs.parse(e, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("unexpected arguments %q (the prompt goes in --prompt)", pos)
	}
	set := fs.visited()
	if err := mf.check(); err != nil {
		return err
	}
	policy, err := generate.ParseUnkPolicy(*unk)
	if err != nil {
		return usageErrorf("--unk: %v", err)
	}
	scfg := generate.SamplerConfig{Temperature: *temp, TopK: *topK, TopP: *topP, Seed: max(*seed, 0)}
	if err := scfg.Validate(); err != nil {
		return usageErrorf("%v", err)
	}
	switch {
	case *seed < -1:
		return usageErrorf("--seed %d: want -1 (random) or a seed ≥ 0", *seed)
	case *maxNew < 1:
		return usageErrorf("--max-new-tokens %d: need at least 1", *maxNew)
	case *samples < 1:
		return usageErrorf("--num-samples %d: need at least 1", *samples)
	case *statsEvery < 0:
		return usageErrorf("--stats-every %d: must not be negative", *statsEvery)
	case *benchN < 0:
		return usageErrorf("--bench %d: must not be negative", *benchN)
	}
	marks, err := parseMarks(*benchMarks)
	if err != nil {
		return usageErrorf("--bench-marks: %v", err)
	}
	var text []byte
	if *benchN == 0 || set["prompt"] || *promptFile != "" {
		if text, err = readPrompt(*prompt, *promptFile, set, e.stdin); err != nil {
			return err
		}
	} else {
		text = []byte("The ")
	}

	defer torchrt.Lock()()
	logf := func(f string, a ...any) { fmt.Fprintf(e.stderr, f+"\n", a...) }
	model, err := mf.load(logf)
	if err != nil {
		return err
	}
	ids, warning, err := generate.PromptTokens(model, text, policy)
	if err != nil {
		return err
	}
	if warning != "" {
		logf("%s", warning)
	}
	if *seed == -1 {
		scfg.Seed = rand.Int64N(1 << 53)
		logf("seed: %d", scfg.Seed)
	}
	ctx, stop := e.interruptible()
	defer stop()

	if *benchN > 0 {
		return runFlatness(ctx, e, model, ids, bench.FlatnessConfig{
			Tokens: *benchN, Marks: marks, Window: *benchWindow, Sampler: scfg,
			PromptBlock: model.m.Cfg.Block, BytesPerMemory: model.bytesPerMemory(),
		}, logf)
	}
	var lpOut io.Writer
	switch *logprobs {
	case "":
	case "-":
		lpOut = os.Stderr
	default:
		f, err := os.Create(*logprobs)
		if err != nil {
			return fmt.Errorf("--logprobs: %w", err)
		}
		defer f.Close()
		lpOut = f
	}
	model.pruning = !*noPrune
	for k := 0; k < *samples; k++ {
		opts := generate.Options{MaxNewTokens: *maxNew, Sampler: scfg, PromptBlock: model.m.Cfg.Block, Stop: stops}
		if lpOut != nil {
			opts.TopLogProbs = serve.MaxTopLogProbs
		}
		opts.Sampler.Seed = scfg.Seed + int64(k)
		endedLine := false
		out := &lineTracker{w: e.stdout}
		if *stats {
			show := generate.StatsPrinter(e.stderr)
			opts.StatsEvery = *statsEvery
			opts.OnStats = func(s generate.Stats) {
				switch {
				case s.Final:
					// End the text's line first, so that on a terminal the summary does not
					// run on from the last generated character.
					fmt.Fprintln(e.stdout)
					endedLine = true
				case e.sharedOutput && out.midLine:
					// On one screen, a snapshot gets a line of its own (on stderr: the text
					// on stdout stays as generated) and the text goes on below it.
					fmt.Fprintln(e.stderr)
					out.midLine = false
				}
				show(s)
			}
		}
		if *samples > 1 {
			if k > 0 {
				fmt.Fprintln(e.stdout)
			}
			fmt.Fprintf(e.stdout, "--- sample %d of %d (seed %d) ---\n", k+1, *samples, opts.Sampler.Seed)
		}
		if *echo {
			out.Write(text)
		}
		st, _ := model.NewStepper()
		_, err := generate.Generate(ctx, st, model.vocab, ids, opts, func(t generate.Token) error {
			if lpOut != nil && t.LogProb != nil {
				line, _ := json.Marshal(map[string]any{"sample": k, "index": t.Index, "id": t.ID,
					"token": generate.TokenText(model.vocab, t.ID), "logprob": *t.LogProb, "top_logprobs": t.TopLogProbs})
				if _, err := fmt.Fprintf(lpOut, "%s\n", line); err != nil {
					return fmt.Errorf("--logprobs: %w", err)
				}
			}
			if t.Text == "" {
				return nil
			}
			_, err := io.WriteString(out, t.Text)
			return err
		})
		st.(*lmStepper).Close()
		if err != nil {
			if errors.Is(err, context.Canceled) {
				fmt.Fprintln(e.stdout)
				return errInterrupted
			}
			return err
		}
		if !endedLine {
			fmt.Fprintln(e.stdout)
		}
	}
	return nil
}

// lineTracker writes to w and remembers whether the last byte written ended a line.
type lineTracker struct {
	w       io.Writer
	midLine bool
}

func (l *lineTracker) Write(p []byte) (int, error) {
	if len(p) > 0 {
		l.midLine = p[len(p)-1] != '\n'
	}
	return l.w.Write(p)
}
