package generate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"xspan/internal/torchrt"
	"xspan/tokenize"
)

// Options control one generation.
type Options struct {
	// MaxNewTokens is the number of tokens to produce (at least 1).
	MaxNewTokens int
	// Sampler draws each token.
	Sampler SamplerConfig
	// PromptBlock feeds the prompt in pieces of this many tokens, checking the context
	// between them (0: all at once). The model's block length is the natural choice.
	PromptBlock int
	// StatsEvery calls OnStats after every StatsEvery new tokens (0: only at the end),
	// and OnStats, when set, is also called once at the end.
	StatsEvery int
	OnStats    func(Stats)
}

// Token is one step of a generation as it streams out.
type Token struct {
	// Index counts new tokens from 0.
	Index int `json:"index"`
	// ID is the token id; -1 marks the last piece of text, held back bytes flushed at the
	// end of the stream (see TextStream).
	ID int `json:"id"`
	// Text is the text that became complete with this token (maybe empty).
	Text string `json:"text"`
}

// Stop reasons.
const (
	StopLength    = "length"    // MaxNewTokens reached
	StopCancelled = "cancelled" // the context ended first
)

// Result sums up a generation.
type Result struct {
	PromptTokens int           `json:"prompt_tokens"`
	NewTokens    int           `json:"new_tokens"`
	IDs          []int         `json:"-"`
	Text         string        `json:"text"`
	Stop         string        `json:"finish_reason"`
	Seed         int64         `json:"seed"`
	PromptTime   time.Duration `json:"-"`
	GenTime      time.Duration `json:"-"`
	Live         []int         `json:"live"`
	Dropped      int64         `json:"dropped"`
}

// TokensPerSec is the rate of new tokens, prompt excluded.
func (r Result) TokensPerSec() float64 {
	if r.GenTime <= 0 {
		return 0
	}
	return float64(r.NewTokens) / r.GenTime.Seconds()
}

// Generate feeds prompt to st, then draws up to opts.MaxNewTokens tokens one at a time,
// calling emit (when not nil) with each token and its text as soon as it is drawn. It
// stops early, with the context's error and a Result whose Stop is StopCancelled, when
// ctx ends; an error from emit stops it too and is returned.
func Generate(ctx context.Context, st Stepper, vocab tokenize.Vocab, prompt []int64, opts Options, emit func(Token) error) (_ Result, err error) {
	// A failed libtorch op in the model fails this generation (a server answers 500), never
	// the process.
	defer torchrt.Recover(&err)
	res := Result{PromptTokens: len(prompt), Seed: opts.Sampler.Seed}
	if len(prompt) == 0 {
		return res, ErrEmptyPrompt
	}
	if opts.MaxNewTokens < 1 {
		return res, fmt.Errorf("max new tokens = %d: need at least 1", opts.MaxNewTokens)
	}
	sampler, err := NewSampler(opts.Sampler)
	if err != nil {
		return res, err
	}
	if emit == nil {
		emit = func(Token) error { return nil }
	}
	var text strings.Builder
	finish := func(err error) (Result, error) {
		res.Text = text.String()
		res.Live = st.Live()
		res.Dropped = st.Dropped()
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			res.Stop = StopCancelled
		}
		return res, err
	}

	t0 := time.Now()
	var logp []float32
	piece := opts.PromptBlock
	if piece <= 0 {
		piece = len(prompt)
	}
	for i := 0; i < len(prompt); i += piece {
		if err := ctx.Err(); err != nil {
			return finish(err)
		}
		if logp, err = st.Feed(prompt[i:min(i+piece, len(prompt))]); err != nil {
			return finish(fmt.Errorf("feeding the prompt: %w", err))
		}
	}
	res.PromptTime = time.Since(t0)

	stream := NewTextStream(vocab)
	rep := statsClock{start: time.Now()}
	res.IDs = make([]int, 0, opts.MaxNewTokens)
	for i := 0; i < opts.MaxNewTokens; i++ {
		if err := ctx.Err(); err != nil {
			res.GenTime = time.Since(rep.start)
			return finish(err)
		}
		id, err := sampler.Sample(logp)
		if err != nil {
			return finish(fmt.Errorf("token %d: %w", i, err))
		}
		res.IDs = append(res.IDs, id)
		res.NewTokens++
		piece := stream.Push(id)
		text.WriteString(piece)
		if err := emit(Token{Index: i, ID: id, Text: piece}); err != nil {
			return finish(err)
		}
		if i+1 < opts.MaxNewTokens {
			if logp, err = st.Feed([]int64{int64(id)}); err != nil {
				return finish(fmt.Errorf("token %d: %w", i, err))
			}
		}
		if opts.OnStats != nil && opts.StatsEvery > 0 && (i+1)%opts.StatsEvery == 0 && i+1 < opts.MaxNewTokens {
			opts.OnStats(rep.stats(i+1, st, false))
		}
	}
	res.GenTime = time.Since(rep.start)
	if tail := stream.Flush(); tail != "" {
		text.WriteString(tail)
		if err := emit(Token{Index: res.NewTokens - 1, ID: -1, Text: tail}); err != nil {
			return finish(err)
		}
	}
	res.Stop = StopLength
	if opts.OnStats != nil {
		opts.OnStats(rep.stats(res.NewTokens, st, true))
	}
	return finish(nil)
}
