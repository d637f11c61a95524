package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"time"

	"xspan/checkpoint"
	"xspan/eval"
	"xspan/internal/torchrt"
)

// interval accumulates the figures of the steps since the last logged row.
type interval struct {
	n                              int
	loss, span, norm, secs, reduce float64
	tokens                         int64
}

func (t *trainer) loop(ctx context.Context) error {
	total := int64(t.cfg.Steps)
	t.ctx = ctx
	t.prog = newProgress(t.o.out, t.step, total, t.o.bar)
	defer t.prog.finish()
	_, hasValid := t.splitLen("valid")
	if t.step > 0 {
		t.prog.logf("resumed %s at step %d (%d tokens seen)", t.run, t.step, t.tokens)
	}
	t.prog.logf("model: %d parameters, %d layers, dim %d; %s, %d intra-op threads; %d steps of %d×%d tokens",
		t.res.NumParams, t.cfg.Layers, t.cfg.Dim, torchrt.DeviceName(t.o.dev), torchrt.Threads(), total, t.cfg.Batch, t.cfg.Block)
	if d := t.w.describe(t); d != "" {
		t.prog.logf("%s", d)
	}
	if !hasValid {
		t.prog.logf("dataset has no valid split: no validation, no best checkpoint")
	}
	var iv interval
	var valid *eval.Result
	first := t.step
	wall := time.Now()
	torchrt.ResetCUDAPeak(t.o.dev)
	for t.step < total {
		// Ranks learn of a stop request in the step's reduction instead, so that every
		// rank stops after the same step.
		if t.w.stopBeforeStep(ctx) {
			return t.interrupted()
		}
		t0 := time.Now()
		out, err := t.trainStep()
		if err != nil {
			if errors.Is(err, ErrNonFinite) || errors.Is(err, torchrt.ErrLibtorch) {
				last, _ := checkpoint.Latest(t.run)
				if last == "" {
					last = "none written yet"
				}
				if !errors.Is(err, ErrNonFinite) {
					err = fmt.Errorf("step %d: %w", t.step+1, err)
				}
				return fmt.Errorf("%w; the run stopped; last good checkpoint: %s", err, last)
			}
			return err
		}
		// Tensors that the model leaves to gotch's finalizers are freed only when Go's
		// collector runs, which C memory does not prompt: run it once a step.
		runtime.GC()
		dt := time.Since(t0).Seconds()
		t.step++
		stepTokens := int64(t.cfg.Batch * t.cfg.Block)
		t.tokens += stepTokens
		t.res.Seconds += dt
		t.res.Steps = t.step - first
		t.res.Step, t.res.Tokens = t.step, t.tokens
		iv.n++
		iv.loss += out.loss
		iv.span += out.span
		iv.norm += out.norm
		iv.secs += dt
		iv.reduce += out.reduceSecs
		iv.tokens += stepTokens
		lr := t.sched.LR(t.step - 1)
		if t.o.onStep != nil {
			t.o.onStep(t.step, &checkpoint.Row{Kind: checkpoint.RowTrain, Step: t.step, Tokens: t.tokens, Loss: out.loss,
				BPC: out.loss / math.Ln2 / t.unit.PerToken, SpanLoss: out.span, LR: lr, GradNorm: out.norm,
				MeanSpan: out.stats.MeanSpan, MaxSpan: out.stats.MaxSpan, Live: out.stats.Live})
		}
		if t.step%int64(t.o.logEvery) == 0 || t.step == total {
			n := float64(iv.n)
			row := &checkpoint.Row{Kind: checkpoint.RowTrain, Step: t.step, Tokens: t.tokens, Time: time.Since(wall).Seconds(),
				Loss: iv.loss / n, BPC: iv.loss / n / math.Ln2 / t.unit.PerToken, SpanLoss: iv.span / n, LR: lr,
				GradNorm: iv.norm / n, TokPerSec: float64(iv.tokens) / iv.secs,
				MeanSpan: out.stats.MeanSpan, MaxSpan: out.stats.MaxSpan, Live: out.stats.Live,
				RSS: float64(torchrt.RSS()) / (1 << 20)}
			if t.world > 1 {
				row.World, row.AllReduceMS = t.world, iv.reduce/n*1000
			}
			if _, peak, ok := torchrt.CUDAMemory(t.o.dev); ok {
				row.GPUPeak = float64(peak) / (1 << 20)
			}
			if t.metrics != nil {
				if err := t.metrics.Write(row); err != nil {
					return err
				}
			}
			t.prog.step(t.step, row, true)
			iv = interval{}
		} else {
			row := &checkpoint.Row{Loss: out.loss, BPC: out.loss / math.Ln2 / t.unit.PerToken, TokPerSec: float64(stepTokens) / dt, LR: lr, GradNorm: out.norm}
			if t.prog.bar != nil {
				row.RSS = float64(torchrt.RSS()) / (1 << 20)
			}
			t.prog.step(t.step, row, false)
		}
		if out.stop {
			return t.interrupted()
		}
		last := t.step == total
		ckptNow := (t.cfg.CkptEvery > 0 && t.step%int64(t.cfg.CkptEvery) == 0) || last
		evalNow := hasValid && ((t.cfg.EvalEvery > 0 && t.step%int64(t.cfg.EvalEvery) == 0) || (last && !t.o.noFinal))
		improved := false
		valid = nil
		if evalNow {
			vo, err := t.validateAll(ctx, wall)
			if err != nil {
				return err
			}
			if vo.canceled {
				return t.interrupted()
			}
			v := vo.v
			valid = v
			t.res.Valid = v
			if t.best == 0 || v.BPC < t.best {
				t.best, t.bestStep, improved = v.BPC, t.step, true
				ckptNow = true
			}
		}
		if ckptNow {
			dir, err := t.checkpoint(valid)
			if err != nil {
				return err
			}
			if improved && t.rank == 0 {
				if err := checkpoint.SetBest(t.run, t.step); err != nil {
					return err
				}
				t.res.Best = dir
			}
		}
	}
	if t.res.Seconds > 0 {
		t.res.TokPerSec = float64(t.res.Steps*int64(t.cfg.Batch*t.cfg.Block)) / t.res.Seconds
	}
	if t.res.Checkpoint == "" {
		// Nothing to do (steps already reached): the latest checkpoint stands.
		if t.step == 0 {
			if _, err := t.checkpoint(nil); err != nil {
				return err
			}
		} else {
			t.res.Checkpoint, _ = checkpoint.Latest(t.run)
		}
	}
	if t.res.Best == "" {
		t.res.Best, _ = checkpoint.Best(t.run)
	}
	return nil
}

// interrupted writes a checkpoint of the last complete step and returns the error that
// says so.
func (t *trainer) interrupted() error {
	t.prog.logf("interrupted: writing a checkpoint of step %d", t.step)
	dir, err := t.checkpoint(nil)
	if err != nil {
		return fmt.Errorf("%w at step %d, and the checkpoint failed: %v", ErrInterrupted, t.step, err)
	}
	if t.rank != 0 {
		return fmt.Errorf("%w at step %d: rank %d stopped; rank 0 wrote the checkpoint", ErrInterrupted, t.step, t.rank)
	}
	return fmt.Errorf("%w at step %d: checkpoint %s written; continue with --resume", ErrInterrupted, t.step, dir)
}

// validOut is a validation's result, or that it was interrupted.
type validOut struct {
	v        *eval.Result
	canceled bool
}

func stubResult(bpc float64) *eval.Result { return &eval.Result{BPC: bpc} }

// validateAll validates: in a distributed run on rank 0, the others getting the bpc.
func (t *trainer) validateAll(ctx context.Context, wall time.Time) (*validOut, error) {
	run := func() (*validOut, error) {
		v, err := t.validate(ctx, wall)
		if errors.Is(err, context.Canceled) {
			return &validOut{canceled: true}, nil
		}
		if err != nil {
			return nil, err
		}
		return &validOut{v: v}, nil
	}
	return t.w.validate(run)
}

// validate measures the model on the valid split and logs it.
func (t *trainer) validate(ctx context.Context, wall time.Time) (*eval.Result, error) {
	b := t.o.evalBatch
	if b == 0 {
		b = t.cfg.Batch
	}
	v, err := eval.Run(ctx, t.model, t.reader, "valid", eval.WithBatch(b), eval.WithMaxBlocks(t.o.evalBlocks))
	if err != nil {
		return nil, fmt.Errorf("validation at step %d: %w", t.step, err)
	}
	row := &checkpoint.Row{Kind: checkpoint.RowEval, Step: t.step, Tokens: t.tokens, Time: time.Since(wall).Seconds(), Split: "valid",
		Loss: v.Loss, BPC: v.BPC, BitsPerToken: v.BitsPerToken, Unit: v.Unit.Name, EvalTokens: v.Tokens,
		MeanSpan: v.MeanSpan, Live: v.MeanLive}
	if err := t.metrics.Write(row); err != nil {
		return nil, err
	}
	t.prog.logf("step %d: valid %s %.4f (%s; %d tokens, batch %d, %.1fs)", t.step, v.Unit.Abbrev, v.BPC, v.Unit.Name, v.Tokens, v.Batch, v.Seconds)
	return v, nil
}

// splitLen returns a split's length and whether the dataset has it.
func (t *trainer) splitLen(split string) (int64, bool) {
	n, err := t.reader.SplitLen(split)
	return n, err == nil && n > 1
}
