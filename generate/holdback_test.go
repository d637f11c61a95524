package generate

import (
	"context"
	"math"
	"strings"
	"testing"

	"xspan/tokenize"
)

// wordVocab is a vocabulary of whole strings, as a BPE vocabulary has: a token may hold
// several characters, a stop sequence may end inside one.
type wordVocab []string

func (v wordVocab) Kind() string                         { return tokenize.KindHF }
func (v wordVocab) Size() int                            { return len(v) }
func (v wordVocab) Encode(text []byte) ([]uint32, error) { return nil, nil }
func (v wordVocab) Spec() tokenize.Spec                  { return tokenize.Spec{Kind: tokenize.KindHF, Size: len(v)} }
func (v wordVocab) Decode(ids []uint32) []byte {
	var b []byte
	for _, id := range ids {
		b = append(b, v[id]...)
	}
	return b
}

// scripted is a Stepper whose next token is certain: the script's, in turn.
type scripted struct {
	vocab  int
	script []int
	fed    int
}

func (s *scripted) Feed(tokens []int64) ([]float32, error) {
	s.fed += len(tokens)
	logp := make([]float32, s.vocab)
	for i := range logp {
		logp[i] = float32(math.Inf(-1))
	}
	next := s.script[min(s.fed-1, len(s.script)-1)] // the prompt is one token
	logp[next] = 0
	return logp, nil
}
func (s *scripted) Live() []int    { return []int{s.fed} }
func (s *scripted) Dropped() int64 { return 0 }

// Tokens, log-probabilities and the count of new tokens (the API's completion_tokens)
// follow the text: a token wholly in the stop sequence is left out with it, one that
// begins before it stays, and text held back while it might begin a stop sequence goes
// out, in order, with the token that shows it does not.
func TestStopLeavesOutItsTokens(t *testing.T) {
	vocab := wordVocab{"<s>", "a", "b", "\n", "x\n", "E", "N", "D", "ab\n", "\nc", "é"[:1], "é"[1:]}
	for _, c := range []struct {
		name   string
		script []int
		stop   string
		text   string
		kept   []int
		pieces []string // each emitted token's text
	}{
		{"stop token left out", []int{1, 3, 2}, "\n", "a", []int{1}, []string{"a"}},
		{"a token that begins before the stop stays", []int{1, 4, 2}, "\n", "ax", []int{1, 4}, []string{"a", "x"}},
		{"three tokens of a stop", []int{1, 5, 6, 7, 2}, "END", "a", []int{1}, []string{"a"}},
		{"a held prefix that is no stop", []int{1, 5, 2, 2}, "END", "aEbb", []int{1, 5, 2, 2}, []string{"a", "E", "b", "b"}},
		{"stop across two tokens", []int{8, 9, 2}, "\n\n", "ab", []int{8}, []string{"ab"}},
		{"no stop: held text flushed", []int{1, 5, 6}, "END", "aEN", []int{1, 5, 6}, []string{"a", "E", "N"}},
		{"a character over two tokens", []int{10, 11, 3}, "\n", "é", []int{10, 11}, []string{"", "é"}},
	} {
		max := len(c.script)
		if c.name == "no stop: held text flushed" {
			max = 3
		}
		st := &scripted{vocab: len(vocab), script: c.script}
		var emitted []Token
		res, err := Generate(context.Background(), st, vocab, []int64{0},
			Options{MaxNewTokens: max, Sampler: SamplerConfig{TopP: 1}, Stop: []string{c.stop}, LogProbs: true}, func(tok Token) error {
				emitted = append(emitted, tok)
				return nil
			})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var streamed strings.Builder
		var pieces []string
		var ids []int
		for _, tok := range emitted {
			streamed.WriteString(tok.Text)
			if tok.ID >= 0 {
				pieces, ids = append(pieces, tok.Text), append(ids, tok.ID)
				if tok.LogProb == nil || *tok.LogProb != 0 {
					t.Errorf("%s: token %d without its log-prob", c.name, tok.ID)
				}
			}
		}
		if res.Text != c.text || streamed.String() != c.text {
			t.Errorf("%s: text %q, streamed %q; want %q", c.name, res.Text, streamed.String(), c.text)
		}
		if res.NewTokens != len(c.kept) || len(res.LogProbs) != len(c.kept) || len(res.IDs) != len(c.kept) ||
			strings.Join(pieces, "|") != strings.Join(c.pieces, "|") {
			t.Errorf("%s: %d tokens (%d log-probs, ids %v, emitted %v as %q); want %v as %q", c.name, res.NewTokens, len(res.LogProbs), res.IDs, ids, pieces, c.kept, c.pieces)
		}
		for i, id := range c.kept {
			if i < len(res.IDs) && (res.IDs[i] != id || res.LogProbs[i].ID != id) {
				t.Errorf("%s: token %d is %d (log-prob of %d), want %d", c.name, i, res.IDs[i], res.LogProbs[i].ID, id)
			}
		}
	}
}
