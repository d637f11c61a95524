package generate

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"xspan/tokenize"
)

func TestStopper(t *testing.T) {
	s := stopper{seqs: []string{"\n\n", "END"}}
	var out []string
	for _, piece := range []string{"ab", "c\n", "x\n", "E", "N", "d", "EN", "D!", "zz"} {
		got, hit := s.push(piece)
		out = append(out, got)
		if hit {
			break
		}
	}
	// "\n" and "E"/"EN" wait until the next piece shows they begin no stop sequence.
	want := []string{"ab", "c", "\nx", "\n", "", "ENd", "", ""}
	if strings.Join(out, "|") != strings.Join(want, "|") {
		t.Errorf("pieces %q, want %q", out, want)
	}
	s = stopper{seqs: []string{"é!"}} // held text ends on a character boundary
	if got, _ := s.push("aé"); got != "a" || s.flush() != "é" {
		t.Errorf("multi-byte: %q", got)
	}
	if got, hit := (&stopper{}).push("anything"); got != "anything" || hit {
		t.Errorf("no stop sequences: %q %v", got, hit)
	}
}

func TestGenerateStopSequences(t *testing.T) {
	// A char vocabulary: one character a token, so tokens and characters count alike.
	chars, _ := tokenize.NewChar([]rune("abcdefghij"))
	run := func(opts Options, emit func(Token) error) (Result, error) {
		return Generate(context.Background(), newFake(chars.Size(), 1, 1000, false), chars, []int64{1, 2}, opts, emit)
	}
	greedy := Options{MaxNewTokens: 200, Sampler: SamplerConfig{TopP: 1}}
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
	res, err := run(opts, func(tok Token) error {
		streamed.WriteString(tok.Text)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Text != full.Text[:first] || streamed.String() != res.Text || res.Stop != StopSequence {
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
	if res.Text != full.Text || res.Stop != StopLength {
		t.Errorf("absent stop sequence: %q %s", res.Text, res.Stop)
	}
	opts.Stop = []string{""}
	if _, err := run(opts, nil); err == nil || !strings.Contains(err.Error(), "non-empty") {
		t.Errorf("empty stop sequence: %v", err)
	}
}

func TestGenerateLogProbs(t *testing.T) {
	opts := Options{MaxNewTokens: 30, Sampler: SamplerConfig{Temperature: 1.5, TopP: 1, Seed: 3}, TopLogProbs: 5}
	var streamed []Token
	res, err := gen(t, newFake(256, 1, 1000, false), "ab", opts, func(tok Token) error { streamed = append(streamed, tok); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(res.LogProbs) != 30 {
		t.Fatalf("%d log-probs, want 30", len(res.LogProbs))
	}
	// Replay the fake: each log-prob is the model's, before the temperature.
	check := newFake(256, 1, 1000, false)
	logp, _ := check.Feed([]int64{'a', 'b'})
	for i, lp := range res.LogProbs {
		if lp.ID != res.IDs[i] || lp.LogProb != float64(logp[lp.ID]) || lp.Token != TokenText(tokenize.Byte{}, lp.ID) {
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
	res, _ = gen(t, newFake(256, 1, 1000, false), "ab", Options{MaxNewTokens: 3, Sampler: DefaultSampler()}, func(tok Token) error {
		if b, _ := json.Marshal(tok); strings.Contains(string(b), "logprob") {
			t.Errorf("token JSON %s", b)
		}
		return nil
	})
	if res.LogProbs != nil {
		t.Errorf("log-probs without asking: %v", res.LogProbs)
	}
}

func containsID(alts []Alt, id int) bool {
	for _, a := range alts {
		if a.ID == id {
			return true
		}
	}
	return false
}

func TestTokenText(t *testing.T) {
	for id, want := range map[int]string{'a': "a", '\n': "\n", 0xe2: `bytes:\xe2`, 0xff: `bytes:\xff`} {
		if got := TokenText(tokenize.Byte{}, id); got != want {
			t.Errorf("byte %#x: %q, want %q", id, got, want)
		}
	}
}

type startModel struct {
	fakeModel
	id int64
}

func (m *startModel) StartID() (int64, bool) { return m.id, m.id >= 0 }

func TestStartToken(t *testing.T) {
	withNL, _ := tokenize.NewChar([]rune("ab\nc"))
	noNL, _ := tokenize.NewChar([]rune("xyz "))
	for _, c := range []struct {
		name string
		m    Model
		want int64
	}{
		{"byte vocabulary: newline", &fakeModel{}, '\n'},
		{"char vocabulary with a newline", &fakeModel{vocab: withNL}, 0}, // "\n" sorts first
		{"char vocabulary without: token 0, the space", &fakeModel{vocab: noNL}, 0},
		{"char vocabulary without, start id recorded", &startModel{fakeModel{vocab: noNL}, 2}, 2},
		{"newline first, recorded id second", &startModel{fakeModel{}, 2}, '\n'},
		{"recorded id out of range: fallback", &startModel{fakeModel{vocab: noNL}, 99}, 0},
	} {
		if got := StartToken(c.m); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	ids, _, err := PromptTokens(&startModel{fakeModel{vocab: noNL}, 3}, nil, UnkError)
	if err != nil || len(ids) != 1 || ids[0] != 3 {
		t.Errorf("empty prompt: %v %v", ids, err)
	}
	if ids, _, err := PromptTokens(&fakeModel{}, []byte("hi"), UnkError); err != nil || len(ids) != 2 {
		t.Errorf("prompt hi: %v %v", ids, err)
	}
}

// The native API: an empty prompt, stop sequences and log-probabilities.
func TestServerStopLogProbsEmptyPrompt(t *testing.T) {
	url, _ := startServer(t, &fakeModel{}, ServerConfig{})
	var empty, newline Response
	_, b := post(t, url, `{"prompt":"","max_new_tokens":30,"seed":4}`)
	json.Unmarshal(b, &empty)
	_, b = post(t, url, `{"prompt":"\n","max_new_tokens":30,"seed":4}`)
	json.Unmarshal(b, &newline)
	if empty.NewTokens != 30 || empty.PromptTokens != 1 || empty.Text != newline.Text {
		t.Errorf("empty prompt: %+v; want the text after a newline %q", empty.Result, newline.Text)
	}
	stop := string([]rune(newline.Text)[10:12])
	body := `{"prompt":"\n","max_new_tokens":30,"seed":4,"logprobs":2,"stop":["` + jsonEscape(stop) + `"]}`
	code, b := post(t, url, body)
	var r Response
	json.Unmarshal(b, &r)
	if want := newline.Text[:strings.Index(newline.Text, stop)]; code != 200 || r.Text != want || r.Stop != StopSequence || len(r.LogProbs) != r.NewTokens || len(r.LogProbs[0].Top) != 2 {
		t.Errorf("stop %q: %d %s; want text %q", stop, code, b, want)
	}
	for _, c := range []struct{ body, want string }{
		{`{"prompt":"a","stop":["a","b","c","d","e"]}`, "5 stop sequences: at most 4"},
		{`{"prompt":"a","stop":[""]}`, "want 1 to 256 bytes"},
		{`{"prompt":"a","logprobs":6}`, "logprobs = 6: must lie in [0, 5]"},
		{`{"prompt":"a","stop":"x"}`, "bad JSON"},
	} {
		code, b := post(t, url, c.body)
		if code != 400 || !strings.Contains(string(b), c.want) {
			t.Errorf("%s: %d %s; want 400 with %q", c.body, code, b, c.want)
		}
	}
}

func jsonEscape(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}
