package train

import (
	"context"
	"errors"
	"fmt"
	"github.com/sugarme/gotch"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"xspan/checkpoint"
	"xspan/dataset"
	"xspan/eval"
	"xspan/internal/torchrt"
	"xspan/lm"
	"xspan/tokenize"
)

// ForData completes cfg for the dataset in dir whose vocabulary is vocab: its size
// (vocab) and identity (tokenizer), as the run's config.json records them. A config
// that names another size is refused.
func ForData(cfg lm.Config, vocab tokenize.Vocab, dir string) (lm.Config, error) {
	if cfg.Vocab != 0 && cfg.Vocab != vocab.Size() {
		return cfg, fmt.Errorf("config vocab = %d, but dataset %s has a %s vocabulary of %d ids", cfg.Vocab, dir, vocab.Kind(), vocab.Size())
	}
	cfg.Vocab = vocab.Size()
	cfg.Tokenizer = vocab.Spec().Ref()
	return cfg, nil
}

// ErrInterrupted is wrapped by the error Run returns when its context is cancelled (as
// Ctrl-C does): the run then stops after the step under way and writes a checkpoint.
var ErrInterrupted = errors.New("interrupted")

// ErrNonFinite is wrapped by the error Run returns when a loss or gradient norm is NaN
// or infinite; the run stops before the update, and its checkpoints stay as they were.
var ErrNonFinite = errors.New("non-finite loss")

// Result is what a run did.
type Result struct {
	Run       string
	Step      int64 // updates done in all
	Steps     int64 // updates done by this call
	Tokens    int64 // training tokens seen in all
	NumParams int64
	// Seconds and TokPerSec time the training steps of this call only (no validation or
	// checkpoint writing).
	Seconds   float64
	TokPerSec float64
	Valid     *eval.Result // the last validation, if any
	Unit      dataset.Unit
	// Checkpoint is the last checkpoint written and Best the best one ("" if none).
	Checkpoint string
	Best       string
}

// trainer holds a run's state between steps.
type trainer struct {
	o        options
	cfg      lm.Config
	run      string
	reader   *dataset.Reader
	vocab    tokenize.Vocab
	unit     dataset.Unit
	model    *lm.Model
	opt      *Adam
	sched    Schedule
	batcher  *dataset.Batcher
	startID  int64 // the train split's first token, recorded in checkpoints
	keepUpTo int64 // a resume keeps the metrics rows up to its step (-1: keep all)
	mems     []*lm.Memory
	groups   int   // micro-batches per step (per rank in a distributed run)
	w        world // the processes that train the run together
	rank     int   // this process's rank, and the ranks in all (w's)
	world    int
	ctx      context.Context
	step     int64
	tokens   int64
	epoch    int64
	best     float64
	bestStep int64
	metrics  *checkpoint.MetricsWriter
	prog     *progress
	res      Result
}

// Run trains a model of cfg on the dataset in dataDir, writing the run to the folder run:
// config.json, metrics.jsonl, checkpoints/ and best. With WithResume it continues the
// run's latest checkpoint exactly (cfg may then change training settings such as steps,
// not the model's shape). It must be called from a goroutine that holds its OS thread.
func Run(ctx context.Context, cfg lm.Config, dataDir, run string, opts ...Option) (*Result, error) {
	t := &trainer{o: defaultOptions(), run: run}
	for _, o := range opts {
		if err := o(&t.o); err != nil {
			return nil, err
		}
	}
	t.w = t.o.world
	t.rank, t.world = t.w.rank(), t.w.size()
	if err := t.setup(cfg, dataDir); err != nil {
		t.close()
		return nil, err
	}
	defer t.close()
	// TF32 is a process-wide setting of libtorch's: on for this run, off again after it.
	if err := torchrt.SetTF32(t.cfg.Precision == lm.PrecisionTF32); err != nil {
		return nil, err
	}
	defer torchrt.SetTF32(false)
	err := t.loop(ctx)
	if err == nil && t.o.atEnd != nil {
		err = t.o.atEnd(t.model)
	}
	res := t.res
	return &res, err
}

func (t *trainer) close() {
	for _, m := range t.mems {
		m.Drop()
	}
	t.mems = nil
	if t.opt != nil {
		t.opt.Drop()
	}
	if t.metrics != nil {
		t.metrics.Close()
	}
}

// setup sets every rank up: rank 0's config and resume header go to every rank, each sets
// itself up, they agree that all did, rank 0 writes the run folder, and rank 0's state
// (weights, and on a resume the optimizer and the other ranks' memories) goes to the
// others.
func (t *trainer) setup(cfg lm.Config, dataDir string) error {
	if t.rank == 0 {
		// What a killed run left half-written or half-removed goes first (rank 0 alone
		// writes the run folder).
		if err := checkpoint.Clean(t.run); err != nil {
			return err
		}
	} else {
		t.o.out = nil // rank 0 reports for all
	}
	cfg, hdr, resumeDir, err := t.w.start(cfg, t.start)
	if err != nil {
		return err
	}
	if err := t.w.agree(t.setupLocal(cfg, dataDir, hdr, resumeDir)); err != nil {
		return err
	}
	// Every rank is set up: only now does rank 0 write the run folder. If that fails, the
	// others stop at the next bounded wait.
	if t.rank == 0 {
		if err := t.openRun(hdr); err != nil {
			return err
		}
	}
	return t.w.share(t, hdr != nil)
}

// start finds the checkpoint to resume (with WithResume), or checks that the run folder
// holds no run yet.
func (t *trainer) start() (*checkpoint.Header, string, error) {
	if t.o.resume {
		dir, err := checkpoint.Latest(t.run)
		if err != nil {
			return nil, "", err
		}
		if dir == "" {
			return nil, "", fmt.Errorf("--resume: %s holds no checkpoint to resume", t.run)
		}
		hdr, err := checkpoint.ReadHeader(dir)
		if err != nil {
			return nil, "", err
		}
		if !hdr.HasOptim || hdr.Memories == 0 {
			return nil, "", fmt.Errorf("%s: a weights-only checkpoint cannot be resumed exactly", dir)
		}
		return hdr, dir, nil
	}
	if steps, err := checkpoint.Steps(t.run); err != nil {
		return nil, "", err
	} else if len(steps) > 0 {
		return nil, "", fmt.Errorf("%s already holds a run (checkpoints up to step %d): continue it with --resume, or choose another --out", t.run, steps[len(steps)-1])
	}
	return nil, "", nil
}

// setupLocal sets the run up from its config and, when resuming, the checkpoint's
// header (on ranks other than 0 of a distributed run, resumeDir is "": their state comes
// from rank 0 afterwards).
func (t *trainer) setupLocal(cfg lm.Config, dataDir string, hdr *checkpoint.Header, resumeDir string) error {
	o := &t.o
	var err error
	if hdr != nil && dataDir == "" {
		dataDir = hdr.Data.Dir
	}
	if dataDir == "" {
		return errors.New("no dataset folder given")
	}
	r, err := dataset.Open(dataDir)
	if err != nil {
		return err
	}
	t.reader = r
	if t.vocab, err = r.Vocab(); err != nil {
		return err
	}
	if cfg, err = ForData(cfg, t.vocab, dataDir); err != nil {
		return err
	}
	cfg.Accumulate = cfg.EffectiveAccumulate()
	if err := cfg.Validate(); err != nil {
		return err
	}
	t.groups = cfg.Accumulate
	if cfg.Batch%(t.world*t.groups) != 0 {
		return fmt.Errorf("batch = %d streams cannot be shared by %d ranks of %d micro-batches each: it must be a multiple of %d", cfg.Batch, t.world, t.groups, t.world*t.groups)
	}
	t.sched = ScheduleOf(cfg.TrainConfig)
	if t.unit, err = r.Manifest().Unit("train"); err != nil {
		return err
	}
	if t.batcher, err = dataset.NewBatcher(r, "train", cfg.Batch, cfg.Block); err != nil {
		return err
	}
	if t.batcher.Blocks() < 1 {
		return fmt.Errorf("dataset %s: the train split is too short for %d streams of %d-token blocks", dataDir, cfg.Batch, cfg.Block)
	}
	// The token the training texts begin with: a generation from an empty prompt can start
	// from it (checkpoint.Header.StartID). The batcher has loaded the split, so this reads
	// no shard again.
	var first [1]uint32
	if _, err := r.ReadAt("train", 0, first[:]); err != nil {
		return err
	}
	t.startID = int64(first[0])
	if hdr != nil {
		old, err := lm.ParseConfig(hdr.Config)
		if err != nil {
			return fmt.Errorf("%s: %w", resumeDir, err)
		}
		if err := old.SameShape(cfg.ModelConfig); err != nil {
			return fmt.Errorf("--resume: %w", err)
		}
		if hdr.Data.Streams != cfg.Batch || hdr.Data.Block != cfg.Block {
			return fmt.Errorf("--resume: the checkpoint has batch %d, block %d; this run asks for %d, %d: exact resume needs the same", hdr.Data.Streams, hdr.Data.Block, cfg.Batch, cfg.Block)
		}
		// The memories are per group of streams: they map onto this run's groups exactly
		// when there are as many (ranks × micro-batches per rank).
		if hdr.Memories != t.world*cfg.Accumulate {
			return fmt.Errorf("--resume: the checkpoint holds %d stream groups of %d streams (%s); this run would have %d ranks × accumulate %d = %d: the streams' memories map exactly only with ranks × accumulate = %d",
				hdr.Memories, cfg.Batch/hdr.Memories, describeLayout(hdr), t.world, cfg.Accumulate, t.world*cfg.Accumulate, hdr.Memories)
		}
		if old.Tokenizer != cfg.Tokenizer {
			return fmt.Errorf("--resume: dataset %s has another vocabulary (%s) than the checkpoint (%s)", dataDir, cfg.Tokenizer, old.Tokenizer)
		}
	}
	t.cfg = cfg
	torchrt.Seed(cfg.Seed) // the initial weights (rank 0's go to the other ranks)
	if t.model, err = lm.New(cfg, o.dev); err != nil {
		return err
	}
	if o.initFrom != "" && hdr == nil && t.rank == 0 {
		ck, err := checkpoint.Open(o.initFrom)
		if err != nil {
			return fmt.Errorf("--init-from: %w", err)
		}
		if err := ck.Config.SameShape(cfg.ModelConfig); err != nil {
			return fmt.Errorf("--init-from %s: %w", ck.Path, err)
		}
		if ck.Vocab.Spec().Ref() != cfg.Tokenizer {
			return fmt.Errorf("--init-from %s: its vocabulary differs from dataset %s's", ck.Path, dataDir)
		}
		if err := ck.LoadWeights(t.model); err != nil {
			return fmt.Errorf("--init-from: %w", err)
		}
	}
	if t.opt, err = NewAdam(t.model.Parameters(), WithWeightDecay(cfg.WeightDecay)); err != nil {
		return err
	}
	keepUpTo := int64(-1)
	switch {
	case hdr != nil && resumeDir != "":
		if err := t.restore(resumeDir); err != nil {
			return err
		}
		keepUpTo = t.step
	case hdr != nil:
		// A rank other than 0: the position from the header rank 0 sent, the memories
		// from rank 0 once every rank is set up. The epoch's start offset is a function
		// of the seed and the epoch: the same on every rank.
		if err := t.batcher.SetStart(t.epochStart(hdr.Data.Epoch)); err != nil {
			return fmt.Errorf("epoch %d: %w", hdr.Data.Epoch, err)
		}
		if err := t.batcher.SetPosition(hdr.Data.Position); err != nil {
			return fmt.Errorf("data position: %w", err)
		}
		t.step, t.tokens, t.epoch = hdr.Step, hdr.Tokens, hdr.Data.Epoch
		t.best, t.bestStep = hdr.BestValid, hdr.BestStep
	default:
		for i := 0; i < t.groups; i++ {
			t.mems = append(t.mems, t.model.NewMemory(t.groupStreams()))
		}
	}
	t.res = Result{Run: t.run, NumParams: t.model.NumParams(), Unit: t.unit, Step: t.step, Tokens: t.tokens}
	t.keepUpTo = keepUpTo
	return nil
}

// openRun writes the run folder (rank 0): its config (t.cfg) and the metrics file, kept up to
// the resumed step on a resume, emptied for a fresh run. It runs once everything that can
// refuse the run was checked (on every rank), so that a refused run leaves nothing behind.
func (t *trainer) openRun(hdr *checkpoint.Header) error {
	if err := os.MkdirAll(t.run, 0o755); err != nil {
		return err
	}
	if err := checkpoint.WriteRunConfig(t.run, t.cfg); err != nil { // as set up: vocab and tokenizer from the dataset
		return err
	}
	mpath := filepath.Join(t.run, checkpoint.MetricsName)
	if hdr == nil {
		// A fresh run: a metrics file left by an attempt without checkpoints goes.
		if err := os.Remove(mpath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	var err error
	if t.metrics, err = checkpoint.OpenMetrics(mpath, t.keepUpTo); err != nil {
		return err
	}
	return nil
}

// restore loads a checkpoint's full state for an exact resume.
func (t *trainer) restore(dir string) error {
	ck, err := checkpoint.Open(dir)
	if err != nil {
		return err
	}
	h := ck.Header
	if err := ck.LoadWeights(t.model); err != nil {
		return err
	}
	if err := ck.LoadOptim(t.opt, t.o.dev); err != nil {
		return err
	}
	// Every rank's memories, loaded (and so checked against the HEADER) here: this
	// rank's groups' first, the others' held for them until the world shares them.
	var others []*lm.Memory
	for i := 0; i < t.world*t.groups; i++ {
		mem, err := ck.LoadMemory(t.model, i)
		if err == nil && i < t.groups && mem.Batch() != t.groupStreams() {
			mem.Drop()
			err = fmt.Errorf("%s: memory %d holds %d streams, want %d", dir, i, mem.Batch(), t.groupStreams())
		}
		if err != nil {
			dropMemories(others)
			return err
		}
		if i < t.groups {
			t.mems = append(t.mems, mem)
		} else {
			others = append(others, mem)
		}
	}
	if err := t.w.hold(others); err != nil {
		return err
	}
	if err := t.batcher.SetStart(t.epochStart(h.Data.Epoch)); err != nil {
		return fmt.Errorf("%s: epoch %d: %w", dir, h.Data.Epoch, err)
	}
	if err := t.batcher.SetPosition(h.Data.Position); err != nil {
		return fmt.Errorf("%s: data position: %w", dir, err)
	}
	t.step, t.tokens, t.epoch = h.Step, h.Tokens, h.Data.Epoch
	t.best, t.bestStep = h.BestValid, h.BestStep
	return nil
}

// epochStart is where the streams of an epoch begin: 0 in the first, then an offset
// below M drawn from the run's seed and the epoch (the reference draws one at random
// after each pass, so that blocks do not always fall on the same boundaries). Being a
// function of the seed and the epoch, it needs nothing in the checkpoint to resume.
// Streams of examples (the copy task) keep their boundaries.
func (t *trainer) epochStart(epoch int64) int64 {
	if epoch == 0 || t.batcher.ExampleLen() > 0 {
		return 0
	}
	r := rand.New(rand.NewPCG(uint64(t.cfg.Seed), uint64(epoch)^0x5eed))
	return r.Int64N(int64(t.cfg.Block))
}

// stepSeed is the seed of both generators at a step.
func stepSeed(seed, step int64) int64 { return seed*1000003 + step }

// groupSeed is the seed of both generators for the micro-batch of stream group gi (counted
// over all ranks) at a step: group 0's is stepSeed, and every group draws its own, so that
// the span noise and dropout of a group do not depend on how the groups are shared out
// among ranks.
func groupSeed(seed, step int64, gi int) int64 {
	if gi == 0 {
		return stepSeed(seed, step)
	}
	return stepSeed(seed, step)*1000003 + int64(gi)
}

// groupStreams is the number of streams of each micro-batch.
func (t *trainer) groupStreams() int { return t.cfg.Batch / (t.world * t.groups) }

// stepOut is what one training step measured.
type stepOut struct {
	loss, span, norm float64
	stats            lm.Stats
	bad              error   // a non-finite loss or a failed micro-step, noted to be agreed on by every rank
	failed           bool    // bad is a failed micro-step (an op or an error), not a non-finite loss
	stop             bool    // a rank was asked to stop (distributed runs)
	reduceSecs       float64 // spent in all-reduce (distributed runs)
}

// trainStep takes one optimiser step over the next block of every stream.
func (t *trainer) trainStep() (_ *stepOut, err error) {
	// A failed libtorch op fails this step, not the process: the run stops with the error
	// and the last checkpoint stands.
	defer torchrt.Recover(&err)
	ids, mask, err := t.next()
	if errors.Is(err, io.EOF) {
		// A new epoch: the streams start over at another offset, with fresh memories.
		t.epoch++
		if err := t.batcher.SetStart(t.epochStart(t.epoch)); err != nil {
			return nil, err
		}
		for i, m := range t.mems {
			m.Drop()
			t.mems[i] = t.model.NewMemory(m.Batch())
		}
		ids, mask, err = t.next()
	}
	if err != nil {
		return nil, err
	}
	t.opt.ZeroGrad()
	out := &stepOut{}
	rows := int64(t.groupStreams())
	width := int64(t.cfg.Block + 1)
	for g := 0; g < t.groups; g++ {
		// This rank's groups are the rank-th share of the global batch's streams.
		gi := t.rank*t.groups + g
		first := int64(gi) * rows
		var m []float32
		if mask != nil {
			m = mask[first*(width-1) : (first+rows)*(width-1)]
		}
		rng := torchrt.Seed(groupSeed(t.cfg.Seed, t.step, gi))
		if err := t.microStepRecover(ids[first*width:(first+rows)*width], m, rows, width, g, rng, out); err != nil {
			out.bad, out.failed = err, true
		}
		if out.bad != nil {
			// The step is lost. The other ranks hear of it in the step's reduction, not by
			// a missing rank.
			break
		}
	}
	out.loss /= float64(t.groups)
	out.span /= float64(t.groups)
	if err := t.w.reduceStep(t, out); err != nil {
		return nil, err
	}
	if out.bad != nil {
		return nil, out.bad
	}
	if out.norm = ClipGradNorm(t.model.Parameters(), t.cfg.Clip); math.IsNaN(out.norm) || math.IsInf(out.norm, 0) {
		return nil, fmt.Errorf("step %d: gradient norm is %v: %w", t.step+1, out.norm, ErrNonFinite)
	}
	if err := t.opt.Step(t.sched.LR(t.step)); err != nil {
		return nil, err
	}
	return out, nil
}

// next returns the next block's ids, and its scored mask when the dataset has one.
func (t *trainer) next() ([]int64, []float32, error) {
	if t.batcher.HasMask() {
		return t.batcher.NextWithMask()
	}
	ids, err := t.batcher.Next()
	return ids, nil, err
}

// microStepRecover is microStep with a failed libtorch op made its error.
func (t *trainer) microStepRecover(ids []int64, mask []float32, rows, width int64, g int, rng *rand.Rand, out *stepOut) (err error) {
	defer torchrt.Recover(&err)
	return t.microStep(ids, mask, rows, width, g, rng, out)
}

func (t *trainer) microStep(ids []int64, mask []float32, rows, width int64, g int, rng *rand.Rand, out *stepOut) error {
	if t.o.atMicro != nil {
		t.o.atMicro(t.step+1, g)
	}
	x, err := torchrt.FromSlice(ids, []int64{rows, width}, t.o.dev)
	if err != nil {
		return err
	}
	if t.cfg.Precision == lm.PrecisionBF16 {
		// Autocast spans the backward pass too: the recomputing path runs its forward there.
		end, err := torchrt.Autocast(t.o.dev, gotch.BFloat16)
		if err != nil {
			return err
		}
		defer end()
	}
	o := lm.StepOptions{Train: true, RNG: rng}
	if mask != nil {
		o.Mask = torchrt.MustFromSlice(mask, []int64{rows, width - 1}, t.o.dev)
		defer o.Mask.MustDrop()
	}
	sr, err := t.model.Step(t.mems[g], x, o)
	x.MustDrop()
	if err != nil {
		return err
	}
	defer sr.Drop()
	loss := torchrt.Float64(sr.TaskLoss)
	span := 0.0
	if sr.SpanLoss != nil {
		span = torchrt.Float64(sr.SpanLoss)
	}
	if math.IsNaN(loss) || math.IsInf(loss, 0) || math.IsNaN(span) || math.IsInf(span, 0) {
		// The other ranks must hear of it in the step's reduction, not by a missing rank.
		if out.bad == nil {
			out.bad = fmt.Errorf("step %d: loss is %v (span loss %v): %w", t.step+1, loss, span, ErrNonFinite)
		}
		return nil
	}
	if err := sr.Backward(1 / float64(t.groups)); err != nil {
		return err
	}
	out.loss += loss
	out.span += span
	if g == 0 {
		out.stats = sr.Stats
	} else {
		for l := range out.stats.MeanSpan {
			out.stats.MeanSpan[l] = (out.stats.MeanSpan[l]*float64(g) + sr.Stats.MeanSpan[l]) / float64(g+1)
			out.stats.MaxSpan[l] = max(out.stats.MaxSpan[l], sr.Stats.MaxSpan[l])
			out.stats.Live[l] = (out.stats.Live[l]*float64(g) + sr.Stats.Live[l]) / float64(g+1)
		}
	}
	return nil
}

// checkpoint writes the current state as a checkpoint and prunes old ones.
func (t *trainer) checkpoint(valid *eval.Result) (string, error) {
	h := checkpoint.Header{
		Step: t.step, Tokens: t.tokens,
		Data: checkpoint.DataState{Dir: t.reader.Dir(), Split: "train", Streams: t.cfg.Batch, Block: t.cfg.Block,
			Position: t.batcher.Position(), StreamLen: t.batcher.StreamLen(), Epoch: t.epoch},
		RNG:       checkpoint.RNGState{Seed: t.cfg.Seed, Scheme: "per step and stream group: libtorch and Go generators seeded with seed*1000003+step (group 0), or that times 1000003 plus the group"},
		Vocab:     checkpoint.NewVocabRef(t.vocab, t.reader.Dir()),
		StartID:   &t.startID,
		BestValid: t.best, BestStep: t.bestStep,
		Threads: torchrt.Threads(),
		Device:  torchrt.DeviceName(t.o.dev),
		Time:    time.Now().UTC().Format(time.RFC3339),
	}
	if valid != nil && valid.Tokens > 0 {
		h.Valid = valid.Summary()
	}
	// Rank 0 writes every rank's memories, in stream order.
	mems, free, err := t.w.gather(t)
	if err != nil || t.rank != 0 {
		return "", err
	}
	defer free()
	if t.world > 1 {
		h.World = t.world
	}
	dir, err := checkpoint.Write(t.run, &checkpoint.State{Header: h, Model: t.model, Optim: t.opt, Memories: mems, Vocab: t.vocab})
	if err != nil {
		return "", err
	}
	t.res.Checkpoint = dir
	if err := checkpoint.Prune(t.run, t.o.keep); err != nil {
		return dir, err
	}
	return dir, nil
}
