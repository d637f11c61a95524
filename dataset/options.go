package dataset

import (
	"fmt"
	"runtime"
)

// Option configures [Prep].
type Option func(*config) error

type config struct {
	format      string
	vocab       string
	split       [3]float64
	splitSet    bool
	splitFiles  [3][]string
	newlines    string
	encoding    string // EncodingUTF8, EncodingLatin1 or EncodingCP1252
	invalid     string // InvalidError, InvalidReplace or InvalidSkip
	level       int
	shardTokens int
	force       bool
	workers     int
	progress    func(done, total int64)
	logf        func(format string, args ...any)
}

// Defaults of [Prep].
const (
	DefaultShardTokens = 4 << 20
	DefaultLevel       = 3
)

// SplitNames are the splits Prep makes, in order.
var SplitNames = [3]string{"train", "valid", "test"}

func defaultConfig() config {
	return config{
		format:      "auto",
		split:       [3]float64{0.9, 0.05, 0.05},
		newlines:    NewlinesKeep,
		encoding:    EncodingUTF8,
		invalid:     InvalidError,
		level:       DefaultLevel,
		shardTokens: DefaultShardTokens,
		workers:     runtime.GOMAXPROCS(0),
		progress:    func(int64, int64) {},
		logf:        func(string, ...any) {},
	}
}

// WithFormat sets the input format: "auto" (the default: a file named enwik8 or
// enwik8.zip is enwik8, anything else text), "enwik8" or "text".
func WithFormat(format string) Option {
	return func(c *config) error {
		switch format {
		case "auto", "enwik8", "text":
			c.format = format
			return nil
		}
		return fmt.Errorf("format %q: want auto, enwik8 or text", format)
	}
}

// WithVocab sets the vocabulary: "byte", "char" or the path of a HuggingFace
// tokenizer.json. The default is byte for enwik8 and char for text.
func WithVocab(vocab string) Option {
	return func(c *config) error { c.vocab = vocab; return nil }
}

// WithSplit sets the fractions of text input that go to train, valid and test, in
// input order. They must add up to 1; a zero fraction leaves that split out.
func WithSplit(train, valid, test float64) Option {
	return func(c *config) error {
		f := [3]float64{train, valid, test}
		sum := 0.0
		for _, x := range f {
			if x < 0 || x > 1 || x != x {
				return fmt.Errorf("split fractions %v: each must be in [0, 1]", f)
			}
			sum += x
		}
		if sum < 1-1e-9 || sum > 1+1e-9 {
			return fmt.Errorf("split fractions %v add up to %g, not 1", f, sum)
		}
		if train == 0 {
			return fmt.Errorf("split fractions %v: train must not be empty", f)
		}
		c.split, c.splitSet = f, true
		return nil
	}
}

// WithSplitFiles gives each split its own inputs (files, folders or globs) instead of
// cutting one text by fractions; valid or test may be empty to leave them out.
func WithSplitFiles(train, valid, test []string) Option {
	return func(c *config) error {
		if len(train) == 0 {
			return fmt.Errorf("split files: train needs at least one input")
		}
		c.splitFiles = [3][]string{train, valid, test}
		return nil
	}
}

// WithNewlines sets the newline policy: "keep" (the default) or "drop", which removes
// '\n' bytes before tokenizing.
func WithNewlines(policy string) Option {
	return func(c *config) error {
		if policy != NewlinesKeep && policy != NewlinesDrop {
			return fmt.Errorf("newlines %q: want keep or drop", policy)
		}
		c.newlines = policy
		return nil
	}
}

// WithLevel sets the zstd compression level, 1 to 22 as for the zstd tool (default 3).
func WithLevel(level int) Option {
	return func(c *config) error {
		if level < 1 || level > 22 {
			return fmt.Errorf("compression level %d: want 1 to 22", level)
		}
		c.level = level
		return nil
	}
}

// WithShardTokens sets the number of tokens per shard (the last of a split may hold
// fewer).
func WithShardTokens(n int) Option {
	return func(c *config) error {
		if n < 1 || n > maxShardTokens {
			return fmt.Errorf("shard tokens %d: want 1 to %d", n, maxShardTokens)
		}
		c.shardTokens = n
		return nil
	}
}

// WithForce lets Prep replace an existing dataset folder (or an empty folder).
func WithForce(force bool) Option {
	return func(c *config) error { c.force = force; return nil }
}

// WithWorkers sets how many goroutines encode and compress (default GOMAXPROCS).
func WithWorkers(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("workers %d: want at least 1", n)
		}
		c.workers = n
		return nil
	}
}

// WithProgress sets a function called, from any goroutine but never concurrently, as
// text is encoded: done of total bytes.
func WithProgress(fn func(done, total int64)) Option {
	return func(c *config) error { c.progress = fn; return nil }
}

// WithLogf sets a function that receives Prep's choices and notes, one line each.
func WithLogf(fn func(format string, args ...any)) Option {
	return func(c *config) error { c.logf = fn; return nil }
}

// CheckOptions applies opts to the defaults and returns the first invalid one's error,
// so that a command line can report bad flags before any work.
func CheckOptions(opts ...Option) error {
	c := defaultConfig()
	for _, o := range opts {
		if err := o(&c); err != nil {
			return err
		}
	}
	return nil
}
