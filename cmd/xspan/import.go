package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"xspan/checkpoint"
	"xspan/dataset"
	"xspan/internal/torchrt"
	"xspan/lm"
	"xspan/refckpt"
	"xspan/tokenize"
)

func init() {
	register(command{name: "import", summary: "turn another implementation's checkpoint into an xspan run (eval, generate, serve)", run: runImport})
}

const importDescription = `
Reads a checkpoint written by the Expire-Span reference implementation
(facebookresearch/transformer-sequential: torch.save of {epoch, model, optimizer,
logger, scheduler_epoch}, the model's names prefixed "module.") and writes an xspan run
folder RUN: config.json, checkpoints/step-N (N: the reference's scheduler_epoch, its
optimizer steps) and best, so that 'xspan eval --ckpt RUN', 'generate' and 'serve' work
on it; and the reference's data as an xspan dataset (--dataset, default RUN/data),
which the run names, so that eval needs no --data. The file is read by xspan's own
reader: nothing in it is imported or run, and a damaged file, or the checkpoint of
another model (TransformerSeq, compressive, feedback, staircase), is refused with a
message naming what does not fit. The format is detected from the file: a torch.save
zip is the reference's; a .safetensors file is not importable yet.

What is kept: the weights, exactly (linear weights transposed to xspan's layout, the
vocabulary's rows permuted). What is dropped: the optimizer state (Adam's moments), the
logger and the epoch counters; 'xspan train --init-from RUN' starts a fresh optimizer.

The vocabulary. The reference's loader is word level: enwik8-format data (every byte as
its decimal value, a line break per newline) gives one token per byte, plus <eos> and
<unk>, in the order of its data.Corpus: by count in train.txt, most frequent first,
ties in reverse order of first appearance, <eos> always present (counted once per
line), <unk> last. --data DIR rebuilds it from DIR/train.txt as the reference does;
--corpus FILE reads it, and the splits, from the reference's corpus cache (corpus.pt).
--vocab char (the default) maps it exactly onto an xspan char vocabulary: decimal byte b
is the character b (ASCII only), <eos> is the newline, <unk> is xspan's <unk>; ids are
reordered to xspan's code-point order, so every log-probability carries over.
--vocab byte maps it onto the 256 bytes for data with bytes of 128 and more: bytes the
reference lacks get a logit of -1e4 and <unk> is left out, so log-probabilities differ
from the reference's by log(1 - p(<unk>)): close, not exact.

Newlines: the reference drops them from the token stream unless it ran with
--data-eos; the dataset written follows suit (with --corpus the cache says which). The
<eos> row stays in the model either way, as in the reference's softmax.

What the checkpoint does not hold comes from flags, with the reference's defaults: the
span L and the ramp R apart (only L + R is stored: give one, the other follows; R
defaults to 32), --pre-div, --init-frac, --alpha, --dropout, --noisy. Blocks, the
position window and the initial zero memories are all M, read off the checkpoint.
Training keys come from --preset and --set (they matter only to a later
'train --init-from').

Evaluate as the reference did with 'xspan eval --ckpt RUN --streams N' (N: its
--test-batch-sz; the enwik8 figure used 128); the default one-stream protocol scores
every token instead.`

// importFormat is a file's format as import sees it.
type importFormat string

const (
	formatReference   importFormat = "reference"   // torch.save zip of the reference's trainer
	formatSafetensors importFormat = "safetensors" // xspan export's one-file safetensors
)

// detectImportFormat says what kind of checkpoint path is, from its first bytes and
// name: the one place that decides, so that other formats can be added here.
func detectImportFormat(path string) (importFormat, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if st.IsDir() {
		if _, err := os.Stat(filepath.Join(path, checkpoint.HeaderName)); err == nil {
			return "", fmt.Errorf("%s is already an xspan checkpoint: use it as it is (eval/generate --ckpt)", path)
		}
		return "", fmt.Errorf("%s is a folder, not a checkpoint file", path)
	}
	head := make([]byte, 16)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return formatReference, nil
	case len(head) >= 9 && head[8] == '{' || strings.HasSuffix(path, ".safetensors"):
		return formatSafetensors, nil
	case len(head) >= 2 && head[0] == 0x80 && head[1] <= 5:
		// refckpt's reader explains the legacy (pre-1.6) torch.save format.
		return formatReference, nil
	case n == 0:
		return "", fmt.Errorf("%s is empty", path)
	}
	return "", fmt.Errorf("%s: not a checkpoint import knows: neither a torch.save zip (the reference implementation's) nor a .safetensors file", path)
}

// importFlags are what the reference's checkpoint does not hold.
type importFlags struct {
	maxSpan, ramp               int
	preDiv, initFrac, alpha, dr float64
	noisy                       bool
}

func runImport(e *env, args []string) (err error) {
	fs := newFlagSet("import", "--from REF.pt (--data DIR | --corpus corpus.pt) --out RUN [flags]", importDescription)
	from := fs.String("from", "", "the checkpoint to import: the reference implementation's torch.save file (required)")
	out := fs.String("out", "", "run folder to write (required; must not hold checkpoints)")
	fs.group("vocabulary and data (one of --data, --corpus)")
	data := fs.String("data", "", "the reference's data folder (train.txt, valid.txt, test.txt in enwik8 format): rebuild its vocabulary and splits")
	corpus := fs.String("corpus", "", "the reference's corpus cache (corpus.pt): its vocabulary and splits")
	dataEOS := fs.Bool("data-eos", false, "with --data: the reference ran with --data-eos (newlines are <eos> tokens; else dropped)")
	vocabKind := fs.String("vocab", tokenize.KindChar, "xspan vocabulary: char (exact, ASCII data) or byte (approximate: <unk> left out)")
	dsOut := fs.String("dataset", "", "where to write the data as an xspan dataset (default RUN/data)")
	fs.group("what the checkpoint does not hold (the reference's flag in brackets)")
	var f importFlags
	fs.IntVar(&f.maxSpan, "max-span", 0, "L, the longest span [--attn-lim] (0: L + R from the checkpoint minus --ramp)")
	fs.IntVar(&f.ramp, "ramp", 0, "R, the soft mask's ramp [--expire-span-ramp] (0: L + R minus --max-span, or 32 when neither is given)")
	fs.Float64Var(&f.preDiv, "pre-div", 1, "span predictor input divisor [--expire-span-pre-div]")
	fs.Float64Var(&f.initFrac, "init-frac", 0.1, "p0, initial span fraction [--expire-span-init-percentage]")
	fs.Float64Var(&f.alpha, "alpha", 0, "span-loss coefficient [--expire-span-loss]")
	fs.Float64Var(&f.dr, "dropout", 0, "dropout rate [--dropout]")
	fs.BoolVar(&f.noisy, "noisy", false, "random span shortening in training [--expire-span-noisy]")
	fs.group("config")
	preset := fs.String("preset", "enwik8-small", "preset whose training keys the run's config takes: "+strings.Join(lm.PresetNames(), ", "))
	var sets setFlag
	fs.Var(&sets, "set", "set any other config key (repeatable, applied last)")
	fs.group("flags")
	force := fs.Bool("force", false, "replace an existing dataset folder")
	if err := fs.noArgs(e, args); err != nil {
		return err
	}
	switch {
	case *from == "":
		return usageErrorf("--from is required")
	case *out == "":
		return usageErrorf("--out is required")
	}
	// xspan's own safetensors export carries its config and vocabulary: nothing else needed.
	if format, err := detectImportFormat(*from); err == nil && format == formatSafetensors {
		return importExport(e, *from, *out)
	}
	switch {
	case (*data == "") == (*corpus == ""):
		return usageErrorf("give --data DIR or --corpus corpus.pt (the vocabulary is not in the checkpoint)")
	case *dataEOS && *corpus != "":
		return usageErrorf("--data-eos goes with --data; the corpus cache says itself whether newlines are tokens")
	case *vocabKind != tokenize.KindChar && *vocabKind != tokenize.KindByte:
		return usageErrorf("--vocab %q: want char or byte", *vocabKind)
	case f.maxSpan < 0 || f.ramp < 0:
		return usageErrorf("--max-span and --ramp must not be negative")
	}
	if steps, err := checkpoint.Steps(*out); err == nil && len(steps) > 0 {
		return usageErrorf("--out %s already holds checkpoints: import into a new run folder", *out)
	}
	if *dsOut == "" {
		*dsOut = filepath.Join(*out, "data")
	}

	format, err := detectImportFormat(*from)
	if err != nil {
		return err
	}
	c, err := refckpt.Read(*from)
	if err != nil {
		return err
	}
	a, err := refckpt.InferArch(c)
	if err != nil {
		return err
	}
	if !a.Expire {
		return fmt.Errorf("%s: a reference ExpireSpan model trained without --expire-span (no span predictors): not importable", *from)
	}

	// The vocabulary and the splits, as the reference's ids.
	var vocab []string
	var includeEOS bool
	var splits [3][]int32
	var source [3]dataset.Source
	if *corpus != "" {
		cp, err := refckpt.ReadCorpus(*corpus)
		if err != nil {
			return err
		}
		vocab, includeEOS = cp.Vocab, cp.IncludeEOS
		splits = [3][]int32{cp.Train, cp.Valid, cp.Test}
		for i := range source {
			source[i] = dataset.Source{Ranges: []dataset.SourceRange{{Path: *corpus}}}
		}
	} else {
		if vocab, err = refckpt.BuildVocabFile(*data); err != nil {
			return err
		}
		includeEOS = *dataEOS
		for i, name := range dataset.SplitNames {
			path := filepath.Join(*data, name+".txt")
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if splits[i], err = refckpt.Tokenize(bytes.NewReader(b), vocab, includeEOS); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			source[i] = dataset.Source{Bytes: int64(len(b)), Ranges: []dataset.SourceRange{{Path: path, Length: int64(len(b))}}}
		}
	}
	where := *data
	if where == "" {
		where = *corpus
	}
	if len(vocab) != a.Vocab {
		return fmt.Errorf("%s: the vocabulary from %s has %d tokens, the checkpoint's embedding %d rows: not the data this model was trained on", *from, where, len(vocab), a.Vocab)
	}
	var vm *refckpt.VocabMap
	var xv tokenize.Vocab
	if *vocabKind == tokenize.KindChar {
		if vm, err = refckpt.CharVocabMap(vocab); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if xv, err = tokenize.NewChar(vm.Chars); err != nil {
			return err
		}
	} else {
		if vm, err = refckpt.ByteVocabMap(vocab); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		xv = tokenize.Byte{}
	}
	if len(vm.RefID) != xv.Size() {
		return fmt.Errorf("import: a vocabulary map of %d ids for an xspan vocabulary of %d", len(vm.RefID), xv.Size())
	}

	// The config.
	cfg, err := lm.Preset(*preset)
	if err != nil {
		return usageErrorf("--preset: %w", err)
	}
	cfg.MaxSpan, cfg.Ramp, err = splitSpanRamp(a.SpanPlusRamp, f.maxSpan, f.ramp)
	if err != nil {
		return err
	}
	cfg.Vocab, cfg.Tokenizer = xv.Size(), xv.Spec().Ref()
	cfg.Layers, cfg.Dim, cfg.Heads, cfg.FFN, cfg.PreNorm = a.Layers, a.Dim, a.Heads, a.FFN, a.PreNorm
	cfg.Block, cfg.PosWindow, cfg.InitCache = a.Block, a.Block, a.Block
	cfg.Expire, cfg.PreDiv, cfg.InitFrac, cfg.Alpha, cfg.Dropout, cfg.Noisy = true, f.preDiv, f.initFrac, f.alpha, f.dr, f.noisy
	for _, kv := range sets {
		if err := cfg.Set(kv.key, kv.value); err != nil {
			return usageErrorf("--set %s=%s: %w", kv.key, kv.value, err)
		}
	}
	for key, want := range map[string]int{"vocab": cfg.Vocab, "layers": a.Layers, "dim": a.Dim, "heads": a.Heads, "ffn": a.FFN, "block": a.Block} {
		if got := configKeyValue(cfg, key); got != fmt.Sprint(want) {
			return usageErrorf("--set %s=%s: the checkpoint fixes %s at %d", key, got, key, want)
		}
	}
	if err := cfg.Validate(); err != nil {
		return usageErrorf("%w", err)
	}
	named, err := refckpt.ToXspan(c, a, vm)
	if err != nil {
		return err
	}

	// The dataset: the reference's ids mapped onto xspan's.
	xOf := make([]int64, len(vocab))
	for i := range xOf {
		xOf[i] = -1
	}
	for x, r := range vm.RefID {
		if r >= 0 {
			xOf[r] = int64(x)
		}
	}
	var idSplits []dataset.IDSplit
	for i, ref := range splits {
		ids := make([]uint32, len(ref))
		for j, r := range ref {
			if r < 0 || int(r) >= len(xOf) || xOf[r] < 0 {
				return fmt.Errorf("%s split of %s: token %d is %q, which the %s vocabulary has no id for", dataset.SplitNames[i], where, j, vocabTok(vocab, r), *vocabKind)
			}
			ids[j] = uint32(xOf[r])
		}
		n := int64(len(ids))
		idSplits = append(idSplits, dataset.IDSplit{Name: dataset.SplitNames[i], IDs: ids, Bytes: n, Chars: n, Source: source[i]})
	}
	newlines := dataset.NewlinesKeep
	if !includeEOS {
		newlines = dataset.NewlinesDrop
	}

	defer torchrt.Lock()()
	defer torchrt.Recover(&err) // a failed libtorch op fails the import, not the process
	m, err := lm.New(cfg, gotch.CPU)
	if err != nil {
		return err
	}
	if err := setWeights(m, named); err != nil {
		return fmt.Errorf("%s: %w", *from, err)
	}
	ctx, stop := e.interruptible()
	defer stop()
	if _, err := dataset.WriteIDs(ctx, *dsOut, "reference", xv, newlines, idSplits, dataset.WithForce(*force)); err != nil {
		return fmt.Errorf("write dataset %s: %w", *dsOut, err)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if err := checkpoint.WriteRunConfig(*out, cfg); err != nil {
		return err
	}
	step := max(c.SchedulerEpoch, 0)
	h := checkpoint.Header{
		Step:    step,
		Data:    checkpoint.DataState{Dir: *dsOut, Split: "train", Streams: 1, Block: cfg.Block},
		RNG:     checkpoint.RNGState{Seed: cfg.Seed, Scheme: "imported: no generator state"},
		Vocab:   checkpoint.NewVocabRef(xv, *dsOut),
		StartID: startOf(idSplits[0].IDs),
		Threads: torchrt.Threads(), Device: torchrt.DeviceName(gotch.CPU),
		Time: time.Now().UTC().Format(time.RFC3339),
	}
	dir, err := checkpoint.Write(*out, &checkpoint.State{Header: h, Model: m, Vocab: xv})
	if err != nil {
		return err
	}
	if err := checkpoint.SetBest(*out, step); err != nil {
		return err
	}
	note := importNote{
		From: *from, Format: string(format), Vocabulary: where, Vocab: *vocabKind, ExactVocab: vm.Exact,
		Epoch: c.Epoch, SchedulerEpoch: c.SchedulerEpoch, Keys: c.Keys,
		Dropped: "optimizer state, logger, epoch counters",
		Arch:    a, FromFlags: map[string]any{"max_span": cfg.MaxSpan, "ramp": cfg.Ramp, "pre_div": cfg.PreDiv, "init_frac": cfg.InitFrac, "alpha": cfg.Alpha, "dropout": cfg.Dropout, "noisy": cfg.Noisy},
	}
	js, _ := json.MarshalIndent(note, "", "  ")
	if err := checkpoint.WriteFileAtomic(filepath.Join(*out, "import.json"), append(js, '\n')); err != nil {
		return err
	}

	w := e.stdout
	norm := "post-norm"
	if a.PreNorm {
		norm = "pre-norm"
	}
	fmt.Fprintf(w, "imported %s (the reference implementation's checkpoint: epoch %d, %d optimizer steps)\n", *from, c.Epoch, c.SchedulerEpoch)
	fmt.Fprintf(w, "model       %d layers, d %d, %d heads, FFN %d, %s, block M %d, L %d + R %d (L + R from the checkpoint), %d parameters\n",
		a.Layers, a.Dim, a.Heads, a.FFN, norm, a.Block, cfg.MaxSpan, cfg.Ramp, m.NumParams())
	exact := "exact"
	if !vm.Exact {
		exact = "approximate: <unk> left out"
	}
	fmt.Fprintf(w, "vocabulary  %d reference tokens from %s -> xspan %s vocabulary of %d ids (%s)\n", len(vocab), where, *vocabKind, xv.Size(), exact)
	fmt.Fprintf(w, "dataset     %s (train %d, valid %d, test %d tokens; newlines %s)\n", *dsOut, len(splits[0]), len(splits[1]), len(splits[2]), map[string]string{dataset.NewlinesKeep: "kept as <eos>", dataset.NewlinesDrop: "dropped"}[newlines])
	fmt.Fprintf(w, "from flags  pre_div %g, init_frac %g, alpha %g, dropout %g, noisy %v\n", cfg.PreDiv, cfg.InitFrac, cfg.Alpha, cfg.Dropout, cfg.Noisy)
	fmt.Fprintln(w, "dropped     the optimizer state (Adam's moments), the logger and the epoch counters: train --init-from starts a fresh optimizer")
	fmt.Fprintf(w, "checkpoint  %s (best)\n", dir)
	fmt.Fprintf(w, "evaluate    xspan eval --ckpt %s --split test [--streams N: the reference's protocol]\n", *out)
	return nil
}

// importNote is RUN/import.json: where an imported run came from.
type importNote struct {
	From           string         `json:"from"`
	Format         string         `json:"format"`
	Vocabulary     string         `json:"vocabulary_from"`
	Vocab          string         `json:"vocab"`
	ExactVocab     bool           `json:"exact_vocab"`
	Epoch          int64          `json:"epoch"`
	SchedulerEpoch int64          `json:"scheduler_epoch"`
	Keys           []string       `json:"checkpoint_keys"`
	Dropped        string         `json:"dropped"`
	Arch           refckpt.Arch   `json:"arch"`
	FromFlags      map[string]any `json:"from_flags"`
}

// splitSpanRamp splits the checkpoint's L + R by the flags: L given, R given, or R = 32
// (the reference's default).
func splitSpanRamp(sum, maxSpan, ramp int) (int, int, error) {
	switch {
	case maxSpan > 0 && ramp > 0:
		if maxSpan+ramp != sum {
			return 0, 0, usageErrorf("--max-span %d + --ramp %d = %d, but the checkpoint's mask_causal says L + R = %d", maxSpan, ramp, maxSpan+ramp, sum)
		}
	case maxSpan > 0:
		ramp = sum - maxSpan
	case ramp > 0:
		maxSpan = sum - ramp
	default:
		ramp = 32
		maxSpan = sum - ramp
	}
	if maxSpan < 1 || ramp < 1 {
		return 0, 0, usageErrorf("the checkpoint's L + R = %d does not split into L %d and R %d: give --max-span or --ramp", sum, maxSpan, ramp)
	}
	return maxSpan, ramp, nil
}

func vocabTok(vocab []string, r int32) string {
	if r >= 0 && int(r) < len(vocab) {
		return vocab[r]
	}
	return fmt.Sprint(r)
}

// setWeights copies plain tensors into the model's parameters (names and shapes as
// lm.Model.NamedParameters gives them).
func setWeights(m *lm.Model, named []refckpt.Named) error {
	var tensors []ts.NamedTensor
	defer func() {
		for _, t := range tensors {
			t.Tensor.MustDrop()
		}
	}()
	for _, n := range named {
		t, err := torchrt.FromSlice(n.Data, n.Shape, m.Device())
		if err != nil {
			return fmt.Errorf("%s: %w", n.Name, err)
		}
		tensors = append(tensors, ts.NamedTensor{Name: n.Name, Tensor: t})
	}
	if err := m.SetWeights(tensors); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "lm: "))
	}
	return nil
}

// startOf returns a train split's first token, the start id of its checkpoint, or nil
// for an empty split.
func startOf(train []uint32) *int64 {
	if len(train) == 0 {
		return nil
	}
	id := int64(train[0])
	return &id
}

// importExport turns a file written by 'xspan export --format safetensors' back into a run
// folder: config.json, the checkpoint of its step (weights only) and best.
func importExport(e *env, from, out string) error {
	if steps, err := checkpoint.Steps(out); err == nil && len(steps) > 0 {
		return usageErrorf("--out %s already holds checkpoints: import into a new run folder", out)
	}
	defer torchrt.Lock()()
	m, ex, err := checkpoint.ReadExport(from, gotch.CPU)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if err := checkpoint.WriteRunConfig(out, ex.Config); err != nil {
		return err
	}
	h := checkpoint.Header{
		Step: ex.Step, Tokens: ex.Tokens,
		Data:    checkpoint.DataState{Split: "train", Block: ex.Config.Block},
		RNG:     checkpoint.RNGState{Seed: ex.Config.Seed, Scheme: "imported: no generator state"},
		Vocab:   checkpoint.NewVocabRef(ex.Vocab, ""),
		StartID: ex.StartID,
		Threads: torchrt.Threads(), Device: torchrt.DeviceName(gotch.CPU),
		Time: time.Now().UTC().Format(time.RFC3339),
	}
	dir, err := checkpoint.Write(out, &checkpoint.State{Header: h, Model: m, Vocab: ex.Vocab})
	if err != nil {
		return err
	}
	if err := checkpoint.SetBest(out, ex.Step); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "imported %s (xspan's safetensors export, step %d): %s, weights only (no optimizer state or memory); eval and generate need --data for a dataset\n", from, ex.Step, dir)
	return nil
}
