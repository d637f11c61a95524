package lm

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"xspan/internal/torchrt"
)

// Causality at every position: changing token j leaves the log-probabilities of every
// position before j as they were, and changes some at or after it.
func TestCausalityAtEveryPosition(t *testing.T) {
	defer torchrt.Lock()()
	for _, preNorm := range []bool{false, true} {
		cfg := testConfig()
		cfg.PreNorm = preNorm
		m := newModel(t, cfg, 3)
		const n = 16
		ids := tokens(n, cfg.Vocab, 5)
		base := logProbs(t, m, m.NewMemory(1), ids, 1, n, []int{n})
		v := cfg.Vocab
		for j := 1; j < n; j++ {
			changed := append([]int64{}, ids...)
			changed[j] = (changed[j] + 1) % int64(v)
			got := logProbs(t, m, m.NewMemory(1), changed, 1, n, []int{n})
			if d := maxDiff(base[:j*v], got[:j*v]); d != 0 {
				t.Fatalf("pre_norm %v: changing token %d changed the positions before it by %g", preNorm, j, d)
			}
			if d := maxDiff(base[j*v:], got[j*v:]); d == 0 {
				t.Fatalf("pre_norm %v: changing token %d changed nothing at or after it", preNorm, j)
			}
		}
	}
}

// zeroSource makes rand.Float64 return 0: the largest possible span shortening.
type zeroSource struct{}

func (zeroSource) Uint64() uint64 { return 0 }

// Random shortening shapes the mask and the loss of a training block, never pruning:
// with every span shortened to nothing (u = 0), the first layer keeps exactly the keys it
// keeps without shortening (its keys' hidden states, the embeddings, do not depend on
// the mask, so neither do their true spans).
func TestShorteningNeverReachesPruning(t *testing.T) {
	defer torchrt.Lock()()
	cfg := testConfig()
	cfg.Dropout = 0
	live := map[bool][]int{}
	for _, noisy := range []bool{false, true} {
		cfg.Noisy = noisy
		m := newModel(t, cfg, 4)
		mem := m.NewMemory(3)
		ids := tokens(3*9*4, cfg.Vocab, 6)
		for s := range 4 {
			block := make([]int64, 0, 27)
			for b := range 3 {
				block = append(block, ids[(b*4+s)*9:(b*4+s)*9+9]...)
			}
			x := tensor2(block, 3, 9)
			res, err := m.Step(mem, x, StepOptions{Train: true, RNG: rand.New(zeroSource{})})
			x.MustDrop()
			if err != nil {
				t.Fatal(err)
			}
			res.Drop()
			live[noisy] = append(live[noisy], mem.Layers[0].Len)
		}
	}
	for s := range live[false] {
		if live[true][s] != live[false][s] {
			t.Fatalf("block %d: layer 0 keeps %d keys with every span shortened to 0, %d without shortening", s, live[true][s], live[false][s])
		}
	}
	if live[false][3] <= cfg.Block {
		t.Fatalf("layer 0 keeps only %v keys: nothing older than the block to prune or keep", live[false])
	}
}

// In pre-norm the FFN's output layer starts scaled by 1/√(2N), its bias as its weight.
func TestPreNormScalesTheFFNOutputBias(t *testing.T) {
	defer torchrt.Lock()()
	cfg := testConfig()
	cfg.PreNorm = true
	torchrt.Seed(1)
	m, err := New(cfg, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	bound := 1 / math.Sqrt(float64(cfg.FFN)) / math.Sqrt(2*float64(cfg.Layers))
	for i, l := range m.layers {
		for _, p := range []*ts.Tensor{l.w2, l.b2} {
			for _, x := range torchrt.Float64s(p) {
				if math.Abs(x) > bound {
					t.Fatalf("layer %d: an FFN output parameter is %g, beyond the pre-norm bound %g", i, x, bound)
				}
			}
		}
	}
}
