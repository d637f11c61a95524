// Package eval measures a language model on a split of a dataset: loss, bits per token
// and bits per character in the dataset's unit, the live memory per layer, the copy
// accuracy on the copy task, a per-token dump (bits and spans), and samples of the spans
// the model gives a stretch of text. The split is read in order with the memory carried
// from block to block, as generation would see it.
//
// Every function that calls libtorch must run on a goroutine that holds its OS thread
// (torchrt.Lock); Run takes its own lock.
package eval

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"time"

	"github.com/sugarme/gotch"

	"xspan/checkpoint"
	"xspan/dataset"
	"xspan/expirespan"
	"xspan/internal/torchrt"
	"xspan/lm"
	"xspan/tokenize"
)

// Result is the outcome of Run.
type Result struct {
	Split string `json:"split"`
	Batch int    `json:"batch"`
	// Protocol is "one-stream" (the default: the whole split as one stream, scored to its
	// last token) or "streams" (WithStreams: the reference implementation's protocol,
	// Batch contiguous streams, each stream's tail shorter than a block left unscored).
	Protocol string `json:"protocol"`
	// Prune is the pruning rule the memory followed: "per-key", "rectangular" or
	// "last-l" (the baseline).
	Prune  string `json:"prune"`
	Tokens int64  `json:"tokens"` // targets scored
	// Skipped is the number of the split's tokens never scored: the first (never a
	// target), and with batch B > 1 the split's remainder and each stream's tail.
	Skipped      int64        `json:"skipped"`
	Loss         float64      `json:"loss"` // mean NLL, nats per token
	BitsPerToken float64      `json:"bits_per_token"`
	BPC          float64      `json:"bpc"` // in Unit
	Unit         dataset.Unit `json:"unit"`
	// MeanLive is, per layer, the mean number of keys in memory per stream over the
	// blocks; MeanSpan the mean predicted span of the keys attended over.
	MeanLive []float64 `json:"mean_live"`
	MeanSpan []float64 `json:"mean_span"`
	Dropped  int64     `json:"dropped"` // keys dropped by pruning, all layers and streams
	Seconds  float64   `json:"seconds"`
	// Copy is the copy accuracy on a split with a scored mask (the copy task); nil
	// without a mask.
	Copy *CopyAccuracy `json:"copy,omitempty"`
}

// Summary returns the part of r that checkpoints and metrics keep.
func (r *Result) Summary() *checkpoint.EvalSummary {
	return &checkpoint.EvalSummary{Split: r.Split, Loss: r.Loss, BitsPerToken: r.BitsPerToken, BPC: r.BPC, Unit: r.Unit.Name, Tokens: r.Tokens}
}

type config struct {
	batch     int
	streams   bool // the reference's protocol: no tail block, even for one stream
	rule      *expirespan.Rule
	maxBlocks int64
	live      func(block int64, live []float64)
	dump      io.Writer
	vocab     tokenize.Vocab
	progress  func(done, total int64)
	spans     func(layer int, spans []float32)
}

// Option configures Run.
type Option func(*config) error

// WithBatch sets the number of parallel streams (default 1: the whole split as one
// stream, scored to its last token, with exact per-key pruning). For b > 1 it is
// WithStreams(b); WithBatch(1) keeps the one-stream protocol.
func WithBatch(b int) Option {
	return func(c *config) error {
		if b < 1 {
			return fmt.Errorf("eval batch %d: want ≥ 1", b)
		}
		c.batch = b
		return nil
	}
}

// WithStreams selects the reference implementation's evaluation protocol: the split cut
// into n contiguous streams of len/n tokens (its batchify; the last len mod n tokens
// unused), each from a fresh memory, read block by block, each stream's tail shorter
// than a block left unscored (for n = 1 too), and the memory pruned with the reference's
// rectangular rule unless WithRule says otherwise. The reference's enwik8 test figure
// used 128 streams.
func WithStreams(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("eval streams %d: want ≥ 1", n)
		}
		c.batch, c.streams = n, true
		return nil
	}
}

// WithRule sets the memory's pruning rule: expirespan.PerKey (exact: every dead key
// dropped at once; one stream only) or expirespan.Rectangular (the reference's rule:
// dead keys dropped in whole blocks, as many per stream as the stream with the fewest
// has). Both give the same log-probabilities; they differ in the keys kept. The default
// is per-key for one stream without WithStreams, rectangular otherwise. A model without
// expiry always keeps its last MaxSpan keys.
func WithRule(r expirespan.Rule) Option {
	return func(c *config) error {
		if r != expirespan.PerKey && r != expirespan.Rectangular {
			return fmt.Errorf("eval: pruning rule %d: want per-key or rectangular", r)
		}
		c.rule = &r
		return nil
	}
}

// WithBlockLive sets a function called after each block with its index and, per layer,
// the keys in memory per stream: what the next block attends over besides its own.
func WithBlockLive(fn func(block int64, live []float64)) Option {
	return func(c *config) error { c.live = fn; return nil }
}

// RuleName names a pruning rule as Result.Prune does.
func RuleName(r expirespan.Rule) string {
	switch r {
	case expirespan.PerKey:
		return "per-key"
	case expirespan.Rectangular:
		return "rectangular"
	case expirespan.LastL:
		return "last-l"
	case expirespan.KeepAll:
		return "keep-all"
	}
	return fmt.Sprintf("rule-%d", int(r))
}

// WithMaxBlocks stops after n blocks per stream (n ≤ 0: the whole split).
func WithMaxBlocks(n int64) Option {
	return func(c *config) error { c.maxBlocks = n; return nil }
}

// WithDump writes one JSON object per token of the split to w: its position, id and text,
// "bits" for predicting it, "span", per layer, the span the model gave it as a memory,
// and "unscored" for a token a scored mask leaves out of the loss.
// It needs batch 1; vocab decodes the text (nil: no text).
func WithDump(w io.Writer, vocab tokenize.Vocab) Option {
	return func(c *config) error { c.dump, c.vocab = w, vocab; return nil }
}

// WithProgress sets a function called after each block with blocks done and total.
func WithProgress(fn func(done, total int64)) Option {
	return func(c *config) error { c.progress = fn; return nil }
}

// withSpans sets a function called after each block of batch 1 with, per layer, the
// spans of the block's input tokens.
func withSpans(fn func(layer int, spans []float32)) Option {
	return func(c *config) error { c.spans = fn; return nil }
}

// Run reads a split of r in order with the memory carried from block to block and
// returns the model's loss on it. The model's weights are not changed, and no gradient is
// kept.
func Run(ctx context.Context, m *lm.Model, r *dataset.Reader, split string, opts ...Option) (_ *Result, err error) {
	defer torchrt.Lock()()
	// A failed libtorch op fails this evaluation, not the process.
	defer torchrt.Recover(&err)
	c := config{batch: 1}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	if c.dump != nil && c.batch != 1 {
		return nil, errors.New("a per-token dump needs batch 1")
	}
	unit, err := r.Manifest().Unit(split)
	if err != nil {
		return nil, err
	}
	splitLen, err := r.SplitLen(split)
	if err != nil {
		return nil, err
	}
	block := m.Cfg.Block
	bt, err := dataset.NewBatcher(r, split, c.batch, block)
	if err != nil {
		return nil, err
	}
	defer torchrt.NoGrad()()

	start := time.Now()
	mem := m.NewMemory(c.batch)
	defer mem.Drop()
	if c.rule == nil && c.streams && m.Cfg.Expire {
		r := expirespan.Rectangular
		c.rule = &r
	}
	if c.rule != nil && m.Cfg.Expire {
		if *c.rule == expirespan.PerKey && c.batch > 1 {
			return nil, fmt.Errorf("per-key pruning needs one stream, not %d (streams must keep equally many keys: use rectangular)", c.batch)
		}
		mem.Rule = *c.rule
	}
	layers := m.Cfg.Layers
	res := &Result{Split: split, Batch: c.batch, Protocol: "one-stream", Prune: RuleName(mem.Rule), Unit: unit,
		MeanLive: make([]float64, layers), MeanSpan: make([]float64, layers)}
	if c.streams || c.batch > 1 {
		res.Protocol = "streams"
	}
	total := bt.Blocks()
	if c.maxBlocks > 0 && c.maxBlocks < total {
		total = c.maxBlocks
	}
	var dw *bufio.Writer
	var pending *dumpLine // the last token of the previous block, waiting for its span
	if c.dump != nil {
		dw = bufio.NewWriter(c.dump)
	}
	// On a split with a scored mask, the argmax of the log-probabilities is the greedy
	// prediction that copy accuracy scores.
	var counter *copyCounter
	if bt.HasMask() {
		if counter, err = newCopyCounter(r, split, bt.ExampleLen()); err != nil {
			return nil, err
		}
	}
	var nats float64
	var blocks int64
	// runBlock runs one block of b rows of t+1 tokens; pos is the split position of the
	// block's token 0 with batch 1 (for the dump), offset(row) that of row's token 0.
	runBlock := func(ids []int64, mask []float32, b, t int, pos int64, offset func(row int) int64) error {
		x, err := torchrt.FromSlice(ids, []int64{int64(b), int64(t + 1)}, m.Device())
		if err != nil {
			return err
		}
		sr, err := m.Step(mem, x, lm.StepOptions{LogProbs: counter != nil})
		x.MustDrop()
		if err != nil {
			return err
		}
		defer sr.Drop()
		var pred []int64 // the argmax per target, row-major
		if counter != nil {
			am := sr.LogProbs.MustArgmax([]int64{-1}, false, false)
			pred = torchrt.Int64s(am)
			am.MustDrop()
		}
		meanSpan := sr.Stats.MeanSpan
		var s float64
		if mask == nil {
			sum := sr.TokenNLL.MustSum(gotch.Double, false)
			s = torchrt.Float64(sum)
			sum.MustDrop()
			res.Tokens += int64(b * t)
		} else {
			for i, v := range torchrt.Float64s(sr.TokenNLL) {
				if mask[i] == 0 {
					continue
				}
				s += v
				res.Tokens++
				if counter != nil {
					row, j := i/t, i%t
					counter.add(offset(row)+1+int64(j), pred[i] == ids[row*(t+1)+j+1])
				}
			}
		}
		if math.IsNaN(s) || math.IsInf(s, 0) {
			return fmt.Errorf("%s block %d: loss is %v", split, blocks, s)
		}
		nats += s
		for l := 0; l < layers && l < len(meanSpan); l++ {
			res.MeanSpan[l] += meanSpan[l]
		}
		live := mem.Live()
		for l, v := range live {
			if l < layers {
				res.MeanLive[l] += v
			}
		}
		if c.live != nil {
			c.live(blocks, live)
		}
		blocks++
		runtime.GC() // frees what the model left to gotch's finalizers (see train's loop)
		if c.spans != nil && b == 1 {
			for l, sp := range sr.Spans {
				if len(sp) >= t {
					c.spans(l, sp[len(sp)-t:])
				}
			}
		}
		if dw != nil {
			if err := dumpBlock(dw, &pending, sr, ids, mask, t, pos, c.vocab); err != nil {
				return err
			}
		}
		return nil
	}
	for blocks < total {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		bpos := bt.Position()
		pos := bpos * int64(block)
		var ids []int64
		var mask []float32
		if bt.HasMask() {
			ids, mask, err = bt.NextWithMask()
		} else {
			ids, err = bt.Next()
		}
		if err != nil {
			return nil, err
		}
		offset := func(row int) int64 { return bt.TokenOffset(bpos, row) }
		if err := runBlock(ids, mask, c.batch, block, pos, offset); err != nil {
			return nil, err
		}
		if c.progress != nil {
			c.progress(blocks, total)
		}
	}
	// With one stream, score the split's tail that a whole block does not cover.
	if c.batch == 1 && !c.streams && c.maxBlocks <= 0 {
		pos := blocks * int64(block)
		if rest := splitLen - 1 - pos; rest > 0 {
			buf := make([]uint32, rest+1)
			if _, err := r.ReadAt(split, pos, buf); err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			ids := make([]int64, len(buf))
			for i, v := range buf {
				ids[i] = int64(v)
			}
			var mask []float32
			if bt.HasMask() {
				scored, err := r.Scored(split)
				if err != nil {
					return nil, err
				}
				for _, ok := range scored[pos+1 : pos+1+rest] {
					mask = append(mask, b2f(ok))
				}
			}
			if err := runBlock(ids, mask, 1, int(rest), pos, func(int) int64 { return pos }); err != nil {
				return nil, err
			}
		}
	}
	if dw != nil {
		if pending != nil {
			if err := writeDumpLine(dw, pending); err != nil {
				return nil, err
			}
		}
		if err := dw.Flush(); err != nil {
			return nil, err
		}
	}
	if res.Tokens == 0 {
		if bt.HasMask() {
			return nil, fmt.Errorf("split %q: no scored token in the blocks evaluated", split)
		}
		return nil, fmt.Errorf("split %q: too short for one block of %d tokens with batch %d", split, block, c.batch)
	}
	for l := range res.MeanLive {
		res.MeanLive[l] /= float64(blocks)
		res.MeanSpan[l] /= float64(blocks)
	}
	res.Skipped = splitLen - res.Tokens
	res.Loss = nats / float64(res.Tokens)
	res.BitsPerToken = res.Loss / math.Ln2
	res.BPC = res.BitsPerToken / unit.PerToken
	res.Dropped = mem.Dropped()
	res.Seconds = time.Since(start).Seconds()
	if counter != nil {
		res.Copy = counter.result()
	}
	return res, nil
}
