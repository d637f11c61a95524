package dataset

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"xspan/tokenize"
)

// TaskCopy is the name of the copy task in a manifest's Task.
const TaskCopy = "copy"

// The copy task's characters: its symbols are the first Alphabet of CopySymbols, and
// three markers frame the gap. An example with SeqLen 4 and Gap 6 reads "cabd<......>cabd".
const (
	CopySymbols = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	CopyStart   = '<' // after the string, before the gap
	CopyFiller  = '.' // the gap
	CopyGo      = '>' // after the gap: copy now
)

// MaxCopyAlphabet is the largest alphabet of the copy task.
const MaxCopyAlphabet = len(CopySymbols)

// maxCopyTokens bounds the tokens of a copy dataset (all splits).
const maxCopyTokens = 1 << 36

// CopyTask describes a copy-task dataset. Each example is a random string of SeqLen
// symbols drawn uniformly from Alphabet symbols, the start marker, Gap fillers, the go
// marker and the string again: ExampleLen = 2*SeqLen + Gap + 2 tokens. Only the copied
// string (offsets CopyOffset.. ExampleLen-1 of an example) is scored.
type CopyTask struct {
	SeqLen   int `json:"seq_len"`
	Gap      int `json:"gap"`
	Alphabet int `json:"alphabet"`
	// Examples is the number of examples of the train split; EvalExamples that of the
	// valid and of the test split each (0 in PrepCopy means Examples/10, at least 1).
	Examples     int `json:"examples"`
	EvalExamples int `json:"eval_examples"`
	// Seed fixes the strings: the same task gives the same dataset, byte for byte, on
	// any machine (the generator is xspan's own splitmix64, not math/rand).
	Seed uint64 `json:"seed"`
}

// DefaultCopyTask is the copy task's default: strings of 16 over 8 symbols, gaps of 512,
// 10000 train examples, seed 1.
func DefaultCopyTask() CopyTask {
	return CopyTask{SeqLen: 16, Gap: 512, Alphabet: 8, Examples: 10000, Seed: 1}
}

// ExampleLen is the number of tokens of one example: 2*SeqLen + Gap + 2.
func (t CopyTask) ExampleLen() int { return 2*t.SeqLen + t.Gap + 2 }

// CopyOffset is the offset in an example of the first copied (scored) token:
// SeqLen + Gap + 2.
func (t CopyTask) CopyOffset() int { return t.SeqLen + t.Gap + 2 }

// Check returns the first bad setting of t, in one line naming it.
func (t CopyTask) Check() error {
	switch {
	case t.SeqLen < 1 || t.SeqLen > 1<<20:
		return fmt.Errorf("copy task: seq-len %d: want 1 to %d", t.SeqLen, 1<<20)
	case t.Gap < 0 || t.Gap > 1<<30:
		return fmt.Errorf("copy task: gap %d: want 0 to %d", t.Gap, 1<<30)
	case t.Alphabet < 2 || t.Alphabet > MaxCopyAlphabet:
		return fmt.Errorf("copy task: alphabet %d: want 2 to %d (the symbols are a-z, A-Z, 0-9)", t.Alphabet, MaxCopyAlphabet)
	case t.Examples < 1:
		return fmt.Errorf("copy task: examples %d: want at least 1", t.Examples)
	case t.EvalExamples < 0:
		return fmt.Errorf("copy task: eval-examples %d: want 0 or more", t.EvalExamples)
	}
	ex := int64(t.Examples) + 2*int64(t.evalExamples())
	if ex*int64(t.ExampleLen()) > maxCopyTokens {
		return fmt.Errorf("copy task: %d examples of %d tokens are more than %d tokens", ex, t.ExampleLen(), int64(maxCopyTokens))
	}
	return nil
}

func (t CopyTask) evalExamples() int {
	if t.EvalExamples > 0 {
		return t.EvalExamples
	}
	return max(1, t.Examples/10)
}

// Task describes how a synthetic dataset was generated (the manifest's "task").
type Task struct {
	Name string `json:"name"` // TaskCopy
	CopyTask
	// Symbols are the task's symbols in order; Start, Filler and Go its markers.
	Symbols string `json:"symbols"`
	Start   string `json:"start"`
	Filler  string `json:"filler"`
	Go      string `json:"go"`
	// ExampleLen and CopyOffset are CopyTask's, for readers of the JSON.
	ExampleLen int `json:"example_len"`
	CopyOffset int `json:"copy_offset"`
}

// copyLayout generates the tokens and mask of one split of a copy dataset.
type copyLayout struct {
	task                  CopyTask
	src                   []byte // SeqLen symbol ids per example
	start, filler, goMark byte
}

// splitmix64 is a small, fixed random generator: the datasets must not depend on
// math/rand's algorithms.
type splitmix64 uint64

func (s *splitmix64) next() uint64 {
	*s += 0x9e3779b97f4a7c15
	z := uint64(*s)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// intn returns a uniform integer in [0, n) without modulo bias.
func (s *splitmix64) intn(n uint64) uint64 {
	threshold := -n % n // 2^64 mod n
	for {
		if x := s.next(); x >= threshold {
			return x % n
		}
	}
}

// newCopyLayout draws the strings of split number idx (0 train, 1 valid, 2 test).
func newCopyLayout(t CopyTask, idx, examples int, symIDs []byte, start, filler, goMark byte) *copyLayout {
	rng := splitmix64(t.Seed ^ (uint64(idx+1) * 0xd1b54a32d192ed03))
	src := make([]byte, examples*t.SeqLen)
	for i := range src {
		src[i] = symIDs[rng.intn(uint64(t.Alphabet))]
	}
	return &copyLayout{task: t, src: src, start: start, filler: filler, goMark: goMark}
}

// fill writes the token ids and mask bytes of split positions from .. from+len(ids)-1.
func (l *copyLayout) fill(ids, mask []byte, from int64) {
	N, G, L := int64(l.task.SeqLen), int64(l.task.Gap), int64(l.task.ExampleLen())
	for i := range ids {
		p := from + int64(i)
		ex, o := p/L, p%L
		var id, m byte
		switch {
		case o < N:
			id = l.src[ex*N+o]
		case o == N:
			id = l.start
		case o <= N+G:
			id = l.filler
		case o == N+G+1:
			id = l.goMark
		default:
			id, m = l.src[ex*N+o-(N+G+2)], 1
		}
		ids[i], mask[i] = id, m
	}
}

func maskName(split string, i int) string {
	return fmt.Sprintf("%s-%05d.xsm", split, i)
}

// PrepCopy writes a copy-task dataset (see CopyTask) to out and returns its manifest:
// splits train, valid and test, a char vocabulary of the task's symbols and markers,
// and a scored mask per shard (the manifest requires FeatureScoredMask), with each
// split's ExampleLen set. Like Prep, it writes under a temporary name and renames at
// the end, so an error leaves nothing behind. Of Prep's options it takes WithForce,
// WithLevel, WithShardTokens, WithWorkers, WithProgress (tokens) and WithLogf; the
// others are an error.
func PrepCopy(ctx context.Context, out string, task CopyTask, opts ...Option) (*Manifest, error) {
	c := defaultConfig()
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	d := defaultConfig()
	if c.format != d.format || c.vocab != d.vocab || c.splitSet || len(c.splitFiles[0]) > 0 || c.newlines != d.newlines {
		return nil, errors.New("copy task: format, vocabulary, split and newline options do not apply to a synthetic dataset")
	}
	if err := task.Check(); err != nil {
		return nil, err
	}
	task.EvalExamples = task.evalExamples()
	f, err := newFolder(out, c.force)
	if err != nil {
		return nil, err
	}
	defer f.discard()

	// The vocabulary: symbols and markers, in code-point order, plus <unk> (never used).
	chars := []rune(CopySymbols[:task.Alphabet] + string([]rune{CopyStart, CopyFiller, CopyGo}))
	vocab, err := tokenize.NewChar(chars)
	if err != nil {
		return nil, err
	}
	idOf := func(r rune) byte {
		ids, _ := vocab.Encode([]byte(string(r)))
		return byte(ids[0])
	}
	symIDs := make([]byte, task.Alphabet)
	for i, r := range CopySymbols[:task.Alphabet] {
		symIDs[i] = idOf(r)
	}
	width := tokenize.Width(vocab.Size())
	if width != 1 {
		return nil, fmt.Errorf("copy task: vocabulary of %d ids needs %d-byte tokens", vocab.Size(), width)
	}
	L := task.ExampleLen()
	c.logf("copy task: %d+%d+%d examples of %d tokens (string %d over %d symbols, gap %d), seed %d",
		task.Examples, task.EvalExamples, task.EvalExamples, L, task.SeqLen, task.Alphabet, task.Gap, task.Seed)

	m := &Manifest{
		Format: FormatName, Version: Version, Requires: []string{FeatureScoredMask},
		Input: "synthetic", Vocab: vocab.Spec(), Newlines: NewlinesKeep, TokenWidth: 1,
		Compression: Compression{Codec: "zstd", Level: c.level},
		Task: &Task{Name: TaskCopy, CopyTask: task, Symbols: CopySymbols[:task.Alphabet],
			Start: string(CopyStart), Filler: string(CopyFiller), Go: string(CopyGo),
			ExampleLen: L, CopyOffset: task.CopyOffset()},
	}
	var jobs []job
	counts := [3]int{task.Examples, task.EvalExamples, task.EvalExamples}
	m.Splits = make([]Split, len(SplitNames))
	errs := make([][]error, len(SplitNames))
	var total int64
	for i, name := range SplitNames {
		layout := newCopyLayout(task, i, counts[i], symIDs, idOf(CopyStart), idOf(CopyFiller), idOf(CopyGo))
		T := int64(counts[i]) * int64(L)
		S := int64(c.shardTokens)
		n := int((T + S - 1) / S)
		sp := &m.Splits[i]
		*sp = Split{Name: name, Tokens: T, Bytes: T, Chars: T, ExampleLen: int64(L),
			Scored: int64(counts[i]) * int64(task.SeqLen), Source: Source{Ranges: []SourceRange{}},
			Shards: make([]Shard, n)}
		errs[i] = make([]error, n)
		for k := range n {
			from, to := int64(k)*S, min(int64(k+1)*S, T)
			jobs = append(jobs, job{split: name, idx: k, tokens: int(to - from),
				fill:  func(ids, mask []byte) { layout.fill(ids, mask, from) },
				shard: &sp.Shards[k], err: &errs[i][k]})
		}
		total += T
	}
	w := &writer{c: &c, f: f, width: 1, vocab: vocab, total: total}
	w.run(ctx, jobs)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, err := range slices.Concat(errs...) {
		if err != nil {
			return nil, err
		}
	}
	if err := f.install(m); err != nil {
		return nil, fmt.Errorf("copy task: %w", err)
	}
	return m, nil
}
