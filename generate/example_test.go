package generate_test

import (
	"context"
	"fmt"
	"math"

	"xspan/generate"
	"xspan/tokenize"
)

// A byte vocabulary can split a character across tokens: TextStream holds the first
// bytes back until the character is complete.
func ExampleTextStream() {
	s := generate.NewTextStream(tokenize.Byte{})
	for _, b := range []byte("añ€") {
		fmt.Printf("%q ", s.Push(int(b)))
	}
	fmt.Printf("%q\n", s.Flush())
	// Output: "a" "" "ñ" "" "" "€" ""
}

// Temperature 0 is greedy; a sampler with a seed draws the same tokens every time.
func ExampleSampler() {
	logp := []float32{float32(math.Log(0.2)), float32(math.Log(0.5)), float32(math.Log(0.3))}
	greedy, _ := generate.NewSampler(generate.SamplerConfig{Temperature: 0, TopP: 1})
	id, _ := greedy.Sample(logp)
	fmt.Println("greedy:", id)

	draws := func() []int {
		s, _ := generate.NewSampler(generate.SamplerConfig{Temperature: 1, TopK: 2, TopP: 1, Seed: 42})
		var ids []int
		for range 8 {
			id, _ := s.Sample(logp)
			ids = append(ids, id)
		}
		return ids
	}
	a, b := draws(), draws()
	fmt.Println("same seed, same draws:", fmt.Sprint(a) == fmt.Sprint(b))
	// Output:
	// greedy: 1
	// same seed, same draws: true
}

// countdown is a toy Stepper: it always predicts the token one below the last.
type countdown struct{ last int64 }

func (c *countdown) Feed(tokens []int64) ([]float32, error) {
	c.last = tokens[len(tokens)-1]
	logp := make([]float32, 256)
	for i := range logp {
		logp[i] = float32(math.Inf(-1))
	}
	logp[max(c.last-1, 0)] = 0
	return logp, nil
}
func (c *countdown) Live() []int    { return []int{1} }
func (c *countdown) Dropped() int64 { return 0 }

func ExampleGenerate() {
	prompt, _, _ := generate.EncodePrompt(tokenize.Byte{}, []byte("9"), generate.UnkError)
	opts := generate.Options{MaxNewTokens: 5, Sampler: generate.DefaultSampler()}
	res, err := generate.Generate(context.Background(), &countdown{}, tokenize.Byte{}, prompt, opts,
		func(t generate.Token) error { fmt.Printf("[%s]", t.Text); return nil })
	fmt.Println()
	fmt.Println(res.Text, res.NewTokens, res.Stop, err)
	// Output:
	// [8][7][6][5][4]
	// 87654 5 length <nil>
}
