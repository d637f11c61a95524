package generate

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"xspan/tokenize"
)

// fakeStepper is a deterministic stand-in for a model's decoder: its next-token
// distribution depends on the last token and the position, and each layer's memory grows
// by one per token and, with pruning, is capped at span.
type fakeStepper struct {
	vocab, span int
	pruning     bool
	live        []int
	dropped     int64
	pos         int
	last        int64
	delay       time.Duration
	feeds       *atomic.Int64
	onClose     func()
}

func newFake(vocab, layers, span int, pruning bool) *fakeStepper {
	return &fakeStepper{vocab: vocab, span: span, pruning: pruning, live: make([]int, layers), feeds: new(atomic.Int64)}
}

func (f *fakeStepper) Feed(tokens []int64) ([]float32, error) {
	f.feeds.Add(1)
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

func (f *fakeStepper) Live() []int    { return append([]int(nil), f.live...) }
func (f *fakeStepper) Dropped() int64 { return f.dropped }
func (f *fakeStepper) Close() {
	if f.onClose != nil {
		f.onClose()
	}
}

// fakeModel makes fakeSteppers over a vocabulary (bytes unless set) and tracks how many
// run at once.
type fakeModel struct {
	vocab tokenize.Vocab
	delay time.Duration
	feeds atomic.Int64

	mu             sync.Mutex
	active, maxAct int
	made           int
}

func (m *fakeModel) NewStepper() (Stepper, error) {
	f := newFake(m.Vocab().Size(), 2, 64, true)
	f.delay = m.delay
	f.feeds = &m.feeds
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

func (m *fakeModel) Vocab() tokenize.Vocab {
	if m.vocab == nil {
		return tokenize.Byte{}
	}
	return m.vocab
}

func (m *fakeModel) Info() any { return map[string]any{"name": "fake", "step": 42} }

func (m *fakeModel) stats() (active, maxActive, made int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.active, m.maxAct, m.made
}
