package dataset

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cespare/xxhash/v2"

	"xspan/tokenize"
)

// IDSplit is one split given as token ids already, for [WriteIDs]: what another
// program's corpus holds (the reference implementation's corpus cache, say).
type IDSplit struct {
	Name string
	IDs  []uint32
	// Bytes and Chars count the text the ids stand for (after the newline policy), as in
	// Split; for a byte or char vocabulary of single-byte characters both are len(IDs).
	Bytes, Chars    int64
	DroppedNewlines int64
	// Source says where the ids came from (Checksum is filled in when empty: xxh64 of
	// the ids as 4-byte little-endian integers).
	Source Source
}

// WriteIDs writes a dataset folder at out from splits already tokenized with vocab, with
// input as the manifest's Input ("reference", say) and newlines its newline policy. The
// folder appears only when complete, as with Prep; an existing out needs WithForce. Only
// WithLevel, WithShardTokens, WithForce, WithWorkers and WithProgress apply. An id
// outside the vocabulary is an error.
func WriteIDs(ctx context.Context, out, input string, vocab tokenize.Vocab, newlines string, splits []IDSplit, opts ...Option) (*Manifest, error) {
	c := defaultConfig()
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	if newlines != NewlinesKeep && newlines != NewlinesDrop {
		return nil, fmt.Errorf("newline policy %q (want keep or drop)", newlines)
	}
	if len(splits) == 0 {
		return nil, errors.New("no splits")
	}
	n := uint32(vocab.Size())
	var total int64
	for _, s := range splits {
		if len(s.IDs) == 0 {
			return nil, fmt.Errorf("split %s is empty", s.Name)
		}
		for i, id := range s.IDs {
			if id >= n {
				return nil, fmt.Errorf("split %s: token %d is id %d, outside the vocabulary of %d", s.Name, i, id, n)
			}
		}
		total += int64(len(s.IDs))
	}
	f, err := newFolder(out, c.force)
	if err != nil {
		return nil, err
	}
	defer f.discard()
	width := tokenize.Width(vocab.Size())
	m := &Manifest{
		Format: FormatName, Version: Version, Input: input, Vocab: vocab.Spec(),
		Newlines: newlines, TokenWidth: width,
		Compression: Compression{Codec: "zstd", Level: c.level},
	}
	unk := -1
	if u, ok := vocab.(interface{ Unk() int }); ok {
		unk = u.Unk()
	}
	w := &writer{c: &c, f: f, width: width, vocab: vocab, total: total}
	m.Splits = make([]Split, len(splits))
	errs := make([][]error, len(splits))
	var jobs []job
	for i, s := range splits {
		sp := &m.Splits[i]
		*sp = Split{Name: s.Name, Bytes: s.Bytes, Chars: s.Chars, DroppedNewlines: s.DroppedNewlines, Source: s.Source}
		if sp.Source.Checksum == "" {
			h := xxhash.New()
			var b [4]byte
			for _, id := range s.IDs {
				binary.LittleEndian.PutUint32(b[:], id)
				h.Write(b[:])
			}
			sp.Source.Checksum = fmt.Sprintf("xxh64:%016x", h.Sum64())
		}
		for _, id := range s.IDs {
			if int(id) == unk {
				sp.Unk++
			}
		}
		var js []job
		for t := s.IDs; len(t) > 0; {
			k := min(c.shardTokens, len(t))
			js = append(js, job{split: s.Name, idx: len(js), ids: t[:k]})
			t = t[k:]
		}
		sp.Shards = make([]Shard, len(js))
		errs[i] = make([]error, len(js))
		for k := range js {
			js[k].shard, js[k].err = &sp.Shards[k], &errs[i][k]
		}
		jobs = append(jobs, js...)
	}
	w.run(ctx, jobs)
	for i := range m.Splits {
		sp := &m.Splits[i]
		for _, err := range errs[i] {
			if err != nil {
				return nil, err
			}
		}
		for _, sh := range sp.Shards {
			sp.Tokens += sh.Tokens
		}
		w.advance(sp.Tokens)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := f.install(m); err != nil {
		return nil, err
	}
	return m, nil
}
