package train

import (
	"fmt"
	"io"
	"os"

	"github.com/sugarme/gotch"

	"xspan/checkpoint"
	"xspan/lm"
)

type options struct {
	dev        gotch.Device
	out        io.Writer
	bar        bool
	resume     bool
	initFrom   string
	keep       int
	logEvery   int
	evalBatch  int
	evalBlocks int64
	onStep     func(step int64, r *checkpoint.Row)
	noFinal    bool
	world      world                   // how the ranks share the run (solo: one process)
	atEnd      func(m *lm.Model) error // tests: sees the model before Run frees it
	atMicro    func(step int64, g int) // tests: called before each micro-step (to fail one)
}

// Option configures Run.
type Option func(*options) error

func defaultOptions() options {
	return options{dev: gotch.CPU, out: os.Stderr, bar: true, keep: 3, logEvery: 10, world: solo{}}
}

// WithDevice sets the device to train on (default the CPU).
func WithDevice(dev gotch.Device) Option {
	return func(o *options) error { o.dev = dev; return nil }
}

// WithOutput sets where progress and notes go (default os.Stderr; nil: nowhere).
func WithOutput(w io.Writer) Option {
	return func(o *options) error { o.out = w; return nil }
}

// WithProgressBar turns the progress bar on a terminal on or off (default on); off, or
// off a terminal, progress is plain lines.
func WithProgressBar(on bool) Option {
	return func(o *options) error { o.bar = on; return nil }
}

// WithResume continues the run folder's latest checkpoint exactly, instead of starting a
// new run (which refuses a folder that already holds checkpoints).
func WithResume(on bool) Option {
	return func(o *options) error { o.resume = on; return nil }
}

// WithInitFrom starts from the weights of a checkpoint (a path or run as for
// checkpoint.Load) of the same model shape: fine-tuning, with a fresh optimiser.
func WithInitFrom(pathOrRun string) Option {
	return func(o *options) error { o.initFrom = pathOrRun; return nil }
}

// WithKeep sets how many of the latest checkpoints are kept besides the best (default 3;
// 0 keeps all).
func WithKeep(k int) Option {
	return func(o *options) error {
		if k < 0 {
			return fmt.Errorf("keep %d: want ≥ 0", k)
		}
		o.keep = k
		return nil
	}
}

// WithLogEvery sets how many steps each metrics row and progress line covers (default 10).
func WithLogEvery(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("log every %d: want ≥ 1", n)
		}
		o.logEvery = n
		return nil
	}
}

// WithValidBatch sets the streams of the validations during training (default 0: the
// training batch).
func WithValidBatch(b int) Option {
	return func(o *options) error {
		if b < 0 {
			return fmt.Errorf("validation batch %d: want ≥ 1, or 0 for the training batch", b)
		}
		o.evalBatch = b
		return nil
	}
}

// WithValidBlocks limits each validation during training to the first n blocks of every
// stream (default 0: the whole split).
func WithValidBlocks(n int64) Option {
	return func(o *options) error { o.evalBlocks = n; return nil }
}

// WithOnStep sets a function called after every step with the step's figures (Tokens,
// Loss, BPC, SpanLoss, LR, GradNorm of that step alone).
func WithOnStep(fn func(step int64, r *checkpoint.Row)) Option {
	return func(o *options) error { o.onStep = fn; return nil }
}

// WithoutFinalEval skips the validation at the end of the run.
func WithoutFinalEval() Option {
	return func(o *options) error { o.noFinal = true; return nil }
}
