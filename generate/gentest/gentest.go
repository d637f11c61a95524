// Package gentest provides a deterministic stand-in for a model, for the tests of
// generation and of the server: a Stepper whose next-token distribution depends on the
// last token and the position, and a Model that makes them and counts those running.
package gentest

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"xspan/generate"
	"xspan/tokenize"
)

// Stepper is a fake decoder: each layer's memory grows by one per token and, with
// pruning, is capped at span (plus the layer's index).
type Stepper struct {
	vocab, span int
	pruning     bool
	live        []int
	dropped     int64
	pos         int
	last        int64
	delay       time.Duration
	// Feeds counts the calls of Feed (shared with the Model that made it).
	Feeds   *atomic.Int64
	onClose func()
}

// NewStepper returns a Stepper over vocab tokens with layers layers.
func NewStepper(vocab, layers, span int, pruning bool) *Stepper {
	return &Stepper{vocab: vocab, span: span, pruning: pruning, live: make([]int, layers), Feeds: new(atomic.Int64)}
}

// Feed implements generate.Stepper.
func (f *Stepper) Feed(tokens []int64) ([]float32, error) {
	f.Feeds.Add(1)
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	for _, t := range tokens {
		f.pos++
		f.last = t
		for l := range f.live {
			f.live[l]++
			if f.pruning && f.live[l] > f.span+l {
				f.dropped += int64(f.live[l] - f.span - l)
				f.live[l] = f.span + l
			}
		}
	}
	logits := make([]float64, f.vocab)
	m := math.Inf(-1)
	for i := range logits {
		logits[i] = 3 * math.Sin(float64(i)*0.37+float64(f.last)*1.3+float64(f.pos%5))
		m = max(m, logits[i])
	}
	z := 0.0
	for _, x := range logits {
		z += math.Exp(x - m)
	}
	out := make([]float32, f.vocab)
	for i, x := range logits {
		out[i] = float32(x - m - math.Log(z))
	}
	return out, nil
}

// Live implements generate.Stepper.
func (f *Stepper) Live() []int { return append([]int(nil), f.live...) }

// Dropped implements generate.Stepper.
func (f *Stepper) Dropped() int64 { return f.dropped }

// Close tells the Model that made the Stepper that it stopped.
func (f *Stepper) Close() {
	if f.onClose != nil {
		f.onClose()
	}
}

// Model makes Steppers (2 layers, span 64, pruning) over a vocabulary (bytes unless
// Vocabulary is set), each Feed taking Delay, and tracks how many run at once.
type Model struct {
	Vocabulary tokenize.Vocab
	Delay      time.Duration
	Feeds      atomic.Int64 // Feed calls of all its Steppers

	mu             sync.Mutex
	active, maxAct int
	made           int
}

// NewStepper implements generate.Model.
func (m *Model) NewStepper() (generate.Stepper, error) {
	f := NewStepper(m.Vocab().Size(), 2, 64, true)
	f.delay = m.Delay
	f.Feeds = &m.Feeds
	m.mu.Lock()
	m.active++
	m.made++
	m.maxAct = max(m.maxAct, m.active)
	m.mu.Unlock()
	f.onClose = func() {
		m.mu.Lock()
		m.active--
		m.mu.Unlock()
	}
	return f, nil
}

// Vocab implements generate.Model.
func (m *Model) Vocab() tokenize.Vocab {
	if m.Vocabulary == nil {
		return tokenize.Byte{}
	}
	return m.Vocabulary
}

// Info implements generate.Model.
func (m *Model) Info() any { return map[string]any{"name": "fake", "step": 42} }

// Stats returns the Steppers running now, the most that ran at once, and those made.
func (m *Model) Stats() (active, maxActive, made int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.active, m.maxAct, m.made
}

// Generate runs generate.Generate on st after prompt, encoded as bytes.
func Generate(t testing.TB, st generate.Stepper, prompt string, opts generate.Options, emit func(generate.Token) error) (generate.Result, error) {
	t.Helper()
	ids, _, err := generate.EncodePrompt(tokenize.Byte{}, []byte(prompt), generate.UnkError)
	if err != nil {
		t.Fatal(err)
	}
	return generate.Generate(context.Background(), st, tokenize.Byte{}, ids, opts, emit)
}
