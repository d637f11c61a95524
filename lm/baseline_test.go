package lm

import (
	"testing"

	"xspan/internal/torchrt"
)

// baselineConfig is testConfig without expiry: one layer, so that a position's output
// depends on the tokens its attention sees and on nothing further back.
func baselineConfig(baseline string, l int) Config {
	c := testConfig()
	c.Expire, c.Baseline, c.MaxSpan, c.Layers = false, baseline, l, 1
	return c
}

// The Transformer-XL baseline's query sees exactly its L previous positions, across
// blocks: changing the token at distance L+1 leaves a position unchanged, the one at
// distance L changes it. The last-L baseline sees farther back at the same memory.
func TestTransformerXLSeesExactlyL(t *testing.T) { bothPaths(t, testTransformerXLSeesExactlyL) }

func testTransformerXLSeesExactlyL(t *testing.T) {
	defer torchrt.Lock()()
	const l, n, q = 10, 40, 30 // position q lies in the fourth block of 8
	for _, baseline := range []string{BaselineTransformerXL, BaselineLastL} {
		cfg := baselineConfig(baseline, l)
		m := newModel(t, cfg, 5)
		v := cfg.Vocab
		ids := tokens(n, v, 5)
		ref := logProbs(t, m, m.NewMemory(1), ids, 1, n, repeat(8, n/8))[q*v : (q+1)*v]
		changed := func(dist int) float64 {
			alt := append([]int64(nil), ids...)
			alt[q-dist] = (alt[q-dist] + 1) % int64(v)
			return maxDiff(ref, logProbs(t, m, m.NewMemory(1), alt, 1, n, repeat(8, n/8))[q*v:(q+1)*v])
		}
		far, near := changed(l+1), changed(l)
		if near == 0 {
			t.Fatalf("%s: the token at distance L = %d changed nothing", baseline, l)
		}
		if baseline == BaselineTransformerXL && far != 0 {
			t.Fatalf("%s: the token at distance L+1 changed position %d by %g", baseline, q, far)
		}
		if baseline == BaselineLastL && far == 0 {
			t.Fatalf("%s: the token at distance L+1 changed nothing: the test cannot tell the baselines apart", baseline)
		}
	}
}

// The Transformer-XL baseline starts a stream with L zero memories and a position term
// for every distance 1…L, and its memory stays at L keys.
func TestTransformerXLDefaults(t *testing.T) {
	defer torchrt.Lock()()
	cfg := baselineConfig(BaselineTransformerXL, 10)
	if p, c, w := cfg.EffectivePosWindow(), cfg.EffectiveInitCache(), cfg.AttentionWindow(); p != 10 || c != 10 || w != 10 {
		t.Fatalf("P %d, initial memory %d, window %d: want L = 10 each", p, c, w)
	}
	last := baselineConfig(BaselineLastL, 10)
	if p, c, w := last.EffectivePosWindow(), last.EffectiveInitCache(), last.AttentionWindow(); p != last.Block || c != last.Block || w != 0 {
		t.Fatalf("last-L: P %d, initial memory %d, window %d: want the block, the block, none", p, c, w)
	}
	m := newModel(t, cfg, 6)
	mem := m.NewMemory(2)
	defer mem.Drop()
	if got := mem.Live()[0]; got != 10 {
		t.Fatalf("a new memory holds %v keys, want L = 10", got)
	}
	logProbs(t, m, mem, tokens(2*24, cfg.Vocab, 6), 2, 24, []int{8, 8, 8})
	if got := mem.Live()[0]; got != 10 {
		t.Fatalf("after three blocks the memory holds %v keys, want L = 10", got)
	}
}
