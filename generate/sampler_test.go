package generate

import (
	"math"
	"strings"
	"testing"
)

func logs(ps ...float64) []float32 {
	out := make([]float32, len(ps))
	for i, p := range ps {
		out[i] = float32(math.Log(p))
	}
	return out
}

func mustSampler(t *testing.T, c SamplerConfig) *Sampler {
	t.Helper()
	s, err := NewSampler(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSamplerGreedy(t *testing.T) {
	s := mustSampler(t, SamplerConfig{Temperature: 0, TopP: 1, Seed: 3})
	nan := float32(math.NaN())
	for _, c := range []struct {
		logp []float32
		want int
	}{
		{logs(0.1, 0.6, 0.3), 1},
		{logs(0.4, 0.2, 0.4), 0}, // tie: lowest id
		{[]float32{nan, -2, -1, float32(math.Inf(-1))}, 2},
	} {
		for range 3 {
			got, err := s.Sample(c.logp)
			if err != nil || got != c.want {
				t.Errorf("greedy %v = %d, %v; want %d", c.logp, got, err, c.want)
			}
		}
	}
	ninf := float32(math.Inf(-1))
	if _, err := s.Sample([]float32{ninf, float32(math.NaN())}); err != ErrNoToken {
		t.Errorf("greedy over no finite token: %v, want ErrNoToken", err)
	}
	s = mustSampler(t, DefaultSampler())
	if _, err := s.Sample([]float32{ninf, ninf}); err != ErrNoToken {
		t.Errorf("sampling over no finite token: %v, want ErrNoToken", err)
	}
}

func draw(t *testing.T, c SamplerConfig, logp []float32, n int) []int {
	t.Helper()
	s := mustSampler(t, c)
	out := make([]int, n)
	for i := range out {
		id, err := s.Sample(logp)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = id
	}
	return out
}

func freq(ids []int, k int) []float64 {
	f := make([]float64, k)
	for _, id := range ids {
		f[id] += 1 / float64(len(ids))
	}
	return f
}

func TestSamplerSeedDeterminism(t *testing.T) {
	p := logs(0.1, 0.2, 0.3, 0.25, 0.15)
	a := draw(t, SamplerConfig{Temperature: 1, TopP: 1, Seed: 7}, p, 200)
	b := draw(t, SamplerConfig{Temperature: 1, TopP: 1, Seed: 7}, p, 200)
	c := draw(t, SamplerConfig{Temperature: 1, TopP: 1, Seed: 8}, p, 200)
	same := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("seed 7 twice differs at draw %d", i)
		}
		if a[i] == c[i] {
			same++
		}
	}
	if same == len(a) {
		t.Errorf("seeds 7 and 8 gave the same 200 draws")
	}
}

func TestSamplerDistribution(t *testing.T) {
	p := []float64{0.5, 0.3, 0.2}
	const n = 20000
	f := freq(draw(t, SamplerConfig{Temperature: 1, TopP: 1, Seed: 1}, logs(p...), n), 3)
	for i := range p {
		if math.Abs(f[i]-p[i]) > 0.02 {
			t.Errorf("temperature 1: freq[%d] = %.3f, want %.2f", i, f[i], p[i])
		}
	}
	// Temperature 0.5 squares the probabilities (then renormalises): .25/.38, .09/.38, .04/.38.
	f = freq(draw(t, SamplerConfig{Temperature: 0.5, TopP: 1, Seed: 1}, logs(p...), n), 3)
	for i, want := range []float64{0.25 / 0.38, 0.09 / 0.38, 0.04 / 0.38} {
		if math.Abs(f[i]-want) > 0.02 {
			t.Errorf("temperature 0.5: freq[%d] = %.3f, want %.3f", i, f[i], want)
		}
	}
	// Unnormalised input gives the same draws as normalised.
	shift := logs(p...)
	for i := range shift {
		shift[i] += 5
	}
	a := draw(t, SamplerConfig{Temperature: 1, TopP: 1, Seed: 4}, logs(p...), 100)
	b := draw(t, SamplerConfig{Temperature: 1, TopP: 1, Seed: 4}, shift, 100)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("shifted log-probs change draw %d", i)
		}
	}
}

func TestSamplerTopKTopP(t *testing.T) {
	p := logs(0.05, 0.4, 0.1, 0.3, 0.15) // order: 1, 3, 4, 2, 0
	const n = 5000
	f := freq(draw(t, SamplerConfig{Temperature: 1, TopK: 2, TopP: 1, Seed: 2}, p, n), 5)
	if f[0]+f[2]+f[4] != 0 {
		t.Errorf("top_k 2 drew outside {1, 3}: %v", f)
	}
	if math.Abs(f[1]-0.4/0.7) > 0.03 {
		t.Errorf("top_k 2: freq[1] = %.3f, want %.3f", f[1], 0.4/0.7)
	}
	// top_p 0.8: 0.4+0.3 = 0.7 < 0.8, +0.15 = 0.85 ≥ 0.8: keep {1, 3, 4}.
	f = freq(draw(t, SamplerConfig{Temperature: 1, TopP: 0.8, Seed: 2}, p, n), 5)
	if f[0]+f[2] != 0 || f[4] == 0 {
		t.Errorf("top_p 0.8 should keep exactly {1, 3, 4}: %v", f)
	}
	// A tiny top_p keeps the single most likely token: greedy.
	for _, id := range draw(t, SamplerConfig{Temperature: 1, TopP: 1e-9, Seed: 2}, p, 50) {
		if id != 1 {
			t.Fatalf("top_p 1e-9 drew %d, want 1", id)
		}
	}
	for _, id := range draw(t, SamplerConfig{Temperature: 2, TopK: 1, TopP: 1, Seed: 2}, p, 50) {
		if id != 1 {
			t.Fatalf("top_k 1 drew %d, want 1", id)
		}
	}
}

func TestSamplerValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  SamplerConfig
		want string
	}{
		{SamplerConfig{Temperature: -1, TopP: 1}, "temperature"},
		{SamplerConfig{Temperature: math.NaN(), TopP: 1}, "temperature"},
		{SamplerConfig{Temperature: 1, TopK: -1, TopP: 1}, "top_k"},
		{SamplerConfig{Temperature: 1, TopP: 0}, "top_p"},
		{SamplerConfig{Temperature: 1, TopP: 1.5}, "top_p"},
		{SamplerConfig{Temperature: 1, TopP: 1, Seed: -2}, "seed"},
	} {
		_, err := NewSampler(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewSampler(%+v) = %v, want an error about %s", c.cfg, err, c.want)
		}
	}
	if err := DefaultSampler().Validate(); err != nil {
		t.Errorf("default sampler: %v", err)
	}
}

// A temperature too small to divide by (1/5e-324 is +Inf, and the weights NaN) is greedy,
// as is any below GreedyBelow; just above it, sampling still favours the best token
// overwhelmingly.
func TestSamplerTinyTemperatureIsGreedy(t *testing.T) {
	logp := logs(0.2, 0.5, 0.3) // the best token is not the last, where NaN weights land
	for _, temp := range []float64{5e-324, 1e-300, 1e-7, GreedyBelow / 2} {
		for _, id := range draw(t, SamplerConfig{Temperature: temp, TopP: 1, Seed: 7}, logp, 50) {
			if id != 1 {
				t.Fatalf("temperature %g drew %d; want the greedy 1", temp, id)
			}
		}
	}
	for _, id := range draw(t, SamplerConfig{Temperature: GreedyBelow, TopP: 0.9, TopK: 2, Seed: 7}, logp, 50) {
		if id != 1 {
			t.Fatalf("temperature %g drew %d; want 1", GreedyBelow, id)
		}
	}
}
