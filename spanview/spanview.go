// Package spanview shows what an Expire-Span model remembers of a text: every token
// coloured by the span the model gave it as a memory (per layer), the tokens still in
// memory after the text marked, and the live memory per layer over the text as a chart.
// The same picture comes as a self-contained HTML page (WriteHTML), as a PNG (WritePNG),
// and on the server's page at / (which draws it with Script and Style from the JSON of
// POST /v1/score, a Score).
//
// The package is plain Go: the model's side (running the text through it) is
// eval.ScoreText.
package spanview

import (
	"math"
	"unicode/utf8"
)

// Token is one token of a scored text.
type Token struct {
	ID int `json:"id"`
	// Text is the text that became complete with this token: a character split over
	// several byte tokens comes with the last of them, the others have "".
	Text string `json:"text"`
	// Bits is -log2 p(token | the tokens before it); nil for the first token, which has
	// no context.
	Bits *float64 `json:"bits"`
	// Spans holds, per layer, the span e_i the model gave the token as a memory: how many
	// tokens it stays attended (then it fades out over Ramp more). Empty without expiry.
	Spans []float32 `json:"spans"`
	// Alive holds, per layer, whether the memory still holds the token after the text.
	Alive []bool `json:"alive"`
}

// Score is a text run through a model: per token its bits and spans, and per layer the
// live memory after every token.
type Score struct {
	Tokens []Token `json:"tokens"`
	// Bits sums the scored tokens' bits (all but the first); BPC divides it by the
	// characters of their text (nil when nothing was scored).
	Bits         float64  `json:"bits"`
	BPC          *float64 `json:"bpc"`
	ScoredTokens int      `json:"scored_tokens"`
	ScoredChars  int      `json:"scored_chars"`
	// Layers, MaxSpan (L), Ramp (R) and Expire describe the model: a memory of span e
	// and age a (tokens since it was seen) is attended while a < e + R, so it is alive
	// after the text while e + R > age + 1 (the next token would still see it). Without
	// expiry (Expire false) the memory is the last MaxSpan tokens.
	Layers  int     `json:"layers"`
	MaxSpan float64 `json:"max_span"`
	Ramp    float64 `json:"ramp"`
	Expire  bool    `json:"expire"`
	// Live holds, per layer, how many memories the layer holds after each token (its
	// initial cache included): what a decoder that prunes every expired memory at once
	// holds.
	Live [][]int `json:"live"`
	// Model, when set, names the model in pictures ("run, step N").
	Model string `json:"model,omitempty"`
}

// Age is how many tokens ago token i of n was seen, at the end of the text.
func Age(i, n int) int { return n - 1 - i }

// Finish fills the summary fields of s (Bits, BPC, ScoredTokens, ScoredChars) from its
// tokens.
func (s *Score) Finish() {
	s.Bits, s.ScoredTokens, s.ScoredChars, s.BPC = 0, 0, 0, nil
	for _, t := range s.Tokens {
		if t.Bits == nil {
			continue
		}
		s.Bits += *t.Bits
		s.ScoredTokens++
		s.ScoredChars += utf8.RuneCountInString(t.Text)
	}
	if s.ScoredChars > 0 {
		b := s.Bits / float64(s.ScoredChars)
		s.BPC = &b
	}
}

// MeanSpan is layer l's mean span over the text's tokens.
func (s *Score) MeanSpan(l int) float64 {
	var sum float64
	n := 0
	for _, t := range s.Tokens {
		if l < len(t.Spans) {
			sum += float64(t.Spans[l])
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return sum / float64(n)
}

// AliveCount is how many of the text's tokens layer l still holds after it.
func (s *Score) AliveCount(l int) int {
	n := 0
	for _, t := range s.Tokens {
		if l < len(t.Alive) && t.Alive[l] {
			n++
		}
	}
	return n
}

// Shade maps a span to [0, 1] on a logarithmic scale up to L: spans of models range
// from a few tokens to thousands, and the short ones would otherwise all look alike.
func Shade(span, maxSpan float64) float64 {
	if maxSpan <= 0 || math.IsNaN(span) {
		return 0
	}
	return min(max(math.Log1p(max(span, 0))/math.Log1p(maxSpan), 0), 1)
}

// palette is the colour scale from short spans to long ones (light yellow through
// green and blue to dark blue); Script uses the same stops.
var palette = [][3]float64{{255, 255, 204}, {161, 218, 180}, {65, 182, 196}, {44, 127, 184}, {37, 52, 148}}

// Colour returns the colour of shade x in [0, 1] as RGB.
func Colour(x float64) (r, g, b uint8) {
	x = min(max(x, 0), 1) * float64(len(palette)-1)
	i := min(int(x), len(palette)-2)
	f := x - float64(i)
	c := func(k int) uint8 { return uint8(math.Round(palette[i][k] + f*(palette[i+1][k]-palette[i][k]))) }
	return c(0), c(1), c(2)
}

// DarkText says whether text on shade x should be white: on the darker half of the scale.
func DarkText(x float64) bool { return x > 0.6 }
