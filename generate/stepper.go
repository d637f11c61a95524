// Package generate samples text from an Expire-Span language model with pruned memory:
// the prompt is fed in blocks, then tokens are produced one at a time, and every memory is
// dropped at the step it expires, so a long generation costs what the model's spans need,
// not what its longest span allows.
//
// The package is built around Stepper, a model's incremental decoder for one stream, so
// that sampling, streaming, statistics, the HTTP server and the flatness benchmark work
// the same with a real model (lm.Decoder) and with a fake one in tests:
//
//   - Sampler: temperature, top-k, top-p, greedy at temperature 0, seeded PCG, so the
//     same seed gives the same text.
//   - TextStream: turns token ids into text as they come, holding back a UTF-8 sequence
//     split across byte tokens until it is complete.
//   - Generate: one prompt, one stream of tokens, stoppable through its context.
//   - Stats and StatsPrinter: --stats lines (tokens/s, live memories per layer, dropped,
//     process RSS).
//
// The HTTP server (package serve) and the flatness benchmark (package bench) run on it;
// gentest is its fake model for their tests.
//
// Every goroutine that runs a Stepper backed by libtorch must hold its OS thread
// (torchrt.Lock); the server does so for each request.
package generate

import (
	"io"

	"xspan/tokenize"
)

// A Stepper is a model's incremental decoder for one stream: it holds that stream's memory.
type Stepper interface {
	// Feed feeds tokens (the prompt, which the model processes in blocks, then one token
	// at a time) and returns the log-probabilities of the next token.
	Feed(tokens []int64) ([]float32, error)
	// Live returns the number of live memories of each layer.
	Live() []int
	// Dropped returns the number of memories dropped so far, over all layers.
	Dropped() int64
}

// Model makes Steppers: each stream (a request, a sample) gets its own memory.
type Model interface {
	// NewStepper returns a decoder with an empty memory.
	NewStepper() (Stepper, error)
	// Vocab is the model's vocabulary.
	Vocab() tokenize.Vocab
	// Info describes the model for GET /v1/model; it must encode as JSON.
	Info() any
}

// CloseStepper frees a Stepper's resources when it has a Close method.
func CloseStepper(s Stepper) {
	switch c := s.(type) {
	case io.Closer:
		_ = c.Close()
	case interface{ Close() }:
		c.Close()
	}
}
