package train

import (
	"context"

	"xspan/checkpoint"
	"xspan/lm"
)

// A world is the processes that train one run together, as the trainer sees them: one
// process alone (solo, below) or the ranks of a process group (ranks, distributed.go).
// The trainer runs the same steps in both; every method is the identity or does nothing
// for a process alone. Every rank makes the same calls in the same order.
//
// The random state needs no sharing: it is a function of the seed, the step and the
// stream group (groupSeed), the same wherever a group runs.
type world interface {
	// rank is this process's rank (0 alone), size the ranks in all (1 alone).
	rank() int
	size() int
	// describe is the log line that says how the run is laid out ("" alone).
	describe(t *trainer) string
	// stopBeforeStep tells whether to stop before the next step. A process alone stops as
	// soon as ctx is cancelled; ranks learn of it in reduceStep, so that every rank stops
	// after the same step.
	stopBeforeStep(ctx context.Context) bool
	// start runs begin on rank 0 and gives every rank rank 0's config, resume header
	// and resume folder (the folder only to rank 0, which alone reads it).
	start(cfg lm.Config, begin func() (*checkpoint.Header, string, error)) (lm.Config, *checkpoint.Header, string, error)
	// agree returns setupErr, or an error when another rank failed its set-up.
	agree(setupErr error) error
	// share gives every rank rank 0's state: its weights and, on a resume, its
	// optimizer's and each rank's memories (those that hold holds).
	share(t *trainer, resumed bool) error
	// hold keeps, on rank 0 of a resume, the other ranks' memories (in rank order, as
	// many per rank as this rank has) until share sends them; it takes mems.
	hold(mems []*lm.Memory) error
	// reduceStep agrees on a step over the ranks: the losses and statistics are averaged,
	// a non-finite loss, a failed micro-step or a stop request anywhere is everyone's,
	// and the gradients are averaged (unless the step is dropped).
	reduceStep(t *trainer, out *stepOut) error
	// validate runs run on rank 0 while the others wait, and gives every rank the bpc.
	validate(run func() (*validOut, error)) (*validOut, error)
	// gather returns, on rank 0, every rank's memories in stream order and the function
	// that frees those it made; elsewhere it sends this rank's and returns nil.
	gather(t *trainer) ([]*lm.Memory, func(), error)
}

// solo is a process that trains alone.
type solo struct{}

func (solo) rank() int                { return 0 }
func (solo) size() int                { return 1 }
func (solo) describe(*trainer) string { return "" }

func (solo) stopBeforeStep(ctx context.Context) bool { return ctx.Err() != nil }

func (solo) start(cfg lm.Config, begin func() (*checkpoint.Header, string, error)) (lm.Config, *checkpoint.Header, string, error) {
	hdr, dir, err := begin()
	return cfg, hdr, dir, err
}

func (solo) agree(setupErr error) error          { return setupErr }
func (solo) share(*trainer, bool) error          { return nil }
func (solo) hold(mems []*lm.Memory) error        { dropMemories(mems); return nil }
func (solo) reduceStep(*trainer, *stepOut) error { return nil }

func (solo) validate(run func() (*validOut, error)) (*validOut, error) { return run() }

func (solo) gather(t *trainer) ([]*lm.Memory, func(), error) { return t.mems, func() {}, nil }
