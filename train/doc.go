// Package train trains xspan's Expire-Span language models.
//
// Run trains a model from a prepared dataset (package dataset) into a run folder whose
// layout, checkpoints and metrics log package checkpoint defines. Training uses Adam over
// plain tensors (so that its state can be saved), a learning-rate Schedule, global-norm
// gradient clipping, gradient accumulation, and the memory carried across steps for every
// stream. It validates with package eval.
//
// A run resumed from its latest checkpoint continues exactly: libtorch's and Go's
// generators are re-seeded from the seed and the step number at every step, so a run of
// 2n steps and one of n steps resumed for n more end with bit-identical weights at the
// same thread count.
//
// Every function that calls libtorch must run on a goroutine that holds its OS thread
// (torchrt.Lock).
package train
