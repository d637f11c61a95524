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

// job is one shard to write: text to encode, or ids already encoded.
type job struct {
	idx  int
	text []byte
	ids  []uint32
}

func (w *writer) writeSplit(ctx context.Context, s *splitText) (*Split, error) {
	sp := &Split{
		Name: s.name, Bytes: int64(len(s.text)), DroppedNewlines: s.dropped,
		Source: Source{Bytes: int64(len(s.raw)), Checksum: fmt.Sprintf("xxh64:%016x", xxhash.Sum64(s.raw)), Ranges: s.ranges},
	}
	S := w.c.shardTokens
	var jobs []job
	_, isPacker := w.vocab.(tokenize.Packer)
	switch {
	case isPacker && w.vocab.Kind() == tokenize.KindByte:
		for t := s.text; len(t) > 0; {
			n := min(S, len(t))
			jobs = append(jobs, job{idx: len(jobs), text: t[:n]})
			t = t[n:]
		}
	case isPacker:
		for t := s.text; len(t) > 0; {
			n := advanceRunes(t, S)
			jobs = append(jobs, job{idx: len(jobs), text: t[:n]})
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
			jobs = append(jobs, job{idx: len(jobs), ids: t[:n]})
			t = t[n:]
		}
	}
	if w.vocab.Kind() == tokenize.KindChar {
		sp.Chars = -1 // filled in from the token count below
	} else {
		sp.Chars = int64(utf8.RuneCount(s.text))
	}

	shards := make([]Shard, len(jobs))
	unks := make([]int64, len(jobs))
	errs := make([]error, len(jobs))
	next := make(chan job)
	var wg sync.WaitGroup
	level := zstd.EncoderLevelFromZstd(w.c.level)
	for range min(w.c.workers, len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1))
			if err != nil {
				panic(err) // only bad options fail
			}
			defer enc.Close()
			var packed, file []byte
			for j := range next {
				if err := ctx.Err(); err != nil {
					errs[j.idx] = err
					continue
				}
				shards[j.idx], unks[j.idx], packed, file, errs[j.idx] = w.writeShard(enc, s.name, j, packed[:0], file[:0])
				if j.ids == nil {
					w.advance(int64(len(j.text)))
				}
			}
		}()
	}
	for _, j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			var ue *tokenize.InvalidUTF8Error
			if errors.As(err, &ue) {
				return nil, fmt.Errorf("split %s, shard %d (%s): %v", s.name, i, describeRanges(s.ranges), err)
			}
			return nil, err
		}
		sp.Tokens += shards[i].Tokens
		sp.Unk += unks[i]
	}
	sp.Shards = shards
	if sp.Chars < 0 {
		sp.Chars = sp.Tokens
	}
	return sp, nil
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
