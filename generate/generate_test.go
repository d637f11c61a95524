package generate_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"xspan/generate"
	"xspan/generate/gentest"
	"xspan/tokenize"
)

func TestGenerateSameSeedSameText(t *testing.T) {
	opts := generate.Options{MaxNewTokens: 300, Sampler: generate.SamplerConfig{Temperature: 0.9, TopK: 40, TopP: 0.95, Seed: 11}}
	a, err := gentest.Generate(t, gentest.NewStepper(256, 2, 50, true), "Hello", opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := gentest.Generate(t, gentest.NewStepper(256, 2, 50, true), "Hello", opts, nil)
	opts.Sampler.Seed = 12
	c, _ := gentest.Generate(t, gentest.NewStepper(256, 2, 50, true), "Hello", opts, nil)
	if !slices.Equal(a.IDs, b.IDs) || a.Text != b.Text {
		t.Errorf("same seed, different text")
	}
	if slices.Equal(a.IDs, c.IDs) {
		t.Errorf("seeds 11 and 12 gave the same 300 tokens")
	}
	if a.NewTokens != 300 || len(a.IDs) != 300 || a.Stop != generate.StopLength || a.PromptTokens != 5 || a.Seed != 11 {
		t.Errorf("result %+v", a)
	}
	// 5 prompt tokens and 299 new ones fed (the last one drawn is never fed): 304 per layer.
	if !slices.Equal(a.Live, []int{50, 51}) || a.Dropped != (304-50)+(304-51) {
		t.Errorf("live %v, dropped %d; want [50 51], %d", a.Live, a.Dropped, (304-50)+(304-51))
	}
}

func TestGenerateGreedyAndEmit(t *testing.T) {
	st := gentest.NewStepper(256, 1, 1000, false)
	var streamed strings.Builder
	var n int
	res, err := gentest.Generate(t, st, "ab", generate.Options{MaxNewTokens: 50, Sampler: generate.SamplerConfig{TopP: 1}}, func(tok generate.Token) error {
		if tok.ID >= 0 && tok.Index != n {
			t.Errorf("token index %d, want %d", tok.Index, n)
		}
		if tok.ID >= 0 {
			n++
		}
		streamed.WriteString(tok.Text)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if streamed.String() != res.Text || n != 50 {
		t.Errorf("streamed %d tokens %q, result %q", n, streamed.String(), res.Text)
	}
	// Greedy: every token is the argmax of the fake's distribution after the previous one.
	check := gentest.NewStepper(256, 1, 1000, false)
	logp, _ := check.Feed([]int64{'a', 'b'})
	greedy, err := generate.NewSampler(generate.SamplerConfig{TopP: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range res.IDs {
		want, _ := greedy.Sample(logp)
		if id != want {
			t.Fatalf("greedy token %d = %d, want %d", i, id, want)
		}
		logp, _ = check.Feed([]int64{int64(id)})
	}
	// Prompt in one feed, then one feed per token but the last.
	if got := st.Feeds.Load(); got != 1+49 {
		t.Errorf("%d feeds, want 50", got)
	}
}

func TestGeneratePromptBlocksAndStats(t *testing.T) {
	st := gentest.NewStepper(256, 2, 10, true)
	var snaps []generate.Stats
	prompt := strings.Repeat("x", 10)
	res, err := gentest.Generate(t, st, prompt, generate.Options{MaxNewTokens: 25, Sampler: generate.DefaultSampler(), PromptBlock: 4, StatsEvery: 10, OnStats: func(s generate.Stats) { snaps = append(snaps, s) }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Feeds.Load(); got != 3+24 {
		t.Errorf("%d feeds, want 3 prompt pieces + 24 tokens", got)
	}
	if len(snaps) != 3 || snaps[0].Tokens != 10 || snaps[1].Tokens != 20 || !snaps[2].Final || snaps[2].Tokens != 25 {
		t.Fatalf("snapshots %+v", snaps)
	}
	last := snaps[2]
	if !slices.Equal(last.Live, res.Live) || last.Dropped != res.Dropped || last.TokensPerSec <= 0 || last.RSS <= 0 {
		t.Errorf("final snapshot %+v vs result %+v", last, res)
	}
	line := last.String()
	for _, want := range []string{"stats (end): 25 tokens", "tok/s", "live memories [10 11] = 21", "dropped", "rss"} {
		if !strings.Contains(line, want) {
			t.Errorf("stats line %q lacks %q", line, want)
		}
	}
}

func TestGenerateCancelAndErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	st := gentest.NewStepper(256, 1, 10, true)
	res, err := generate.Generate(ctx, st, tokenize.Byte{}, []int64{1, 2}, generate.Options{MaxNewTokens: 1000, Sampler: generate.DefaultSampler()}, func(tok generate.Token) error {
		if tok.Index == 9 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || res.Stop != generate.StopCancelled || res.NewTokens != 10 {
		t.Errorf("cancel after 10 tokens: %v, stop %q, %d tokens", err, res.Stop, res.NewTokens)
	}
	boom := errors.New("client gone")
	res, err = generate.Generate(context.Background(), gentest.NewStepper(256, 1, 10, true), tokenize.Byte{}, []int64{1}, generate.Options{MaxNewTokens: 100, Sampler: generate.DefaultSampler()}, func(tok generate.Token) error {
		if tok.Index == 4 {
			return boom
		}
		return nil
	})
	if err != boom || res.NewTokens != 5 {
		t.Errorf("emit error: %v after %d tokens", err, res.NewTokens)
	}
	if _, err := generate.Generate(context.Background(), gentest.NewStepper(256, 1, 10, true), tokenize.Byte{}, nil, generate.Options{MaxNewTokens: 1, Sampler: generate.DefaultSampler()}, nil); err != generate.ErrEmptyPrompt {
		t.Errorf("empty prompt: %v", err)
	}
	if _, err := generate.Generate(context.Background(), gentest.NewStepper(256, 1, 10, true), tokenize.Byte{}, []int64{1}, generate.Options{MaxNewTokens: 0, Sampler: generate.DefaultSampler()}, nil); err == nil {
		t.Errorf("max new tokens 0 should fail")
	}
	if _, err := generate.Generate(context.Background(), gentest.NewStepper(256, 1, 10, true), tokenize.Byte{}, []int64{1}, generate.Options{MaxNewTokens: 1, Sampler: generate.SamplerConfig{Temperature: -1, TopP: 1}}, nil); err == nil {
		t.Errorf("negative temperature should fail")
	}
}
