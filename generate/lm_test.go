package generate_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sugarme/gotch"

	"xspan/generate"
	"xspan/internal/torchrt"
	"xspan/lm"
	"xspan/serve"
	"xspan/tokenize"
)

// tinyLM is a real model with random weights, small enough for tests: spans start at
// 0.1·64 ≈ 6 tokens plus a ramp of 8, so memories expire within a few dozen tokens.
func tinyLM(t *testing.T) *lm.Model {
	t.Helper()
	cfg := lm.Config{ModelConfig: lm.ModelConfig{Vocab: 256, Layers: 2, Dim: 32, Heads: 2, FFN: 64, Block: 16,
		Expire: true, MaxSpan: 64, Ramp: 8, PreDiv: 1, InitFrac: 0.1}}
	torchrt.Seed(1)
	m, err := lm.New(cfg, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type lmModel struct {
	m       *lm.Model
	pruning bool
}

func (l lmModel) NewStepper() (generate.Stepper, error) {
	d := l.m.NewDecoder()
	d.SetPruning(l.pruning)
	return d, nil
}
func (lmModel) Vocab() tokenize.Vocab { return tokenize.Byte{} }
func (l lmModel) Info() any           { return l.m.Cfg }

func run(t *testing.T, m generate.Model, prompt string, opts generate.Options) generate.Result {
	t.Helper()
	st, err := m.NewStepper()
	if err != nil {
		t.Fatal(err)
	}
	defer st.(*lm.Decoder).Close()
	res, err := generate.Generate(context.Background(), st, m.Vocab(), []int64(bytesToIDs(prompt)), opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func bytesToIDs(s string) []int64 {
	out := make([]int64, len(s))
	for i := range len(s) {
		out[i] = int64(s[i])
	}
	return out
}

// With a real decoder: the same seed gives the same tokens, pruning changes nothing in the
// output (it drops only expired memories) while keeping memory bounded.
func TestRealModelDeterministicAndPruningExact(t *testing.T) {
	defer torchrt.Lock()()
	m := tinyLM(t)
	prompt := strings.Repeat("Expire-Span drops what it no longer needs. ", 2) // 86 tokens: several blocks
	opts := generate.Options{MaxNewTokens: 120, Sampler: generate.SamplerConfig{Temperature: 0.9, TopK: 50, TopP: 0.95, Seed: 3}, PromptBlock: 16}
	a := run(t, lmModel{m, true}, prompt, opts)
	b := run(t, lmModel{m, true}, prompt, opts)
	if !slices.Equal(a.IDs, b.IDs) {
		t.Fatalf("same seed, different tokens")
	}
	opts.Sampler.Seed = 4
	if c := run(t, lmModel{m, true}, prompt, opts); slices.Equal(a.IDs, c.IDs) {
		t.Errorf("seeds 3 and 4 gave the same 120 tokens")
	}
	greedy := generate.Options{MaxNewTokens: 150, Sampler: generate.SamplerConfig{TopP: 1}, PromptBlock: 16}
	on := run(t, lmModel{m, true}, prompt, greedy)
	off := run(t, lmModel{m, false}, prompt, greedy)
	if !slices.Equal(on.IDs, off.IDs) {
		t.Errorf("pruning changed the greedy text:\n on  %v\n off %v", on.IDs, off.IDs)
	}
	if on.Dropped == 0 || off.Dropped != 0 {
		t.Errorf("dropped: %d with pruning (want > 0), %d without (want 0)", on.Dropped, off.Dropped)
	}
	for l := range on.Live {
		if on.Live[l] >= off.Live[l] || on.Live[l] > 64+8+16 {
			t.Errorf("layer %d: %d live memories with pruning, %d without", l, on.Live[l], off.Live[l])
		}
	}
}

func TestRealModelServer(t *testing.T) {
	defer torchrt.Lock()()
	m := tinyLM(t)
	cfg := serve.DefaultConfig()
	cfg.MaxConcurrent, cfg.MaxQueue, cfg.PromptBlock, cfg.Grace = 2, 4, 16, time.Second
	srv, err := serve.New(lmModel{m, true}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrc, done := make(chan string, 1), make(chan error, 1)
	go func() {
		done <- srv.ListenAndServe(ctx, "127.0.0.1:0", func(a string) { addrc <- a })
	}()
	url := "http://" + <-addrc
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}()
	type answer struct {
		code int
		r    serve.Response
	}
	ask := func() answer {
		resp, err := http.Post(url+"/v1/generate", "application/json", strings.NewReader(`{"prompt":"Hello, world","max_new_tokens":40,"seed":7,"top_k":20}`))
		if err != nil {
			return answer{code: -1}
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var a answer
		a.code = resp.StatusCode
		json.Unmarshal(b, &a.r)
		return a
	}
	// Concurrent requests, each on its own net/http goroutine and memory, agree.
	answers := make(chan answer, 3)
	for range 3 {
		go func() { answers <- ask() }()
	}
	want := run(t, lmModel{m, true}, "Hello, world", generate.Options{MaxNewTokens: 40, Sampler: generate.SamplerConfig{Temperature: 1, TopK: 20, TopP: 1, Seed: 7}, PromptBlock: 16})
	for range 3 {
		a := <-answers
		if a.code != 200 || a.r.NewTokens != 40 || a.r.Text != want.Text || !slices.Equal(a.r.Live, want.Live) {
			t.Errorf("answer %d %+v; want text %q, live %v", a.code, a.r, want.Text, want.Live)
		}
	}
}
