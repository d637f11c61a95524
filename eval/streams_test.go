package eval_test

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/sugarme/gotch"

	"xspan/dataset"
	"xspan/eval"
	"xspan/expirespan"
	"xspan/internal/torchrt"
	"xspan/lm"
	"xspan/tokenize"
)

// idsData writes a char dataset of 5 characters whose three splits all hold ids.
func idsData(t *testing.T, ids []uint32) *dataset.Reader {
	t.Helper()
	v, err := tokenize.NewChar([]rune("abcde"))
	if err != nil {
		t.Fatal(err)
	}
	var splits []dataset.IDSplit
	for _, name := range dataset.SplitNames {
		n := int64(len(ids))
		splits = append(splits, dataset.IDSplit{Name: name, IDs: ids, Bytes: n, Chars: n})
	}
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := dataset.WriteIDs(context.Background(), dir, "test", v, dataset.NewlinesKeep, splits); err != nil {
		t.Fatal(err)
	}
	r, err := dataset.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestStreamsProtocol checks --streams against the reference's protocol worked out by
// hand on 103 tokens, 3 streams, blocks of 8: batchify gives streams of 103/3 = 34
// tokens (tokens 0–33, 34–67, 68–101; token 102 unused); each runs (34−1)/8 = 4 blocks,
// scoring targets 1–32 of its stream, its last target (33) left as a tail. So 96 tokens
// are scored, and the loss is the mean over the three streams, each evaluated alone from a
// fresh memory.
func TestStreamsProtocol(t *testing.T) {
	defer torchrt.Lock()()
	cfg := tinyConfig(1)
	cfg.Block, cfg.MaxSpan, cfg.Ramp, cfg.PosWindow, cfg.InitCache = 8, 16, 4, 0, 0
	cfg.Dropout, cfg.Vocab, cfg.InitFrac = 0, 6, 0.5
	torchrt.SeedTorch(5)
	m, err := lm.New(cfg, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]uint32, 103)
	for i := range ids {
		ids[i] = uint32((i*i + 3*i) % 6)
	}
	all := idsData(t, ids)
	ctx := context.Background()
	three, err := eval.Run(ctx, m, all, "test", eval.WithStreams(3))
	if err != nil {
		t.Fatal(err)
	}
	if three.Tokens != 96 || three.Skipped != 7 || three.Batch != 3 || three.Protocol != "streams" || three.Prune != "rectangular" {
		t.Errorf("3 streams: %d scored, %d not, batch %d, protocol %q, rule %q; want 96, 7, 3, streams, rectangular",
			three.Tokens, three.Skipped, three.Batch, three.Protocol, three.Prune)
	}
	var sum float64
	for s := 0; s < 3; s++ {
		one, err := eval.Run(ctx, m, idsData(t, ids[34*s:34*s+34]), "test", eval.WithStreams(1))
		if err != nil {
			t.Fatal(err)
		}
		if one.Tokens != 32 {
			t.Errorf("stream %d alone: %d scored, want 32", s, one.Tokens)
		}
		sum += one.Loss
	}
	if d := math.Abs(three.Loss - sum/3); d > 1e-5 {
		t.Errorf("3 streams: loss %.7f, the mean of the streams alone %.7f", three.Loss, sum/3)
	}
	// --batch 3 is --streams 3.
	batch, err := eval.Run(ctx, m, all, "test", eval.WithBatch(3))
	if err != nil {
		t.Fatal(err)
	}
	if batch.Tokens != three.Tokens || math.Abs(batch.Loss-three.Loss) > 1e-9 {
		t.Errorf("batch 3: %d tokens, loss %v; streams 3: %d, %v", batch.Tokens, batch.Loss, three.Tokens, three.Loss)
	}

	// One stream: the reference's protocol leaves the tail (102 − 96 targets) unscored, the
	// default scores every token but the first; per-key and rectangular pruning give the
	// same log-probabilities, per-key from no more keys.
	ref, err := eval.Run(ctx, m, all, "test", eval.WithStreams(1))
	if err != nil {
		t.Fatal(err)
	}
	perKey, err := eval.Run(ctx, m, all, "test", eval.WithStreams(1), eval.WithRule(expirespan.PerKey))
	if err != nil {
		t.Fatal(err)
	}
	def, err := eval.Run(ctx, m, all, "test")
	if err != nil {
		t.Fatal(err)
	}
	if ref.Tokens != 96 || def.Tokens != 102 || def.Protocol != "one-stream" || def.Prune != "per-key" {
		t.Errorf("one stream: reference protocol %d scored, default %d (%s, %s); want 96 and 102", ref.Tokens, def.Tokens, def.Protocol, def.Prune)
	}
	if math.Abs(ref.Loss-perKey.Loss) > 1e-6 {
		t.Errorf("one stream: rectangular loss %.7f, per-key %.7f", ref.Loss, perKey.Loss)
	}
	for l := range ref.MeanLive {
		if perKey.MeanLive[l] > ref.MeanLive[l] {
			t.Errorf("layer %d: per-key keeps %.2f keys on average, rectangular %.2f", l, perKey.MeanLive[l], ref.MeanLive[l])
		}
	}
	if ref.Dropped == 0 {
		t.Errorf("no key was dropped: the case does not exercise pruning")
	}
	if _, err := eval.Run(ctx, m, all, "test", eval.WithStreams(3), eval.WithRule(expirespan.PerKey)); err == nil {
		t.Errorf("per-key pruning with 3 streams: no error")
	}
	t.Logf("3 streams: loss %.5f over %d tokens (streams alone: %.5f); 1 stream: %.5f over %d (default protocol %.5f over %d); mean live rectangular %v, per-key %v",
		three.Loss, three.Tokens, sum/3, ref.Loss, ref.Tokens, def.Loss, def.Tokens, ref.MeanLive, perKey.MeanLive)
}
