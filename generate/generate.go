package generate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

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
	// Stop ends the generation at the first of these strings in the new text (not the
	// prompt); the text ends before it and the finish reason is StopSequence. Text that
	// could begin one is held back from emit until it is known not to.
	Stop []string
	// LogProbs gives each token its log-probability under the model (before the
	// temperature, top-k and top-p reshape it), and TopLogProbs the most likely tokens
	// at its step, that many (which implies LogProbs).
	LogProbs    bool
	TopLogProbs int
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
	// Text is the text that became complete with this token (maybe empty): a piece of a
	// character, or what might begin a stop sequence, waits for the tokens after it.
	Text string `json:"text"`
	// LogProb and TopLogProbs are set with Options.LogProbs and TopLogProbs.
	LogProb     *float64 `json:"logprob,omitempty"`
	TopLogProbs []Alt    `json:"top_logprobs,omitempty"`
}

// Alt is a token and its log-probability.
type Alt struct {
	ID int `json:"id"`
	// Token is the token's own text (see TokenText).
	Token   string  `json:"token"`
	LogProb float64 `json:"logprob"`
}

// TokenLogProb is a drawn token's log-probability, with the most likely tokens at its
// step when asked for.
type TokenLogProb struct {
	Alt
	Top []Alt `json:"top_logprobs,omitempty"`
}

// Stop reasons.
const (
	StopLength    = "length"    // MaxNewTokens reached
	StopSequence  = "stop"      // a stop sequence came
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
	// LogProbs has one entry a new token with Options.LogProbs or TopLogProbs.
	LogProbs []TokenLogProb `json:"logprobs,omitempty"`
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
// stops early at a stop sequence (Stop is StopSequence), or, with the context's error
// and a Result whose Stop is StopCancelled, when ctx ends; an error from emit stops it
// too and is returned.
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
	for _, q := range opts.Stop {
		if q == "" || !utf8.ValidString(q) {
			return res, fmt.Errorf("stop sequence %q: must be non-empty UTF-8", q)
		}
	}
	if opts.TopLogProbs < 0 {
		return res, fmt.Errorf("top log-probs = %d: must not be negative", opts.TopLogProbs)
	}
	withLogProbs := opts.LogProbs || opts.TopLogProbs > 0
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
	stops := stopper{seqs: opts.Stop}
	held := newHoldback()
	// out emits the tokens that text decides (see holdback): only they count.
	out := func(text string, final bool) error {
		for _, h := range held.release(text, final) {
			if h.tok.ID >= 0 {
				res.IDs = append(res.IDs, h.tok.ID)
				res.NewTokens++
				if h.lp != nil {
					res.LogProbs = append(res.LogProbs, *h.lp)
				}
			}
			if err := emit(h.tok); err != nil {
				return err
			}
		}
		return nil
	}
	rep := statsClock{start: time.Now()}
	end := func(reason string) (Result, error) {
		res.GenTime = time.Since(rep.start)
		res.Stop = reason
		if opts.OnStats != nil {
			opts.OnStats(rep.stats(res.NewTokens, st, true))
		}
		return finish(nil)
	}
	res.IDs = make([]int, 0, min(opts.MaxNewTokens, 1<<16))
	// NewTokens, IDs and LogProbs hold the tokens whose text is in the result: a stop
	// sequence's tokens are left out with its text.
	for i := 0; i < opts.MaxNewTokens; i++ {
		if err := ctx.Err(); err != nil {
			res.GenTime = time.Since(rep.start)
			return finish(err)
		}
		id, err := sampler.Sample(logp)
		if err != nil {
			return finish(fmt.Errorf("token %d: %w", i, err))
		}
		streamed := stream.Push(id)
		piece, hit := stops.push(streamed)
		text.WriteString(piece)
		tok := Token{Index: i, ID: id}
		var lp *TokenLogProb
		if withLogProbs {
			l := tokenLogProb(vocab, logp, id, opts.TopLogProbs)
			lp = &l
			tok.LogProb, tok.TopLogProbs = &l.LogProb, l.Top
		}
		held.push(tok, lp, len(streamed))
		if err := out(piece, false); err != nil {
			return finish(err)
		}
		if hit {
			return end(StopSequence)
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
	flushed := stream.Flush()
	held.streamed += len(flushed)
	tail, hit := stops.push(flushed)
	if !hit {
		tail += stops.flush()
	}
	text.WriteString(tail)
	if err := out(tail, !hit); err != nil {
		return finish(err)
	}
	if hit {
		return end(StopSequence)
	}
	return end(StopLength)
}

// stopper finds stop sequences in text as it streams in, holding back the end of the
// text that could begin one.
type stopper struct {
	seqs []string
	held string
}

// push adds a piece of text and returns the text now known to come before any stop
// sequence. hit reports that one came: the text returned ends where it begins.
func (s *stopper) push(piece string) (out string, hit bool) {
	if len(s.seqs) == 0 {
		return piece, false
	}
	// Every occurrence lies within held+piece: released text never ends in the start of
	// a stop sequence.
	buf := s.held + piece
	cut := -1
	for _, q := range s.seqs {
		if k := strings.Index(buf, q); k >= 0 && (cut < 0 || k < cut) {
			cut = k
		}
	}
	if cut >= 0 {
		s.held = ""
		return buf[:cut], true
	}
	keep := 0
	for _, q := range s.seqs {
		for n := min(len(q)-1, len(buf)); n > keep; n-- {
			if strings.HasSuffix(buf, q[:n]) {
				keep = n
				break
			}
		}
	}
	s.held = buf[len(buf)-keep:]
	return buf[:len(buf)-keep], false
}

// flush returns the text held back: the stream ended without a stop sequence.
func (s *stopper) flush() string {
	h := s.held
	s.held = ""
	return h
}

// tokenLogProb returns id's log-probability in logp and the top most likely tokens
// (highest first, ties to the lowest id; NaN and -Inf never listed).
func tokenLogProb(vocab tokenize.Vocab, logp []float32, id, top int) TokenLogProb {
	lp := TokenLogProb{Alt: Alt{ID: id, Token: TokenText(vocab, id), LogProb: float64(logp[id])}}
	if top <= 0 {
		return lp
	}
	best := make([]int, 0, top+1)
	for i, v := range logp {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), -1) {
			continue
		}
		if len(best) == top && v <= logp[best[top-1]] {
			continue
		}
		k := len(best)
		for k > 0 && v > logp[best[k-1]] {
			k--
		}
		best = slices.Insert(best, k, i)
		if len(best) > top {
			best = best[:top]
		}
	}
	for _, i := range best {
		lp.Top = append(lp.Top, Alt{ID: i, Token: TokenText(vocab, i), LogProb: float64(logp[i])})
	}
	return lp
}

// TokenText is a token's own text. When its bytes are not valid UTF-8 by themselves (a
// piece of a character, in a byte vocabulary), it is "bytes:" and their \xNN escapes,
// as the OpenAI API writes them.
func TokenText(vocab tokenize.Vocab, id int) string {
	b := vocab.Decode([]uint32{uint32(id)})
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	sb.WriteString("bytes:")
	for _, c := range b {
		fmt.Fprintf(&sb, "\\x%02x", c)
	}
	return sb.String()
}
