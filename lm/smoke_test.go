package lm

import (
	"math"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"xspan/internal/torchrt"
)

func tinyTestConfig() Config {
	c, _ := Preset("tiny")
	c.Vocab = 11
	c.Layers = 2
	c.Dim = 16
	c.Heads = 2
	c.FFN = 32
	c.Block = 8
	c.MaxSpan = 64
	c.Ramp = 4
	c.Batch = 3
	return c
}

func randomBlock(b, t, vocab int, seed uint64) *ts.Tensor {
	ids := make([]int64, b*t)
	x := seed
	for i := range ids {
		x = x*6364136223846793005 + 1442695040888963407
		ids[i] = int64((x >> 33) % uint64(vocab))
	}
	return ts.MustOfSlice(ids).MustView([]int64{int64(b), int64(t)}, true)
}

func TestSmokeTrainStep(t *testing.T) {
	defer torchrt.Lock()()
	rng := torchrt.Seed(1)
	cfg := tinyTestConfig()
	m, err := New(cfg, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	mem := m.NewMemory(cfg.Batch)
	for step := 0; step < 3; step++ {
		blk := randomBlock(cfg.Batch, cfg.Block+1, cfg.Vocab, uint64(step))
		res, err := m.Step(mem, blk, true, rng)
		if err != nil {
			t.Fatal(err)
		}
		loss := res.TaskLoss.MustAdd(res.SpanLoss, false)
		loss.MustBackward()
		v := res.TaskLoss.Float64Values()[0]
		if math.IsNaN(v) || v <= 0 {
			t.Fatalf("loss %v", v)
		}
		t.Logf("step %d loss %.4f span %.3g stats %+v", step, v, res.SpanLoss.Float64Values()[0], res.Stats)
	}
}
