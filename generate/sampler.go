package generate

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"xspan/internal/torchrt"
)

// SamplerConfig chooses how the next token is drawn from the model's log-probabilities.
type SamplerConfig struct {
	// Temperature divides the log-probabilities; 0 is greedy (the most likely token), and
	// so is any temperature below GreedyBelow.
	Temperature float64 `json:"temperature"`
	// TopK keeps only the K most likely tokens; 0 keeps all.
	TopK int `json:"top_k"`
	// TopP keeps the smallest set of most likely tokens whose probability reaches P
	// (nucleus sampling); 1 keeps all.
	TopP float64 `json:"top_p"`
	// Seed seeds the sampler's PCG generator: the same seed gives the same draws.
	Seed int64 `json:"seed"`
}

// GreedyBelow is the temperature below which sampling is greedy. Dividing by a smaller
// one can overflow (1/5e-324 is +Inf, and the weights become NaN), and at temperatures
// this small only near-exact ties could be drawn otherwise.
const GreedyBelow = 1e-6

// DefaultSampler samples from the model's distribution as it is, with seed 1.
func DefaultSampler() SamplerConfig {
	return SamplerConfig{Temperature: 1, TopK: 0, TopP: 1, Seed: 1}
}

// Validate reports the first setting out of range.
func (c SamplerConfig) Validate() error {
	switch {
	case math.IsNaN(c.Temperature) || c.Temperature < 0 || c.Temperature > 100:
		return fmt.Errorf("temperature = %g: must lie in [0, 100] (0 is greedy)", c.Temperature)
	case c.TopK < 0:
		return fmt.Errorf("top_k = %d: must not be negative (0 keeps every token)", c.TopK)
	case math.IsNaN(c.TopP) || c.TopP <= 0 || c.TopP > 1:
		return fmt.Errorf("top_p = %g: must lie in (0, 1] (1 keeps every token)", c.TopP)
	case c.Seed < 0:
		return fmt.Errorf("seed = %d: must not be negative", c.Seed)
	}
	return nil
}

// ErrNoToken is returned when no token has a finite log-probability.
var ErrNoToken = errors.New("sampler: no token has a finite log-probability")

// A Sampler draws tokens; it is not safe for concurrent use.
type Sampler struct {
	cfg SamplerConfig
	rng *rand.Rand
	idx []int     // scratch: candidate ids, most likely first
	w   []float64 // scratch: their weights
}

// NewSampler returns a sampler for cfg, or cfg's validation error.
func NewSampler(cfg SamplerConfig) (*Sampler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Sampler{cfg: cfg, rng: rand.New(torchrt.NewSource(cfg.Seed))}, nil
}

// Config returns the sampler's settings.
func (s *Sampler) Config() SamplerConfig { return s.cfg }

// Sample draws the next token from log-probabilities (or any unnormalised log-weights).
// NaN and -Inf entries are never drawn; ties go to the lowest id.
func (s *Sampler) Sample(logp []float32) (int, error) {
	if s.cfg.Temperature < GreedyBelow {
		best, bestV := -1, math.Inf(-1)
		for i, v := range logp {
			if f := float64(v); f > bestV { // NaN compares false
				best, bestV = i, f
			}
		}
		if best < 0 {
			return 0, ErrNoToken
		}
		return best, nil
	}
	invT := 1 / s.cfg.Temperature
	s.idx = s.idx[:0]
	maxV := math.Inf(-1)
	for i, v := range logp {
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, -1) {
			continue
		}
		s.idx = append(s.idx, i)
		maxV = max(maxV, f)
	}
	if len(s.idx) == 0 {
		return 0, ErrNoToken
	}
	filter := (s.cfg.TopK > 0 && s.cfg.TopK < len(s.idx)) || s.cfg.TopP < 1
	if filter {
		slices.SortFunc(s.idx, func(a, b int) int {
			if c := cmp.Compare(logp[b], logp[a]); c != 0 {
				return c
			}
			return cmp.Compare(a, b)
		})
		if s.cfg.TopK > 0 && s.cfg.TopK < len(s.idx) {
			s.idx = s.idx[:s.cfg.TopK]
		}
	}
	s.w = s.w[:0]
	total := 0.0
	for _, i := range s.idx {
		w := math.Exp((float64(logp[i]) - maxV) * invT)
		s.w = append(s.w, w)
		total += w
	}
	if s.cfg.TopP < 1 {
		// s.idx is sorted, most likely first: keep the shortest prefix reaching TopP.
		cum, n := 0.0, 0
		for n < len(s.w) {
			cum += s.w[n]
			n++
			if cum >= s.cfg.TopP*total {
				break
			}
		}
		s.idx, s.w, total = s.idx[:n], s.w[:n], cum
	}
	r := s.rng.Float64() * total
	for k, w := range s.w {
		r -= w
		if r < 0 {
			return s.idx[k], nil
		}
	}
	return s.idx[len(s.idx)-1], nil // rounding left r ≥ 0
}
