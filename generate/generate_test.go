package generate

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"xspan/tokenize"
)

func gen(t *testing.T, st Stepper, prompt string, opts Options, emit func(Token) error) (Result, error) {
	t.Helper()
	ids, _, err := EncodePrompt(tokenize.Byte{}, []byte(prompt), UnkError)
	if err != nil {
		t.Fatal(err)
	}
	return Generate(context.Background(), st, tokenize.Byte{}, ids, opts, emit)
}

func TestGenerateSameSeedSameText(t *testing.T) {
	opts := Options{MaxNewTokens: 300, Sampler: SamplerConfig{Temperature: 0.9, TopK: 40, TopP: 0.95, Seed: 11}}
	a, err := gen(t, newFake(256, 2, 50, true), "Hello", opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := gen(t, newFake(256, 2, 50, true), "Hello", opts, nil)
	opts.Sampler.Seed = 12
	c, _ := gen(t, newFake(256, 2, 50, true), "Hello", opts, nil)
	if !slices.Equal(a.IDs, b.IDs) || a.Text != b.Text {
		t.Errorf("same seed, different text")
	}
	if slices.Equal(a.IDs, c.IDs) {
		t.Errorf("seeds 11 and 12 gave the same 300 tokens")
	}
	if a.NewTokens != 300 || len(a.IDs) != 300 || a.Stop != StopLength || a.PromptTokens != 5 || a.Seed != 11 {
		t.Errorf("result %+v", a)
	}
	// 5 prompt tokens and 299 new ones fed (the last one drawn is never fed): 304 per layer.
	if !slices.Equal(a.Live, []int{50, 51}) || a.Dropped != (304-50)+(304-51) {
		t.Errorf("live %v, dropped %d; want [50 51], %d", a.Live, a.Dropped, (304-50)+(304-51))
	}
}

func TestGenerateGreedyAndEmit(t *testing.T) {
	st := newFake(256, 1, 1000, false)
	var streamed strings.Builder
	var n int
	res, err := gen(t, st, "ab", Options{MaxNewTokens: 50, Sampler: SamplerConfig{TopP: 1}}, func(tok Token) error {
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
	check := newFake(256, 1, 1000, false)
	logp, _ := check.Feed([]int64{'a', 'b'})
	for i, id := range res.IDs {
		want, _ := mustSampler(t, SamplerConfig{TopP: 1}).Sample(logp)
		if id != want {
			t.Fatalf("greedy token %d = %d, want %d", i, id, want)
		}
		logp, _ = check.Feed([]int64{int64(id)})
	}
	// Prompt in one feed, then one feed per token but the last.
	if got := st.feeds.Load(); got != 1+49 {
		t.Errorf("%d feeds, want 50", got)
	}
}

func TestGeneratePromptBlocksAndStats(t *testing.T) {
	st := newFake(256, 2, 10, true)
	var snaps []Stats
	prompt := strings.Repeat("x", 10)
	res, err := gen(t, st, prompt, Options{MaxNewTokens: 25, Sampler: DefaultSampler(), PromptBlock: 4, StatsEvery: 10, OnStats: func(s Stats) { snaps = append(snaps, s) }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.feeds.Load(); got != 3+24 {
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
	st := newFake(256, 1, 10, true)
	res, err := Generate(ctx, st, tokenize.Byte{}, []int64{1, 2}, Options{MaxNewTokens: 1000, Sampler: DefaultSampler()}, func(tok Token) error {
		if tok.Index == 9 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || res.Stop != StopCancelled || res.NewTokens != 10 {
		t.Errorf("cancel after 10 tokens: %v, stop %q, %d tokens", err, res.Stop, res.NewTokens)
	}
	boom := errors.New("client gone")
	res, err = Generate(context.Background(), newFake(256, 1, 10, true), tokenize.Byte{}, []int64{1}, Options{MaxNewTokens: 100, Sampler: DefaultSampler()}, func(tok Token) error {
		if tok.Index == 4 {
			return boom
		}
		return nil
	})
	if err != boom || res.NewTokens != 5 {
		t.Errorf("emit error: %v after %d tokens", err, res.NewTokens)
	}
	if _, err := Generate(context.Background(), newFake(256, 1, 10, true), tokenize.Byte{}, nil, Options{MaxNewTokens: 1, Sampler: DefaultSampler()}, nil); err != ErrEmptyPrompt {
		t.Errorf("empty prompt: %v", err)
	}
	if _, err := Generate(context.Background(), newFake(256, 1, 10, true), tokenize.Byte{}, []int64{1}, Options{MaxNewTokens: 0, Sampler: DefaultSampler()}, nil); err == nil {
		t.Errorf("max new tokens 0 should fail")
	}
	if _, err := Generate(context.Background(), newFake(256, 1, 10, true), tokenize.Byte{}, []int64{1}, Options{MaxNewTokens: 1, Sampler: SamplerConfig{Temperature: -1, TopP: 1}}, nil); err == nil {
		t.Errorf("negative temperature should fail")
	}
}

func TestParseVmRSS(t *testing.T) {
	n, err := parseVmRSS([]byte("Name:\tx\nVmPeak:\t  900 kB\nVmRSS:\t  1234 kB\n"))
	if err != nil || n != 1234*1024 {
		t.Errorf("parseVmRSS = %d, %v", n, err)
	}
	if _, err := parseVmRSS([]byte("Name:\tx\n")); err == nil {
		t.Errorf("missing VmRSS should fail")
	}
	if _, err := parseVmRSS([]byte("VmRSS: 12 MB\n")); err == nil {
		t.Errorf("VmRSS in MB should fail")
	}
	if rss, err := ProcessRSS(); err != nil || rss < 1<<20 {
		t.Errorf("ProcessRSS = %d, %v", rss, err)
	}
	for n, want := range map[int64]string{0: "?", 2048: "2.0 KiB", 3 << 20: "3.0 MiB", 5 << 30: "5.00 GiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestFlatnessFake(t *testing.T) {
	pruned := 0
	runs, err := Flatness(context.Background(), func(pruning bool) (Stepper, error) {
		if pruning {
			pruned++
		}
		return newFake(64, 2, 100, pruning), nil
	}, []int64{1, 2, 3}, FlatnessConfig{Tokens: 3000, Marks: []int{3000, 1000, 99999, 2000}, Window: 100, BytesPerMemory: 512})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || !runs[0].Pruning || runs[1].Pruning || pruned != 1 {
		t.Fatalf("runs %+v", runs)
	}
	for _, r := range runs {
		if len(r.Marks) != 3 || r.Marks[0].Tokens != 1000 || r.Marks[2].Tokens != 3000 {
			t.Fatalf("marks %+v", r.Marks)
		}
	}
	on, off := runs[0].Marks, runs[1].Marks
	if !slices.Equal(on[0].Live, on[2].Live) || !slices.Equal(on[2].Live, []int{100, 101}) {
		t.Errorf("pruned memory should stay flat: %v → %v", on[0].Live, on[2].Live)
	}
	// 3 prompt tokens plus one feed per new token.
	if !slices.Equal(off[0].Live, []int{1003, 1003}) || !slices.Equal(off[2].Live, []int{3003, 3003}) {
		t.Errorf("unpruned memory should grow: %v → %v", off[0].Live, off[2].Live)
	}
	// Step times in one unit: a window of 1 ms steps and one 100 ms pause has a median of
	// 1 and a mean of 1.99 ms (no "tok/s" column beside ms/token to contradict it).
	window := make([]time.Duration, 100)
	for i := range window {
		window[i] = time.Millisecond
	}
	window[50] = 100 * time.Millisecond
	if m := measure(window, 100, newFake(10, 1, 10, true)); m.MsPerToken != 1 || m.MsP10 != 1 || math.Abs(m.MsMean-1.99) > 1e-9 {
		t.Errorf("window of 99 × 1 ms and one 100 ms: median %v, p10 %v, mean %v; want 1, 1, 1.99", m.MsPerToken, m.MsP10, m.MsMean)
	}
	var b strings.Builder
	WriteFlatness(&b, runs, FlatnessConfig{BytesPerMemory: 512})
	if head, _, _ := strings.Cut(b.String(), "\n"); strings.Contains(head, "tok/s") || !strings.Contains(head, "ms mean") {
		t.Errorf("table header %q", head)
	}
	out := b.String()
	for _, want := range []string{"ms/token", "on          1000", "off         3000", "live memories ×1.00 (201 → 201)", "live memories ×2.99 (2006 → 6006)", "100.5 KiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
