package refckpt_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"xspan/expirespan"
	"xspan/internal/torchrt"
	"xspan/lm"
	"xspan/refckpt"
)

// TestForwardMatchesReference loads each fixture into xspan's model through ToXspan and
// runs the fixture's eval blocks: with the reference's rectangular pruning rule every
// target's log-probability is within 1e-5 of the reference's and every cache length is
// exact; with the exact per-key rule, the same log-probabilities from no more keys.
func TestForwardMatchesReference(t *testing.T) {
	for _, name := range []string{"post", "pre"} {
		t.Run(name, func(t *testing.T) {
			// A subtest runs on a goroutine of its own: it takes its own OS thread, since
			// the grad mode that NoGrad switches off is that thread's.
			defer torchrt.Lock()()
			var fx struct {
				HParams map[string]any `json:"hparams"`
				Vocab   []string       `json:"vocab"`
				Blocks  []block        `json:"blocks"`
			}
			b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &fx); err != nil {
				t.Fatal(err)
			}
			c, err := refckpt.Read(filepath.Join("testdata", name+".pt"))
			if err != nil {
				t.Fatal(err)
			}
			a, err := refckpt.InferArch(c)
			if err != nil {
				t.Fatal(err)
			}
			vm, err := refckpt.CharVocabMap(fx.Vocab)
			if err != nil {
				t.Fatal(err)
			}
			named, err := refckpt.ToXspan(c, a, vm)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := lm.Preset("tiny")
			if err != nil {
				t.Fatal(err)
			}
			cfg.Vocab, cfg.Layers, cfg.Dim, cfg.Heads, cfg.FFN, cfg.Block = len(vm.RefID), a.Layers, a.Dim, a.Heads, a.FFN, a.Block
			cfg.PreNorm, cfg.Expire, cfg.Dropout = a.PreNorm, a.Expire, 0
			cfg.MaxSpan = int(fx.HParams["attn_lim"].(float64))
			cfg.Ramp = int(fx.HParams["expire_span_ramp"].(float64))
			cfg.PreDiv = fx.HParams["expire_span_pre_div"].(float64)
			if cfg.MaxSpan+cfg.Ramp != a.SpanPlusRamp {
				t.Fatalf("L + R = %d, the checkpoint says %d", cfg.MaxSpan+cfg.Ramp, a.SpanPlusRamp)
			}
			// Both attention paths, so that the pin holds for the fused one as for the
			// composed one it was first made against.
			for _, attn := range []string{lm.AttentionComposed, lm.AttentionFused} {
				cfg.Attention = attn
				m, err := lm.New(cfg, gotch.CPU)
				if err != nil {
					t.Fatal(err)
				}
				params := m.NamedParameters()
				if len(params) != len(named) {
					t.Fatalf("%d tensors for a model of %d", len(named), len(params))
				}
				func() {
					defer torchrt.NoGrad()()
					for i, p := range params {
						n := named[i]
						if n.Name != p.Name || !equalShape(n.Shape, p.Tensor.MustSize()) {
							t.Fatalf("tensor %d: %s %v, the model has %s %v", i, n.Name, n.Shape, p.Name, p.Tensor.MustSize())
						}
						src := ts.MustOfSlice(n.Data).MustView(n.Shape, true)
						p.Tensor.Copy_(src)
						src.MustDrop()
					}
				}()
				xOf := make([]int64, len(fx.Vocab))
				for x, r := range vm.RefID {
					xOf[r] = int64(x)
				}
				// The reference's rectangular rule gives its cache lengths; batch 1's exact per-key
				// rule (xspan's default there) keeps fewer keys and the same log-probabilities.
				for _, rule := range []expirespan.Rule{expirespan.Rectangular, expirespan.PerKey} {
					t.Logf("attention %s:", attn)
					runBlocks(t, m, rule, xOf, len(vm.RefID), fx.Blocks)
				}
			}
		})
	}
}

type block struct {
	Inputs, Targets []int
	LogP            []float64 `json:"logp"`
	CacheLen        []int     `json:"cache_len"`
}

func runBlocks(t *testing.T, m *lm.Model, rule expirespan.Rule, xOf []int64, v int, blocks []block) {
	mem := m.NewMemory(1)
	defer mem.Drop()
	mem.Rule = rule
	worst := 0.0
	for bi, bl := range blocks {
		in := make([]int64, len(bl.Inputs))
		for j, r := range bl.Inputs {
			in[j] = xOf[r]
		}
		// A block is the inputs and, last, the final target (Step's B×(T+1) layout).
		in = append(in, xOf[bl.Targets[len(bl.Targets)-1]])
		input := ts.MustOfSlice(in).MustView([]int64{1, int64(len(in))}, true)
		res, err := m.Step(mem, input, lm.StepOptions{LogProbs: true})
		input.MustDrop()
		if err != nil {
			t.Fatal(err)
		}
		lp := res.LogProbs.Float64Values()
		res.Drop()
		for j, r := range bl.Targets {
			got := lp[j*v+int(xOf[r])]
			d := math.Abs(got - bl.LogP[j])
			worst = max(worst, d)
			if d > 1e-5 {
				t.Errorf("block %d, token %d: log p %.7f, the reference %.7f", bi, j, got, bl.LogP[j])
			}
		}
		for l, want := range bl.CacheLen {
			if got := mem.Layers[l].Len; got != want && (rule == expirespan.Rectangular || got > want) {
				t.Errorf("block %d, layer %d: cache of %d keys, the reference %d", bi, l, got, want)
			}
		}
	}
	t.Logf("rule %d: %d blocks, largest log-probability difference %.2g, final cache %v", rule, len(blocks), worst, mem.Live())
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
