package eval_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"testing"

	"github.com/sugarme/gotch"

	"xspan/checkpoint"
	"xspan/dataset"
	"xspan/eval"
	"xspan/internal/torchrt"
	"xspan/train"
)

// TestBatchAgreement evaluates one split with one stream and with four. The figures
// differ only by the stream cuts: each of the four streams starts with an empty memory
// (its first tokens see less context), and each drops its tail shorter than a block. So
// batch 4 may only be slightly worse, and on the tokens both score the per-token bits
// agree closely.
func TestBatchAgreement(t *testing.T) {
	defer torchrt.Lock()()
	data := testData(t)
	cfg := tinyConfig(40)
	cfg.Dropout = 0
	run := filepath.Join(t.TempDir(), "run")
	if _, err := train.Run(context.Background(), cfg, data, run, train.WithOutput(nil), train.WithoutFinalEval()); err != nil {
		t.Fatal(err)
	}
	m, ck, err := checkpoint.Load(run, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	r, err := dataset.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := r.SplitLen("valid")

	var dump bytes.Buffer
	one, err := eval.Run(context.Background(), m, r, "valid", eval.WithDump(&dump, ck.Vocab))
	if err != nil {
		t.Fatal(err)
	}
	four, err := eval.Run(context.Background(), m, r, "valid", eval.WithBatch(4))
	if err != nil {
		t.Fatal(err)
	}
	// Batch 1 scores every token but the first.
	if one.Tokens != n-1 || one.Skipped != 1 {
		t.Errorf("batch 1: %d tokens scored, %d skipped, of %d", one.Tokens, one.Skipped, n)
	}
	streamLen := n / 4
	blocks := (streamLen - 1) / int64(cfg.Block)
	if want := 4 * blocks * int64(cfg.Block); four.Tokens != want {
		t.Errorf("batch 4: %d tokens scored, want %d", four.Tokens, want)
	}
	if one.Unit.Name != "bits per character" || math.Abs(one.BPC-one.BitsPerToken) > 1e-12 {
		t.Errorf("char vocabulary: unit %q, bpc %v vs bits/token %v", one.Unit.Name, one.BPC, one.BitsPerToken)
	}
	if math.Abs(one.BitsPerToken-one.Loss/math.Ln2) > 1e-12 {
		t.Errorf("bits per token %v, loss %v nats", one.BitsPerToken, one.Loss)
	}
	// The tolerance: cold starts of three more streams over ~600 tokens each, with a model
	// whose context gain is small after 40 steps.
	if d := four.BPC - one.BPC; math.Abs(d) > 0.02*one.BPC {
		t.Errorf("bpc batch 1 %.4f vs batch 4 %.4f: differ by more than 2%%", one.BPC, four.BPC)
	}
	t.Logf("valid bpc: batch 1 %.4f (%d tokens), batch 4 %.4f (%d tokens)", one.BPC, one.Tokens, four.BPC, four.Tokens)
	if len(one.MeanLive) != cfg.Layers || one.MeanLive[0] <= 0 {
		t.Errorf("mean live memory %v", one.MeanLive)
	}

	// The dump has one line per token of the split; its bits add up to the total.
	sc := bufio.NewScanner(&dump)
	var lines int64
	var bits float64
	var withSpan int64
	for sc.Scan() {
		var l eval.DumpLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		if l.Pos != lines {
			t.Fatalf("dump line %d has pos %d", lines, l.Pos)
		}
		if (l.Bits == nil) != (l.Pos == 0) {
			t.Fatalf("dump line %d: bits %v", lines, l.Bits)
		}
		if l.Bits != nil {
			bits += *l.Bits
		}
		if len(l.Span) == cfg.Layers {
			withSpan++
		}
		if l.Text == "" {
			t.Fatalf("dump line %d: no text", lines)
		}
		lines++
	}
	if lines != n {
		t.Fatalf("dump has %d lines, split %d tokens", lines, n)
	}
	if withSpan != n-1 {
		t.Errorf("%d dump lines carry spans, want %d (all but the last token)", withSpan, n-1)
	}
	if got := bits / float64(one.Tokens); math.Abs(got-one.BitsPerToken) > 1e-6 {
		t.Errorf("dump bits average %v, result %v", got, one.BitsPerToken)
	}
	if _, err := eval.Run(context.Background(), m, r, "valid", eval.WithBatch(2), eval.WithDump(&dump, nil)); err == nil {
		t.Error("dump with batch 2: no error")
	}
	if _, err := eval.Run(context.Background(), m, r, "nope"); err == nil {
		t.Error("unknown split: no error")
	}
}
