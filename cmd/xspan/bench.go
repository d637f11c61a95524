package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"xspan/bench"
	"xspan/generate"
	"xspan/internal/torchrt"
)

func init() {
	register(command{name: "bench", summary: "run the benchmarks: prep, train, gen, copy (or all with --quick)", run: runBench})
}

const benchDescription = `
xspan bench [--quick] [--out DIR]        runs every benchmark below in turn
xspan bench prep [--quick]                 prep throughput beside plain zstd (the ceiling)
xspan bench train [--data DIR] [--quick]   training tokens/s, peak RSS and valid bpc
                                           (also 'xspan bench-train')
xspan bench gen [--quick]                  generation flatness: pruning on beside off
                                           (also 'xspan generate --bench N')
xspan bench copy [--quick] [--gaps 512,2048,8192] [--out DIR]
                                           the copy task: Expire-Span beside Transformer-XL
                                           (and last-L) of equal memory

Each prints its figures beside the ceiling or baseline measured in the same run. Run
'xspan bench SUB -h' for a benchmark's flags.`

// benchSubs are the benchmarks; the all-in-one run takes them in benchOrder.
var benchSubs = map[string]func(e *env, args []string) error{
	"prep":  runBenchPrep,
	"train": runBenchTrain,
	"gen":   runBenchGen,
	"copy":  runBenchCopy,
}

var benchOrder = []string{"prep", "train", "gen", "copy"}

func runBench(e *env, args []string) error {
	if len(args) > 0 {
		if sub, ok := benchSubs[args[0]]; ok {
			return sub(e, args[1:])
		}
	}
	fs := newFlagSet("bench", "[SUB] [--quick] [--out DIR]", benchDescription)
	quick := fs.Bool("quick", false, "a few-minute run of every benchmark")
	out := fs.String("out", "", "folder for the copy task's table, PNG and runs (default: bench copy's)")
	pos, err := fs.parse(e, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("unknown benchmark %q: want prep, train, gen or copy", pos[0])
	}
	var flags []string
	if *quick {
		flags = append(flags, "--quick")
	}
	for _, name := range benchOrder {
		fmt.Fprintf(e.stdout, "== xspan bench %s ==\n", name)
		a := flags
		if name == "copy" && *out != "" {
			a = append(a, "--out", *out)
		}
		if err := benchSubs[name](e, a); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

const benchCopyDescription = `
Runs the copy-task grid: for each gap, prepares a copy dataset (strings of --seq-len
symbols over --alphabet, the gap of fillers, then the copy), trains Expire-Span with L
about twice the distance from a symbol to its copy, evaluates it on the test split (one
stream, memories dropped the step they expire), then trains the two fixed-memory
baselines whose L is Expire-Span's measured mean live memory and evaluates them the same
way: transformer-xl (each query sees exactly its L previous positions, the paper's
comparison) and last-l (the last L keys, seen by every query of a block).
Runs are sequential, in this process.

Copy accuracy is greedy decoding with teacher forcing: the argmax of the model's
distribution at a copied position, given the true prefix, is the true symbol. Exact
match: every copied symbol of an example right. Chance is 1/alphabet.

Writes DIR/copy.md (the table), DIR/copy.png, DIR/copy.json, and the datasets and runs.
--quick: gaps 256 and 1024, about 500 training examples per run (a few minutes);
otherwise gaps 512, 2048 and 8192, about 1000 examples per run, at most 6000 steps.`

func runBenchCopy(e *env, args []string) error {
	fs := newFlagSet("bench copy", "[--quick] [--gaps 512,2048,8192] [--out DIR] [--set key=value ...] [flags]", benchCopyDescription)
	quick := fs.Bool("quick", false, "gaps 256,1024 and fewer steps: a few minutes")
	gapsFlag := fs.String("gaps", "", "comma-separated gaps (default 512,2048,8192; --quick 256,1024)")
	out := fs.String("out", "", "output folder (default: bench-copy, or bench-copy-quick with --quick)")
	seqLen := fs.Int("seq-len", 16, "copied string length")
	alphabet := fs.Int("alphabet", 8, "symbols")
	examples := fs.Int("examples", 0, "training examples per run; sets the steps (default 1000, --quick 500)")
	maxSteps := fs.Int("max-steps", 6000, "most steps per run")
	var sets setFlag
	fs.Var(&sets, "set", "change the grid's model or recipe (config.json's names, e.g. alpha=1e-6; repeatable); expire, max_span, pos_window, baseline and steps are set per run")
	var df deviceFlags
	fs.group("device")
	fs.IntVar(&df.threads, "threads", 0, fmt.Sprintf("CPU threads for libtorch, 1 to %d (4 per core); 0: one per core (the runs are on the CPU)", maxThreads()))
	fs.group("flags")
	if err := fs.noArgs(e, args); err != nil {
		return err
	}
	if err := df.check(); err != nil {
		return err
	}
	cfg := bench.CopyConfig{SeqLen: *seqLen, Alphabet: *alphabet, Examples: *examples, MaxSteps: *maxSteps, Threads: df.threads, Seed: 1, Out: *out,
		Model: bench.DefaultCopyModel()}
	for _, kv := range sets {
		if err := cfg.Model.Set(kv.key, kv.value); err != nil {
			return usageErrorf("--set %s=%s: %w", kv.key, kv.value, err)
		}
	}
	gaps := "512,2048,8192"
	if *quick {
		gaps = "256,1024"
		if cfg.Examples == 0 {
			cfg.Examples = 500
		}
		cfg.EvalExamples = 50
	}
	if *gapsFlag != "" {
		gaps = *gapsFlag
	}
	for _, g := range strings.Split(gaps, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(g))
		if err != nil || n < 1 {
			return usageErrorf("--gaps %q: want positive integers separated by commas", gaps)
		}
		cfg.Gaps = append(cfg.Gaps, n)
	}
	if *seqLen < 1 || *alphabet < 2 || *examples < 0 || *maxSteps < 1 {
		return usageErrorf("--seq-len ≥ 1, --alphabet ≥ 2, --examples ≥ 0 and --max-steps ≥ 1 required")
	}
	if cfg.Out == "" {
		cfg.Out = "bench-copy"
		if *quick {
			cfg.Out = "bench-copy-quick"
		}
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return err
	}
	cfg.Logf = func(format string, a ...any) { fmt.Fprintf(e.stderr, "bench copy: "+format+"\n", a...) }
	ctx, stop := e.interruptible()
	defer stop()
	defer torchrt.Lock()()
	rows, err := bench.RunCopy(ctx, cfg)
	if err != nil {
		return err
	}
	return bench.WriteCopyFiles(cfg.Out, rows, e.stdout)
}

const benchPrepDescription = `
Writes --size MB of word-like text (bench.Text, the input of the dataset
package's BenchmarkPrep) and prepares it with a char vocabulary, beside plain zstd
compression of the same bytes at the same level measured just before (the ceiling).`

func runBenchPrep(e *env, args []string) error {
	fs := newFlagSet("bench prep", "[--quick] [--size MB]", benchPrepDescription)
	quick := fs.Bool("quick", false, "20 MB instead of 100")
	size := fs.Int("size", 0, "MB of text (0: 100, or 20 with --quick)")
	if err := fs.noArgs(e, args); err != nil {
		return err
	}
	if *size < 0 {
		return usageErrorf("--size %d: want ≥ 1", *size)
	}
	mb := *size
	if mb == 0 {
		mb = 100
		if *quick {
			mb = 20
		}
	}
	ctx, stop := e.interruptible()
	defer stop()
	res, err := bench.Prep(ctx, mb<<20)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(e.stdout, res)
	return err
}

const benchGenDescription = `
The flatness benchmark: generates --tokens tokens twice, with pruning and with pruning off,
and prints per-token time and live memory at --marks, in the same run. The model is a
randomly initialised --preset (tiny) unless --ckpt names a checkpoint. --quick: 4000
tokens, marks at 1000, 2000 and 4000. 'xspan generate --bench N' is the same benchmark.`

func runBenchGen(e *env, args []string) error {
	fs := newFlagSet("bench gen", "[--quick] [--ckpt PATH_OR_RUN | --preset tiny] [flags]", benchGenDescription)
	quick := fs.Bool("quick", false, "4000 tokens, marks at 1000, 2000 and 4000")
	tokens := fs.Int("tokens", 20000, "tokens to generate with pruning, then without")
	marksFlag := fs.String("marks", "1000,5000,10000,20000", "where to measure (token counts)")
	window := fs.Int("window", 500, "tokens before each mark whose step times are measured")
	prompt := fs.String("prompt", "In the beginning ", "the prompt")
	seed := fs.Int64("seed", 1, "sampling seed")
	var mf modelFlags
	mf.register(fs)
	if err := fs.noArgs(e, args); err != nil {
		return err
	}
	set := fs.visited()
	if mf.ckpt == "" {
		mf.random = true
		if mf.preset == "" {
			mf.preset = "tiny"
		}
	}
	if *quick {
		if !set["tokens"] {
			*tokens = 4000
		}
		if !set["marks"] {
			*marksFlag = "1000,2000,4000"
		}
		if !set["window"] {
			*window = 300
		}
	}
	if err := mf.check(); err != nil {
		return err
	}
	marks, err := parseMarks(*marksFlag)
	if err != nil {
		return usageErrorf("--marks: %w", err)
	}
	switch {
	case *tokens < 1:
		return usageErrorf("--tokens %d: need at least 1", *tokens)
	case *window < 1:
		return usageErrorf("--window %d: need at least 1", *window)
	case *seed < 0:
		return usageErrorf("--seed %d: must not be negative", *seed)
	}
	defer torchrt.Lock()()
	logf := func(f string, a ...any) { fmt.Fprintf(e.stderr, f+"\n", a...) }
	model, err := mf.load(logf)
	if err != nil {
		return err
	}
	ids, _, err := generate.EncodePrompt(model.vocab, []byte(*prompt), generate.UnkReplace)
	if err != nil {
		return err
	}
	ctx, stop := e.interruptible()
	defer stop()
	return runFlatness(ctx, e, model, ids, bench.FlatnessConfig{
		Tokens: *tokens, Marks: marks, Window: *window, Sampler: generate.SamplerConfig{Temperature: 1, TopP: 1, Seed: *seed},
		PromptBlock: model.m.Cfg.Block, BytesPerMemory: model.bytesPerMemory(),
	}, logf)
}

// runFlatness runs the flatness benchmark on a loaded model (bench gen and generate
// --bench).
func runFlatness(ctx context.Context, e *env, model *lmModel, prompt []int64, cfg bench.FlatnessConfig, logf func(string, ...any)) error {
	cfg.Progress = func(pruning bool, n int) {
		if n%5000 == 0 {
			logf("bench: pruning %v: %d tokens", pruning, n)
		}
	}
	logf("bench: %d tokens with pruning, then %d without; prompt %d tokens", cfg.Tokens, cfg.Tokens, len(prompt))
	runs, err := bench.Flatness(ctx, func(pruning bool) (generate.Stepper, error) {
		return model.stepper(pruning), nil
	}, prompt, cfg)
	if err != nil {
		return err
	}
	what := fmt.Sprintf("checkpoint %v (step %v)", model.info["checkpoint"], model.info["step"])
	if model.info["checkpoint"] == nil {
		what = fmt.Sprintf("random weights: preset %v", model.info["preset"])
	}
	c := model.m.Cfg
	fmt.Fprintf(e.stdout, "flatness benchmark: %d tokens; %s; %d layers, dim %d, max span %d, ramp %d, block %d; live memory ≈ %d bytes per memory (hidden state, key, value)\n",
		cfg.Tokens, what, c.Layers, c.Dim, c.MaxSpan, c.Ramp, c.Block, cfg.BytesPerMemory)
	bench.WriteFlatness(e.stdout, runs, cfg)
	return nil
}
