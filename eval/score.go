package eval

import (
	"context"
	"fmt"
	"math"
	"unicode/utf8"

	"xspan/internal/torchrt"
	"xspan/lm"
	"xspan/spanview"
	"xspan/tokenize"
)

// ScoreText runs the token ids of one text through m as one stream (batch 1, from the
// model's initial memory, in blocks of its block length) and returns per token the bits
// to predict it (all but the first) and the span each layer gave it as a memory, which
// tokens each layer still holds after the text, and how many memories each layer holds
// after every token.
//
// Holding follows the exact per-key rule of a decoder that drops every memory the step
// it expires: after token p, a memory seen at position j (the initial cache's at
// negative positions) is held while e_j + R > p − j + 1, since the next query would
// still attend to it (the token's own is always held). The block path gives the same
// attention (a memory past its span and ramp has weight 0 until the block ends).
// The caller holds its OS thread.
func ScoreText(ctx context.Context, m *lm.Model, vocab tokenize.Vocab, ids []int64) (_ *spanview.Score, err error) {
	defer torchrt.Recover(&err)
	n := len(ids)
	if n == 0 {
		return nil, fmt.Errorf("eval: no tokens to score")
	}
	cfg := m.Cfg
	layers := cfg.Layers
	s := &spanview.Score{Tokens: make([]spanview.Token, n), Layers: layers, MaxSpan: float64(cfg.MaxSpan),
		Ramp: float64(cfg.Ramp), Expire: cfg.Expire, Live: make([][]int, layers)}
	for i, piece := range tokenTexts(vocab, ids) {
		s.Tokens[i].ID, s.Tokens[i].Text = int(ids[i]), piece
	}
	mem := m.NewMemory(1)
	defer mem.Drop()
	// The initial cache's spans (its keys sit at positions −Len … −1), and every token's.
	initSpans := make([][]float32, layers)
	initLen := make([]int, layers)
	spans := make([][]float32, layers)
	for l, ml := range mem.Layers {
		initLen[l] = ml.Len
	}
	block := cfg.Block
	for start := 0; start < n; start += block {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		end := min(start+block, n)
		t := end - start
		// Inputs ids[start:end]; targets the next ids, and a stand-in after the last token
		// (its prediction is not used).
		in := make([]int64, t+1)
		copy(in, ids[start:end])
		if end < n {
			in[t] = ids[end]
		}
		var nll []float64
		var stepSpans [][]float32
		func() {
			defer torchrt.NoGrad()()
			bt := torchrt.MustFromSlice(in, []int64{1, int64(t + 1)}, m.Device())
			defer bt.MustDrop()
			var sr *lm.StepResult
			sr, err = m.Step(mem, bt, lm.StepOptions{})
			if err != nil {
				return
			}
			defer sr.Drop()
			nll = torchrt.Float64s(sr.TokenNLL)
			stepSpans = sr.Spans
		}()
		if err != nil {
			return nil, err
		}
		for j := 0; j < t; j++ {
			if start+j+1 < n {
				b := nll[j] / math.Ln2
				s.Tokens[start+j+1].Bits = &b
			}
		}
		if cfg.Expire {
			for l, sp := range stepSpans {
				if start == 0 {
					initSpans[l] = append([]float32(nil), sp[:initLen[l]]...)
				}
				spans[l] = append(spans[l], sp[len(sp)-t:]...)
			}
		}
	}
	ramp := float64(cfg.Ramp)
	held := func(e float32, age int) bool { return float64(e)+ramp > float64(age+1) }
	for l := 0; l < layers; l++ {
		live := make([]int, n)
		if !cfg.Expire {
			for p := range live {
				live[p] = min(initLen[l]+p+1, cfg.MaxSpan)
			}
			for i := range s.Tokens {
				s.Tokens[i].Alive = append(s.Tokens[i].Alive, spanview.Age(i, n) < cfg.MaxSpan)
			}
			s.Live[l] = live
			continue
		}
		// A memory seen at position j is held from j through j+k−1: while its age after
		// token p, p−j, satisfies e+R > p−j+1 (at least at p = j, its own step).
		add := func(j int, e float32) {
			k := int(math.Ceil(float64(e) + ramp - 1)) // ages 0 … k−1 are held
			k = max(k, 1)
			for p := max(j, 0); p < n && p-j < k; p++ {
				live[p]++
			}
		}
		for i, e := range initSpans[l] {
			add(i-initLen[l], e)
		}
		for j, e := range spans[l] {
			add(j, e)
			s.Tokens[j].Spans = append(s.Tokens[j].Spans, e)
			s.Tokens[j].Alive = append(s.Tokens[j].Alive, j == n-1 || held(e, spanview.Age(j, n)))
		}
		s.Live[l] = live
	}
	s.Finish()
	return s, nil
}

// tokenTexts returns each token's text: a character split over several tokens comes with
// the token that completes it, the tokens before get "" (bytes left incomplete at the
// end come with the last token, as U+FFFD).
func tokenTexts(vocab tokenize.Vocab, ids []int64) []string {
	out := make([]string, len(ids))
	var pending []byte
	for i, id := range ids {
		pending = append(pending, vocab.Decode([]uint32{uint32(id)})...)
		k := completePrefix(pending)
		out[i] = string(pending[:k])
		pending = pending[k:]
	}
	if len(pending) > 0 {
		out[len(out)-1] += string([]rune(string(pending)))
	}
	return out
}

// completePrefix is the length of b's longest prefix that does not end inside a UTF-8
// sequence that may still complete.
func completePrefix(b []byte) int {
	for back := 1; back <= min(utf8.UTFMax-1, len(b)); back++ {
		i := len(b) - back
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			break
		}
	}
	return len(b)
}
