package generate_test

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"xspan/generate"
	"xspan/generate/gentest"
	"xspan/tokenize"
)

func TestGenerateStopSequences(t *testing.T) {
	// A char vocabulary: one character a token, so tokens and characters count alike.
	chars, _ := tokenize.NewChar([]rune("abcdefghij"))
	run := func(opts generate.Options, emit func(generate.Token) error) (generate.Result, error) {
		return generate.Generate(context.Background(), gentest.NewStepper(chars.Size(), 1, 1000, false), chars, []int64{1, 2}, opts, emit)
	}
	greedy := generate.Options{MaxNewTokens: 200, Sampler: generate.SamplerConfig{TopP: 1}}
	full, err := run(greedy, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A stop sequence of three characters from the middle of the greedy text.
	runes := []rune(full.Text)
	stop := string(runes[len(runes)/2 : len(runes)/2+3])
	first := strings.Index(full.Text, stop)
	opts := greedy
	opts.Stop = []string{"not in the text", stop}
	var streamed strings.Builder
	res, err := run(opts, func(tok generate.Token) error {
		streamed.WriteString(tok.Text)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Text != full.Text[:first] || streamed.String() != res.Text || res.Stop != generate.StopSequence {
		t.Errorf("stop %q: text %q (streamed %q), finish %q; want %q, stop", stop, res.Text, streamed.String(), res.Stop, full.Text[:first])
	}
	// It stopped at the token that completed the stop sequence, and counts the tokens of
	// the text it returns: the stop sequence's three are left out with it.
	if want := utf8.RuneCountInString(full.Text[:first]); res.NewTokens != want || len(res.IDs) != want {
		t.Errorf("%d tokens, want %d", res.NewTokens, want)
	}
	// A stop sequence that never comes changes nothing.
	opts.Stop = []string{"zzz"}
	res, _ = run(opts, nil)
	if res.Text != full.Text || res.Stop != generate.StopLength {
		t.Errorf("absent stop sequence: %q %s", res.Text, res.Stop)
	}
	opts.Stop = []string{""}
	if _, err := run(opts, nil); err == nil || !strings.Contains(err.Error(), "non-empty") {
		t.Errorf("empty stop sequence: %v", err)
	}
}

func TestGenerateLogProbs(t *testing.T) {
	opts := generate.Options{MaxNewTokens: 30, Sampler: generate.SamplerConfig{Temperature: 1.5, TopP: 1, Seed: 3}, TopLogProbs: 5}
	var streamed []generate.Token
	res, err := gentest.Generate(t, gentest.NewStepper(256, 1, 1000, false), "ab", opts, func(tok generate.Token) error { streamed = append(streamed, tok); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(res.LogProbs) != 30 {
		t.Fatalf("%d log-probs, want 30", len(res.LogProbs))
	}
	// Replay the fake: each log-prob is the model's, before the temperature.
	check := gentest.NewStepper(256, 1, 1000, false)
	logp, _ := check.Feed([]int64{'a', 'b'})
	for i, lp := range res.LogProbs {
		if lp.ID != res.IDs[i] || lp.LogProb != float64(logp[lp.ID]) || lp.Token != generate.TokenText(tokenize.Byte{}, lp.ID) {
			t.Fatalf("token %d: %+v, want id %d logprob %g", i, lp.Alt, res.IDs[i], logp[res.IDs[i]])
		}
		if len(lp.Top) != 5 || streamed[i].LogProb == nil || *streamed[i].LogProb != lp.LogProb || len(streamed[i].TopLogProbs) != 5 {
			t.Fatalf("token %d: top %v, streamed %+v", i, lp.Top, streamed[i])
		}
		var sum float64
		for k, a := range lp.Top {
			if a.LogProb != float64(logp[a.ID]) || (k > 0 && a.LogProb > lp.Top[k-1].LogProb) {
				t.Fatalf("token %d: top %v not the sorted log-probs", i, lp.Top)
			}
			sum += math.Exp(a.LogProb)
		}
		for id, v := range logp { // nothing outside the top 5 is likelier than its last
			if float64(v) > lp.Top[4].LogProb && !containsID(lp.Top, id) {
				t.Fatalf("token %d: id %d (%g) missing from top %v", i, id, v, lp.Top)
			}
		}
		logp, _ = check.Feed([]int64{int64(lp.ID)})
	}
	// Without the option there are none, and the JSON of a token has no such fields.
	res, _ = gentest.Generate(t, gentest.NewStepper(256, 1, 1000, false), "ab", generate.Options{MaxNewTokens: 3, Sampler: generate.DefaultSampler()}, func(tok generate.Token) error {
		if b, _ := json.Marshal(tok); strings.Contains(string(b), "logprob") {
			t.Errorf("token JSON %s", b)
		}
		return nil
	})
	if res.LogProbs != nil {
		t.Errorf("log-probs without asking: %v", res.LogProbs)
	}
}

func containsID(alts []generate.Alt, id int) bool {
	for _, a := range alts {
		if a.ID == id {
			return true
		}
	}
	return false
}

func TestTokenText(t *testing.T) {
	for id, want := range map[int]string{'a': "a", '\n': "\n", 0xe2: `bytes:\xe2`, 0xff: `bytes:\xff`} {
		if got := generate.TokenText(tokenize.Byte{}, id); got != want {
			t.Errorf("byte %#x: %q, want %q", id, got, want)
		}
	}
}

type startModel struct {
	gentest.Model
	id int64
}

func (m *startModel) StartID() (int64, bool) { return m.id, m.id >= 0 }

func TestStartToken(t *testing.T) {
	withNL, _ := tokenize.NewChar([]rune("ab\nc"))
	noNL, _ := tokenize.NewChar([]rune("xyz "))
	for _, c := range []struct {
		name string
		m    generate.Model
		want int64
	}{
		{"byte vocabulary: newline", &gentest.Model{}, '\n'},
		{"char vocabulary with a newline", &gentest.Model{Vocabulary: withNL}, 0}, // "\n" sorts first
		{"char vocabulary without: token 0, the space", &gentest.Model{Vocabulary: noNL}, 0},
		{"char vocabulary without, start id recorded", &startModel{gentest.Model{Vocabulary: noNL}, 2}, 2},
		{"newline first, recorded id second", &startModel{gentest.Model{}, 2}, '\n'},
		{"recorded id out of range: fallback", &startModel{gentest.Model{Vocabulary: noNL}, 99}, 0},
	} {
		if got := generate.StartToken(c.m); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	ids, _, err := generate.PromptTokens(&startModel{gentest.Model{Vocabulary: noNL}, 3}, nil, generate.UnkError)
	if err != nil || len(ids) != 1 || ids[0] != 3 {
		t.Errorf("empty prompt: %v %v", ids, err)
	}
	if ids, _, err := generate.PromptTokens(&gentest.Model{}, []byte("hi"), generate.UnkError); err != nil || len(ids) != 2 {
		t.Errorf("prompt hi: %v %v", ids, err)
	}
}
