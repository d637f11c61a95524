package dataset

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"

	"xspan/tokenize"
)

// writer encodes splits into shard files.
type writer struct {
	c     *config
	dir   string
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

// job is one shard to write (text to encode, or ids already encoded), or a side task
// (fn) run by the same workers.
type job struct {
	split string
	idx   int
	text  []byte
	ids   []uint32
	fn    func()
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
					return nil, fmt.Errorf("split %s, shard %d (%s): %v", sp.Name, k, describeRanges(sp.Source.Ranges), err)
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
		for _, piece := range tokenize.SplitText(s.text, 4<<20) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			more, err := w.vocab.Encode(piece)
			if err != nil {
				return nil, fmt.Errorf("split %s (%s): %v", s.name, describeRanges(s.ranges), err)
			}
			ids = append(ids, more...)
			w.advance(int64(len(piece)))
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
func (w *writer) run(ctx context.Context, jobs []job) {
	parallelEncode(len(jobs), w.c.workers, w.c.level, func(enc *zstd.Encoder) func(int) {
		var packed, file []byte
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
				*j.shard, *j.unk, packed, file, *j.err = w.writeShard(enc, j.split, j, packed[:0], file[:0])
				if j.ids == nil {
					w.advance(int64(len(j.text)))
				}
			}
		}
	})
}

// writeShard encodes one job, writes its file and describes it; packed and file are
// reusable buffers returned for the next call.
func (w *writer) writeShard(enc *zstd.Encoder, split string, j job, packed, file []byte) (Shard, int64, []byte, []byte, error) {
	var unk int
	if j.ids != nil {
		packed = pack(packed, j.ids, w.width)
	} else {
		var err error
		packed, unk, err = w.vocab.(tokenize.Packer).AppendPacked(packed, w.width, j.text)
		if err != nil {
			return Shard{}, 0, packed, file, err
		}
	}
	name := shardName(split, j.idx)
	file = appendShard(file, enc, packed, w.width)
	if err := os.WriteFile(filepath.Join(w.dir, name), file, 0o644); err != nil {
		return Shard{}, 0, packed, file, fileError(filepath.Join(w.dir, name), err)
	}
	sh := Shard{File: name, Tokens: int64(len(packed) / w.width), Bytes: int64(len(file)), Checksum: checksum(packed)}
	return sh, int64(unk), packed, file, nil
}
