// Package train trains xspan's Expire-Span language models, evaluates them in bits per
// character, and writes and reads their checkpoints.
//
// Run trains a model from a prepared dataset (package dataset) into a run folder:
//
//	RUN/config.json        the resolved config
//	RUN/metrics.jsonl      one JSON object per logged step and per validation (Row)
//	RUN/checkpoints/step-N checkpoints (see Header for what each holds)
//	RUN/best               a one-line file naming the best checkpoint on validation
//
// Training uses Adam over plain tensors (so that its state can be saved), a learning-rate
// Schedule, global-norm gradient clipping, gradient accumulation, and the memory carried
// across steps for every stream. A run resumed from its latest checkpoint continues
// exactly: libtorch's and Go's generators are re-seeded from the seed and the step number
// at every step, so a run of 2n steps and one of n steps resumed for n more end with
// bit-identical weights at the same thread count.
//
// Evaluate reads a whole split in order with the memory carried and reports loss, bits
// per token and bits per character in the dataset's unit. LoadCheckpoint opens a
// checkpoint (or a run's latest, or RUN/best) for evaluation and generation, with the
// vocabulary the checkpoint carries.
//
// Every function that calls libtorch must run on a goroutine that holds its OS thread
// (torchrt.Lock).
package train
