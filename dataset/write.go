package dataset

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"

	"xspan/tokenize"
)

// writer encodes splits into the shard files (and masks) of a dataset folder, with one
// pool of workers for all of them.
type writer struct {
	c     *config
	f     *folder
	width int
	vocab tokenize.Vocab
	total int64

	mu   sync.Mutex
	done int64
}

func (w *writer) advance(n int64) {
	w.mu.Lock()
	w.done += n
	w.c.progress(w.done, w.total)
	w.mu.Unlock()
}

// job is one shard to write, or a side task (fn) run by the same workers. A shard's
// tokens are text to encode, ids already encoded, or, for a synthetic dataset of 1-byte
// ids, fill, which writes the shard's tokens ids and its scored mask.
type job struct {
	split  string
	idx    int
	text   []byte
	ids    []uint32
	fill   func(ids, mask []byte)
	tokens int // of a fill job
	fn     func()
	// Where the result goes.
	shard *Shard
	unk   *int64
	err   *error
}

// writeAll encodes the splits into shard files with one pool of workers for all of
// them, and returns their manifest entries.
func (w *writer) writeAll(ctx context.Context, texts []*splitText) ([]Split, error) {
	splits := make([]Split, len(texts))
	unks := make([][]int64, len(texts))
	errs := make([][]error, len(texts))
	var jobs []job
	w.advance(0) // starts the clock of a progress display
	for i, s := range texts {
		sp := &splits[i]
		*sp = Split{Name: s.name, Bytes: int64(len(s.text)), DroppedNewlines: s.dropped,
			Source: Source{Bytes: int64(len(s.raw)), Ranges: s.ranges}}
		jobs = append(jobs, job{fn: func() { sp.Source.Checksum = fmt.Sprintf("xxh64:%016x", xxhash.Sum64(s.raw)) }})
		if w.vocab.Kind() != tokenize.KindChar {
			jobs = append(jobs, job{fn: func() { sp.Chars = int64(utf8.RuneCount(s.text)) }})
		}
		js, err := w.plan(ctx, s)
		if err != nil {
			return nil, err
		}
		sp.Shards = make([]Shard, len(js))
		unks[i] = make([]int64, len(js))
		errs[i] = make([]error, len(js))
		for k := range js {
			js[k].shard, js[k].unk, js[k].err = &sp.Shards[k], &unks[i][k], &errs[i][k]
		}
		jobs = append(jobs, js...)
	}
	w.run(ctx, jobs)
	for i := range splits {
		sp := &splits[i]
		for k, err := range errs[i] {
			if err != nil {
				var ue *tokenize.InvalidUTF8Error
				if errors.As(err, &ue) {
					return nil, fmt.Errorf("split %s, shard %d (%s): %w", sp.Name, k, describeRanges(sp.Source.Ranges), err)
				}
				return nil, err
			}
			sp.Tokens += sp.Shards[k].Tokens
			sp.Unk += unks[i][k]
		}
		if w.vocab.Kind() == tokenize.KindChar {
			sp.Chars = sp.Tokens
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return splits, nil
}

// plan cuts a split into shard jobs; a tokenizer.json vocabulary encodes here.
func (w *writer) plan(ctx context.Context, s *splitText) ([]job, error) {
	S := w.c.shardTokens
	var jobs []job
	_, isPacker := w.vocab.(tokenize.Packer)
	switch {
	case isPacker && w.vocab.Kind() == tokenize.KindByte:
		for t := s.text; len(t) > 0; {
			n := min(S, len(t))
			jobs = append(jobs, job{split: s.name, idx: len(jobs), text: t[:n]})
			t = t[n:]
		}
	case isPacker:
		for t := s.text; len(t) > 0; {
			n := advanceRunes(t, S)
			jobs = append(jobs, job{split: s.name, idx: len(jobs), text: t[:n]})
			t = t[n:]
		}
	default:
		var ids []uint32
		// A tokenizer.json's encoder says how far it got, chunk by chunk (a few hundred
		// KB); another vocabulary's progress moves a piece at a time.
		hf, _ := w.vocab.(*tokenize.HF)
		for _, piece := range tokenize.SplitText(s.text, 4<<20) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			var more []uint32
			var err error
			if hf != nil {
				more, err = hf.EncodeProgress(piece, w.c.workers, func(n int) { w.advance(int64(n)) })
			} else {
				more, err = w.vocab.Encode(piece)
				w.advance(int64(len(piece)))
			}
			if err != nil {
				return nil, fmt.Errorf("split %s (%s): %w", s.name, describeRanges(s.ranges), err)
			}
			ids = append(ids, more...)
		}
		for t := ids; len(t) > 0; {
			n := min(S, len(t))
			jobs = append(jobs, job{split: s.name, idx: len(jobs), ids: t[:n]})
			t = t[n:]
		}
	}
	return jobs, nil
}

// run runs jobs on the configured number of workers, each with its own encoder.
// Progress counts text bytes encoded, or tokens for fill jobs.
func (w *writer) run(ctx context.Context, jobs []job) {
	w.advance(0)
	parallelEncode(len(jobs), w.c.workers, w.c.level, func(enc *zstd.Encoder) func(int) {
		var b buffers
		return func(i int) {
			j := jobs[i]
			switch {
			case ctx.Err() != nil:
				if j.err != nil {
					*j.err = ctx.Err()
				}
			case j.fn != nil:
				j.fn()
			default:
				var unk int64
				*j.shard, unk, *j.err = w.writeShard(enc, j, &b)
				if j.unk != nil {
					*j.unk = unk
				}
				switch {
				case j.fill != nil:
					w.advance(int64(j.tokens))
				case j.ids == nil:
					w.advance(int64(len(j.text)))
				}
			}
		}
	})
}

// buffers are a worker's buffers, reused from shard to shard.
type buffers struct {
	packed, mask, file []byte
}

// writeShard encodes one job, writes its shard file (and mask file) and describes it,
// with the number of unknown characters replaced.
func (w *writer) writeShard(enc *zstd.Encoder, j job, b *buffers) (Shard, int64, error) {
	var unk int
	switch {
	case j.fill != nil:
		b.packed, b.mask = grow(b.packed, j.tokens), grow(b.mask, j.tokens)
		j.fill(b.packed, b.mask)
	case j.ids != nil:
		b.packed = pack(b.packed[:0], j.ids, w.width)
	default:
		var err error
		b.packed, unk, err = w.vocab.(tokenize.Packer).AppendPacked(b.packed[:0], w.width, j.text)
		if err != nil {
			return Shard{}, 0, err
		}
	}
	sh := Shard{File: shardName(j.split, j.idx), Tokens: int64(len(b.packed) / w.width), Checksum: checksum(b.packed)}
	var err error
	if sh.Bytes, err = w.writeCompressed(enc, sh.File, b.packed, &b.file); err != nil {
		return Shard{}, 0, err
	}
	if j.fill != nil {
		mk := &MaskFile{File: maskName(j.split, j.idx), Checksum: checksum(b.mask)}
		if mk.Bytes, err = w.writeCompressed(enc, mk.File, b.mask, &b.file); err != nil {
			return Shard{}, 0, err
		}
		sh.Mask = mk
	}
	return sh, int64(unk), nil
}

// writeCompressed writes packed data as the shard file name (see shard.go) and returns
// the file's size; file is a reusable buffer.
func (w *writer) writeCompressed(enc *zstd.Encoder, name string, packed []byte, file *[]byte) (int64, error) {
	*file = appendShard((*file)[:0], enc, packed, w.width)
	if err := w.f.writeFile(name, *file); err != nil {
		return 0, err
	}
	return int64(len(*file)), nil
}

// grow returns b resized to n bytes, reusing its array when large enough.
func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}
