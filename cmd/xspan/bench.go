package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"

	"xspan/bench"
	"xspan/internal/torchrt"
)

func init() {
	register(command{name: "bench", summary: "run the benchmarks: prep, train, gen, copy (or all with --quick)", run: runBench})
}

const benchDescription = `
xspan bench [--quick] [--out DIR]        runs every benchmark below in turn
xspan bench prep [--quick]                 prep throughput beside plain zstd (the ceiling)
xspan bench train [bench-train flags]      training tokens/s and peak RSS (as bench-train)
xspan bench gen [--quick]                  generation flatness: pruning on beside off
xspan bench copy [--quick] [--gaps 512,2048,8192] [--out DIR]
                                           the copy task: Expire-Span beside the baseline
                                           of equal memory

Each prints its figures beside the ceiling or baseline measured in the same run. Run
'xspan bench SUB -h' for a benchmark's flags.`

// benchSubs are the benchmarks; the all-in-one run takes them in benchOrder.
var benchSubs = map[string]func(args []string) error{
	"prep":  runBenchPrep,
	"train": runBenchTrainPair,
	"gen":   runBenchGen,
	"copy":  runBenchCopy,
}

var benchOrder = []string{"prep", "train", "gen", "copy"}

func runBench(args []string) error {
	if len(args) > 0 {
		if sub, ok := benchSubs[args[0]]; ok {
			return sub(args[1:])
		}
	}
	fs := newFlagSet("bench", "[SUB] [--quick] [--out DIR]", benchDescription)
	quick := fs.Bool("quick", false, "a few-minute run of every benchmark")
	out := fs.String("out", "", "folder for the copy task's table, PNG and runs (default: bench copy's)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unknown benchmark %q: want prep, train, gen or copy", fs.Arg(0))
	}
	var flags []string
	if *quick {
		flags = append(flags, "--quick")
	}
	for _, name := range benchOrder {
		fmt.Printf("== xspan bench %s ==\n", name)
		a := flags
		if name == "copy" && *out != "" {
			a = append(a, "--out", *out)
		}
		if err := benchSubs[name](a); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

const benchCopyDescription = `
Runs the copy-task grid: for each gap, prepares a copy dataset (strings of --seq-len
symbols over --alphabet, the gap of fillers, then the copy), trains Expire-Span with L
about twice the distance from a symbol to its copy, evaluates it on the test split (one
stream, memories dropped the step they expire), then trains the fixed-memory baseline
whose L is Expire-Span's measured mean live memory, and evaluates it the same way.
Runs are sequential, in this process.

Copy accuracy is greedy decoding with teacher forcing: the argmax of the model's
distribution at a copied position, given the true prefix, is the true symbol. Exact
match: every copied symbol of an example right. Chance is 1/alphabet.

Writes DIR/copy.md (the table), DIR/copy.png, DIR/copy.json, and the datasets and runs.
--quick: gaps 256 and 1024, about 500 training examples per run (a few minutes);
otherwise gaps 512, 2048 and 8192, about 1000 examples per run, at most 6000 steps.`

func runBenchCopy(args []string) error {
	fs := newFlagSet("bench copy", "[--quick] [--gaps 512,2048,8192] [--out DIR] [flags]", benchCopyDescription)
	quick := fs.Bool("quick", false, "gaps 256,1024 and fewer steps: a few minutes")
	gapsFlag := fs.String("gaps", "", "comma-separated gaps (default 512,2048,8192; --quick 256,1024)")
	out := fs.String("out", "", "output folder (default: bench-copy, or bench-copy-quick with --quick)")
	seqLen := fs.Int("seq-len", 16, "copied string length")
	alphabet := fs.Int("alphabet", 8, "symbols")
	examples := fs.Int("examples", 0, "training examples per run; sets the steps (default 1000, --quick 500)")
	maxSteps := fs.Int("max-steps", 6000, "most steps per run")
	threads := fs.Int("threads", 1, "libtorch threads (0: one per core)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q", fs.Arg(0))
	}
	cfg := bench.CopyConfig{SeqLen: *seqLen, Alphabet: *alphabet, Examples: *examples, MaxSteps: *maxSteps, Threads: *threads, Seed: 1, Out: *out}
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
	cfg.Logf = func(format string, a ...any) { fmt.Fprintf(os.Stderr, "bench copy: "+format+"\n", a...) }
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	defer torchrt.Lock()()
	rows, err := bench.RunCopy(ctx, cfg)
	if err != nil {
		return err
	}
	return bench.WriteCopyFiles(cfg.Out, rows, os.Stdout)
}

const benchPrepDescription = `
Writes --size MB of word-like text (bench.Text, the input of the dataset
package's BenchmarkPrep) and prepares it with a char vocabulary, beside plain zstd
compression of the same bytes at the same level measured just before (the ceiling).`

func runBenchPrep(args []string) error {
	fs := newFlagSet("bench prep", "[--quick] [--size MB]", benchPrepDescription)
	quick := fs.Bool("quick", false, "20 MB instead of 100")
	size := fs.Int("size", 0, "MB of text (default 100; --quick 20)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q", fs.Arg(0))
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
	res, err := bench.Prep(context.Background(), mb<<20)
	if err != nil {
		return err
	}
	fmt.Println(res)
	return nil
}

const benchTrainPairDescription = `
With --data: the bench-train benchmark (see 'xspan bench-train -h'), with its flags.
Without --data (as in 'xspan bench --quick'): prepares a 2 MB text dataset in a temporary
folder and runs bench-train on it twice, Expire-Span and the fixed-memory baseline
(--set expire=false) of the same preset, for --steps steps each (default 30), without
validation.`

// runBenchTrainPair is bench-train with --data, else Expire-Span beside the baseline on
// a generated corpus.
func runBenchTrainPair(args []string) error {
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			fmt.Fprintln(os.Stderr, strings.TrimSpace(benchTrainPairDescription)+"\n")
			return runBenchTrain(args)
		}
		if a == "--data" || a == "-data" || strings.HasPrefix(a, "--data=") || strings.HasPrefix(a, "-data=") {
			return runBenchTrain(args)
		}
	}
	steps := "30"
	var rest []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--quick" || a == "-quick":
		case (a == "--steps" || a == "-steps") && i+1 < len(args):
			steps = args[i+1]
			i++
		default:
			rest = append(rest, a)
		}
	}
	dir, err := os.MkdirTemp("", "xspan-bench-train-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	data, err := bench.TextDataset(context.Background(), dir, 2<<20)
	if err != nil {
		return err
	}
	for _, model := range []struct{ name, set string }{{"Expire-Span", "expire=true"}, {"baseline (fixed memory of the last L keys)", "expire=false"}} {
		fmt.Printf("-- %s --\n", model.name)
		a := append([]string{"--data", data, "--steps", steps, "--no-valid", "--set", model.set}, rest...)
		if err := runBenchTrain(a); err != nil {
			return err
		}
	}
	return nil
}

const benchGenDescription = `
The flatness benchmark of 'xspan generate --bench' on a randomly initialised tiny
preset: per-token time and live memory with pruning on, beside pruning off, in the same
run. --quick: 4000 tokens, marks at 1000, 2000 and 4000; else 20000 tokens.`

func runBenchGen(args []string) error {
	fs := newFlagSet("bench gen", "[--quick] [--preset tiny]", benchGenDescription)
	quick := fs.Bool("quick", false, "4000 tokens instead of 20000")
	preset := fs.String("preset", "tiny", "preset of the random model")
	threads := fs.Int("threads", 1, "libtorch threads")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q", fs.Arg(0))
	}
	a := []string{"--preset", *preset, "--random", "--device", "cpu", "--threads", strconv.Itoa(*threads),
		"--seed", "1", "--prompt", "In the beginning "}
	if *quick {
		a = append(a, "--bench", "4000", "--bench-marks", "1000,2000,4000", "--bench-window", "300")
	} else {
		a = append(a, "--bench", "20000")
	}
	return runGenerate(a)
}
