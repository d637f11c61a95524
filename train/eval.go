package train

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"xspan/dataset"
	"xspan/internal/torchrt"
	"xspan/lm"
	"xspan/tokenize"
)

// Unit says what a bpc figure counts bits per.
type Unit struct {
	// Name is "bits per byte" (byte vocabularies), "bits per character" (char
	// vocabularies) or "bits per original character" (tokenizer.json vocabularies).
	Name string `json:"name"`
	// Abbrev is "bpb" or "bpc".
	Abbrev string `json:"abbrev"`
	// PerToken is how many of those units one token stands for on average in the split
	// (1 for byte and char vocabularies).
	PerToken float64 `json:"per_token"`
}

// UnitOf returns the unit of a split of a dataset.
func UnitOf(man *dataset.Manifest, split string) (Unit, error) {
	s, err := man.Split(split)
	if err != nil {
		return Unit{}, err
	}
	switch man.Vocab.Kind {
	case tokenize.KindByte:
		return Unit{Name: "bits per byte", Abbrev: "bpb", PerToken: 1}, nil
	case tokenize.KindChar:
		return Unit{Name: "bits per character", Abbrev: "bpc", PerToken: 1}, nil
	default:
		per := 1.0
		if s.Tokens > 0 && s.Chars > 0 {
			per = float64(s.Chars) / float64(s.Tokens)
		}
		return Unit{Name: "bits per original character", Abbrev: "bpc", PerToken: per}, nil
	}
}

// EvalResult is the outcome of Evaluate.
type EvalResult struct {
	Split  string `json:"split"`
	Batch  int    `json:"batch"`
	Tokens int64  `json:"tokens"` // targets scored
	// Skipped is the number of the split's tokens never scored: the first (never a
	// target), and with batch B > 1 the split's remainder and each stream's tail.
	Skipped      int64   `json:"skipped"`
	Loss         float64 `json:"loss"` // mean NLL, nats per token
	BitsPerToken float64 `json:"bits_per_token"`
	BPC          float64 `json:"bpc"` // in Unit
	Unit         Unit    `json:"unit"`
	// MeanLive is, per layer, the mean number of keys in memory per stream over the
	// blocks; MeanSpan the mean predicted span of the keys attended over.
	MeanLive []float64 `json:"mean_live"`
	MeanSpan []float64 `json:"mean_span"`
	Dropped  int64     `json:"dropped"` // keys dropped by pruning, all layers and streams
	Seconds  float64   `json:"seconds"`
	// Copy is the copy accuracy on a split with a scored mask (the copy task); nil
	// without a mask, and with a dump (see WithDump).
	Copy *CopyAccuracy `json:"copy,omitempty"`
}

// CopyAccuracy scores greedy predictions on the scored targets of a split: a target is
// right when the argmax of the model's log-probabilities at its position, given the true
// prefix (teacher forcing), is the target token.
type CopyAccuracy struct {
	Scored   int64   `json:"scored"`   // scored targets evaluated
	Correct  int64   `json:"correct"`  // of those, predicted right
	Accuracy float64 `json:"accuracy"` // Correct / Scored
	// Examples counts the complete examples: those whose every scored target was
	// evaluated (a stream's cut tail and unevaluated blocks leave some out). Exact of them
	// had every scored target right. Both are 0 when the split has no example length.
	Examples  int64   `json:"examples"`
	Exact     int64   `json:"exact"`
	ExactRate float64 `json:"exact_rate"` // Exact / Examples
	// Chance is the accuracy of guessing one of the task's symbols uniformly (1/alphabet
	// for the copy task), 0 when the manifest does not say.
	Chance float64 `json:"chance,omitempty"`
}

// copyCounter accumulates CopyAccuracy: per example, scored targets seen and right.
type copyCounter struct {
	acc        CopyAccuracy
	exampleLen int64
	want       []int32 // scored targets per example, from the split's mask
	seen, good []int32
}

func newCopyCounter(r *dataset.Reader, split string, exampleLen int64) (*copyCounter, error) {
	c := &copyCounter{exampleLen: exampleLen}
	if t := r.Manifest().Task; t != nil && t.Name == dataset.TaskCopy && t.Alphabet > 0 {
		c.acc.Chance = 1 / float64(t.Alphabet)
	}
	if exampleLen <= 0 {
		return c, nil
	}
	scored, err := r.Scored(split)
	if err != nil {
		return nil, err
	}
	n := (int64(len(scored)) + exampleLen - 1) / exampleLen
	c.want, c.seen, c.good = make([]int32, n), make([]int32, n), make([]int32, n)
	for p, ok := range scored {
		if ok {
			c.want[int64(p)/exampleLen]++
		}
	}
	return c, nil
}

// add counts one scored target at split position pos (the target token's position).
func (c *copyCounter) add(pos int64, right bool) {
	c.acc.Scored++
	if right {
		c.acc.Correct++
	}
	if c.exampleLen > 0 {
		e := pos / c.exampleLen
		c.seen[e]++
		if right {
			c.good[e]++
		}
	}
}

func (c *copyCounter) result() *CopyAccuracy {
	a := c.acc
	for e, w := range c.want {
		if w > 0 && c.seen[e] == w {
			a.Examples++
			if c.good[e] == w {
				a.Exact++
			}
		}
	}
	if a.Scored > 0 {
		a.Accuracy = float64(a.Correct) / float64(a.Scored)
	}
	if a.Examples > 0 {
		a.ExactRate = float64(a.Exact) / float64(a.Examples)
	}
	return &a
}

// Summary returns the part of r that checkpoints and metrics keep.
func (r *EvalResult) Summary() *EvalSummary {
	return &EvalSummary{Split: r.Split, Loss: r.Loss, BitsPerToken: r.BitsPerToken, BPC: r.BPC, Unit: r.Unit.Name, Tokens: r.Tokens}
}

type evalConfig struct {
	batch     int
	maxBlocks int64
	dump      io.Writer
	vocab     tokenize.Vocab
	progress  func(done, total int64)
	spans     func(layer int, spans []float32)
}

// EvalOption configures Evaluate.
type EvalOption func(*evalConfig) error

// WithEvalBatch sets the number of parallel streams (default 1: the whole split as one
// stream, scored to its last token, with exact per-key pruning).
func WithEvalBatch(b int) EvalOption {
	return func(c *evalConfig) error {
		if b < 1 {
			return fmt.Errorf("eval batch %d: want ≥ 1", b)
		}
		c.batch = b
		return nil
	}
}

// WithMaxBlocks stops after n blocks per stream (n ≤ 0: the whole split).
func WithMaxBlocks(n int64) EvalOption {
	return func(c *evalConfig) error { c.maxBlocks = n; return nil }
}

// WithDump writes one JSON object per token of the split to w: its position, id and text,
// "bits" for predicting it, "span", per layer, the span the model gave it as a memory,
// and "unscored" for a token a scored mask leaves out of the loss.
// It needs batch 1; vocab decodes the text (nil: no text). A dump takes the spans from
// lm.Model.Step, which does not return the predictions: with a dump, EvalResult.Copy is
// nil.
func WithDump(w io.Writer, vocab tokenize.Vocab) EvalOption {
	return func(c *evalConfig) error { c.dump, c.vocab = w, vocab; return nil }
}

// WithEvalProgress sets a function called after each block with blocks done and total.
func WithEvalProgress(fn func(done, total int64)) EvalOption {
	return func(c *evalConfig) error { c.progress = fn; return nil }
}

// withSpans sets a function called after each block of batch 1 with, per layer, the
// spans of the block's input tokens.
func withSpans(fn func(layer int, spans []float32)) EvalOption {
	return func(c *evalConfig) error { c.spans = fn; return nil }
}

// dumpLine is one line of an evaluation dump.
type dumpLine struct {
	Pos  int64     `json:"pos"`
	ID   uint32    `json:"id"`
	Text string    `json:"text,omitempty"`
	Bits *float64  `json:"bits,omitempty"`
	Span []float32 `json:"span,omitempty"`
	// Unscored marks a token that a scored mask leaves out of the loss.
	Unscored bool `json:"unscored,omitempty"`
}

func b2f(b bool) float32 {
	if b {
		return 1
	}
	return 0
}

// Evaluate reads a split of r in order with the memory carried from block to block and
// returns the model's loss on it. The model's weights are not changed, and no gradient is
// kept.
func Evaluate(ctx context.Context, m *lm.Model, r *dataset.Reader, split string, opts ...EvalOption) (_ *EvalResult, err error) {
	defer torchrt.Lock()()
	defer torchrt.Recover(&err)
	c := evalConfig{batch: 1}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	if c.dump != nil && c.batch != 1 {
		return nil, errors.New("a per-token dump needs batch 1")
	}
	unit, err := UnitOf(r.Manifest(), split)
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
	defer noGrad()()

	start := time.Now()
	mem := m.NewMemory(c.batch)
	defer mem.Drop()
	layers := m.Cfg.Layers
	res := &EvalResult{Split: split, Batch: c.batch, Unit: unit, MeanLive: make([]float64, layers), MeanSpan: make([]float64, layers)}
	total := bt.Blocks()
	if c.maxBlocks > 0 && c.maxBlocks < total {
		total = c.maxBlocks
	}
	var dw *bufio.Writer
	var pending *dumpLine // the last token of the previous block, waiting for its span
	if c.dump != nil {
		dw = bufio.NewWriter(c.dump)
	}
	// On a split with a scored mask, Forward gives the log-probabilities, whose argmax is
	// the greedy prediction (copy accuracy). A dump or a span sample needs the keys'
	// spans, which only Step returns (without predictions).
	var counter *copyCounter
	useForward := bt.HasMask() && c.dump == nil && c.spans == nil
	if useForward {
		if counter, err = newCopyCounter(r, split, bt.ExampleLen()); err != nil {
			return nil, err
		}
	}
	var nats float64
	var blocks int64
	// runBlock runs one block of b rows of t+1 tokens; pos is the split position of the
	// block's token 0 with batch 1 (for the dump), offset(row) that of row's token 0.
	runBlock := func(ids []int64, mask []float32, b, t int, pos int64, offset func(row int) int64) error {
		x, err := ts.OfSlice(ids)
		if err != nil {
			return err
		}
		x2 := x.MustView([]int64{int64(b), int64(t + 1)}, true)
		if m.Device() != gotch.CPU {
			x2 = x2.MustTo(m.Device(), true)
		}
		var (
			sr       *lm.StepResult
			nll      []float64 // with a mask: per target, row-major
			pred     []int64   // with useForward: the argmax per target
			meanSpan []float64
			s        float64
		)
		if useForward {
			nll, pred, meanSpan, err = forwardBlock(m, mem, x2, t)
			x2.MustDrop()
			if err != nil {
				return err
			}
		} else {
			sr, err = m.Step(mem, x2, false, nil)
			x2.MustDrop()
			if err != nil {
				return err
			}
			defer sr.Drop()
			meanSpan = sr.Stats.MeanSpan
			if mask != nil {
				nll = values(sr.TokenNLL)
			}
		}
		if mask == nil {
			sum := sr.TokenNLL.MustSum(gotch.Double, false)
			s = value(sum)
			sum.MustDrop()
			res.Tokens += int64(b * t)
		} else {
			for i, v := range nll {
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
		for l, v := range mem.Live() {
			if l < layers {
				res.MeanLive[l] += v
			}
		}
		blocks++
		runtime.GC() // frees what the model left to gotch's finalizers (see trainer.loop)
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
	if c.batch == 1 && c.maxBlocks <= 0 {
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

// forwardBlock runs one block (B×(T+1) ids) through m.Forward with the memory carried and
// returns, per target (row-major), its NLL in nats and the argmax of the log-probabilities,
// and the per-layer mean span.
func forwardBlock(m *lm.Model, mem *lm.Memory, block *ts.Tensor, t int) (nll []float64, pred []int64, meanSpan []float64, err error) {
	in := block.MustNarrow(1, 0, int64(t), false)
	tgt := block.MustNarrow(1, 1, int64(t), false)
	defer tgt.MustDrop()
	logp, st, err := m.Forward(mem, in, false, nil)
	in.MustDrop()
	if err != nil {
		return nil, nil, nil, err
	}
	defer logp.MustDrop()
	tgt3 := tgt.MustUnsqueeze(2, false)
	g := logp.MustGather(2, tgt3, false, false)
	tgt3.MustDrop()
	nll = values(g)
	g.MustDrop()
	for i := range nll {
		nll[i] = -nll[i]
	}
	am := logp.MustArgmax([]int64{-1}, false, false)
	if am.MustDevice() != gotch.CPU {
		am = am.MustTo(gotch.CPU, true)
	}
	pred = am.Int64Values(true)
	return nll, pred, st.MeanSpan, nil
}

// dumpBlock writes the dump lines of one block of batch 1: ids holds T+1 tokens from
// split position pos. Token pos+j (j < T) is an input whose span the block gives; token
// pos+j+1 is a target whose bits it gives. The block's last target waits in pending for
// its span from the next block.
func dumpBlock(w *bufio.Writer, pending **dumpLine, sr *lm.StepResult, ids []int64, mask []float32, t int, pos int64, vocab tokenize.Vocab) error {
	nll := values(sr.TokenNLL)
	for j := 0; j <= t; j++ {
		var line *dumpLine
		if j == 0 && *pending != nil && (*pending).Pos == pos {
			line = *pending
		} else {
			line = &dumpLine{Pos: pos + int64(j), ID: uint32(ids[j])}
			if vocab != nil {
				line.Text = string(vocab.Decode([]uint32{line.ID}))
			}
		}
		if j > 0 {
			b := nll[j-1] / math.Ln2
			line.Bits = &b
			line.Unscored = mask != nil && mask[j-1] == 0
		}
		if j == t {
			*pending = line
			break
		}
		for _, sp := range sr.Spans {
			if len(sp) == 0 {
				continue
			}
			n := len(sp) // batch 1: N keys, the block's own last
			line.Span = append(line.Span, sp[n-t+j])
		}
		if err := writeDumpLine(w, line); err != nil {
			return err
		}
	}
	return nil
}

func writeDumpLine(w *bufio.Writer, l *dumpLine) error {
	js, err := json.Marshal(l)
	if err != nil {
		return err
	}
	w.Write(js)
	return w.WriteByte('\n')
}
