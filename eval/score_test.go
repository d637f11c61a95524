package eval_test

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/sugarme/gotch"

	"xspan/eval"
	"xspan/internal/torchrt"
	"xspan/lm"
	"xspan/spanview"
	"xspan/tokenize"
)

// ScoreText agrees with a decoder fed one token at a time, which drops every memory the
// step it expires: the same bits for every token, and after every token the same number
// of memories per layer as the decoder holds. The spans are spread (random weights,
// initial spans ~6 tokens plus a ramp of 8), so memories expire all along the text.
func TestScoreTextMatchesDecoder(t *testing.T) {
	defer torchrt.Lock()()
	cfg := tinyConfig(0)
	cfg.Vocab = 256
	cfg.Dropout = 0
	torchrt.Seed(3)
	m, err := lm.New(cfg, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("In the beginning God created the heaven and the earth. ", 2) + "Ünïcödé ✓"
	vocab := tokenize.Byte{}
	raw, _ := vocab.Encode([]byte(text))
	ids := make([]int64, len(raw))
	for i, id := range raw {
		ids[i] = int64(id)
	}
	s, err := eval.ScoreText(context.Background(), m, vocab, ids)
	if err != nil {
		t.Fatal(err)
	}
	n := len(ids)
	if len(s.Tokens) != n || len(s.Live) != cfg.Layers || s.Layers != cfg.Layers {
		t.Fatalf("%d tokens, %d live rows for %d ids and %d layers", len(s.Tokens), len(s.Live), n, cfg.Layers)
	}
	var joined strings.Builder
	for _, tk := range s.Tokens {
		joined.WriteString(tk.Text)
	}
	if joined.String() != text {
		t.Fatalf("token texts join to %q, want %q", joined.String(), text)
	}
	d := m.NewDecoder()
	defer d.Close()
	var prev []float32
	dropped := false
	for p, id := range ids {
		if p > 0 {
			want := -float64(prev[id]) / math.Ln2
			if got := s.Tokens[p].Bits; got == nil || math.Abs(*got-want) > 1e-3 {
				t.Fatalf("token %d: bits %v, decoder %.5f", p, got, want)
			}
		}
		if prev, err = d.Feed([]int64{id}); err != nil {
			t.Fatal(err)
		}
		live := d.Live()
		for l := range live {
			if s.Live[l][p] != live[l] {
				t.Fatalf("after token %d, layer %d: ScoreText says %d memories, the decoder holds %d", p, l, s.Live[l][p], live[l])
			}
			if p > 0 && live[l] <= s.Live[l][p-1] {
				dropped = true
			}
		}
	}
	if s.Tokens[0].Bits != nil {
		t.Fatalf("the first token has bits %v: it has no context", *s.Tokens[0].Bits)
	}
	if !dropped {
		t.Fatalf("no memory expired along the text: the test does not exercise pruning")
	}
	// Alive at the end: what the decoder holds of the text, per layer.
	for l := 0; l < cfg.Layers; l++ {
		alive := 0
		for i, tk := range s.Tokens {
			if len(tk.Spans) != cfg.Layers || len(tk.Alive) != cfg.Layers {
				t.Fatalf("token %d: %d spans, %d alive flags", i, len(tk.Spans), len(tk.Alive))
			}
			if tk.Alive[l] {
				alive++
			}
		}
		if alive == 0 || alive >= n || alive > s.Live[l][n-1] {
			t.Fatalf("layer %d: %d tokens alive of %d, %d memories held", l, alive, n, s.Live[l][n-1])
		}
	}
	if !s.Tokens[n-1].Alive[0] {
		t.Fatalf("the last token is not in memory")
	}
	var bits float64
	for _, tk := range s.Tokens[1:] {
		bits += *tk.Bits
	}
	chars := len([]rune(text)) - 1
	if s.ScoredTokens != n-1 || s.ScoredChars != chars || s.BPC == nil || math.Abs(*s.BPC-bits/float64(chars)) > 1e-9 {
		t.Fatalf("scored %d tokens, %d chars, bpc %v; want %d, %d, %.4f", s.ScoredTokens, s.ScoredChars, s.BPC, n-1, chars, bits/float64(chars))
	}
	// The split characters: their first bytes carry no text.
	if i := slices.IndexFunc(s.Tokens, func(tk spanview.Token) bool { return tk.Text == "Ü" }); i < 1 || s.Tokens[i-1].Text != "" {
		t.Fatalf("Ü should come with its second byte, the first empty (at %d)", i)
	}
}
