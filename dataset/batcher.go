package dataset

import (
	"fmt"
	"io"
	"runtime"
)

func workers() int { return runtime.GOMAXPROCS(0) }

// Batcher cuts a split into B contiguous streams, Transformer-XL style, and yields per
// step a [B][M+1] block of token ids: row b of step t holds tokens
// b*StreamLen + t*M ... b*StreamLen + t*M + M of the split, so consecutive blocks
// overlap by one token (the last target of block t is the first input of block t+1).
// The split's last len mod B tokens, and each stream's tail shorter than a block, are
// not used. A Batcher is deterministic and not safe for concurrent use.
type Batcher struct {
	ids       []uint32
	split     string
	batch     int
	block     int
	streamLen int64
	blocks    int64
	pos       int64
}

// NewBatcher returns a Batcher over a split with batch streams and blocks of block+1
// tokens. It loads the split with r.Tokens.
func NewBatcher(r *Reader, split string, batch, block int) (*Batcher, error) {
	if batch < 1 || block < 1 {
		return nil, fmt.Errorf("batcher: batch %d and block %d must be at least 1", batch, block)
	}
	n, err := r.SplitLen(split)
	if err != nil {
		return nil, err
	}
	L := n / int64(batch)
	if L < int64(block)+1 {
		return nil, fmt.Errorf("%s: split %s has %d tokens, too few for %d streams of one block of %d+1 tokens (need at least %d)",
			r.dir, split, n, batch, block, int64(batch)*(int64(block)+1))
	}
	ids, err := r.Tokens(split)
	if err != nil {
		return nil, err
	}
	return &Batcher{ids: ids, split: split, batch: batch, block: block, streamLen: L, blocks: (L - 1) / int64(block)}, nil
}

// Next returns the next block: batch*(block+1) ids, row-major, as int64 (ready for a
// tensor), in a new slice. It returns io.EOF when the streams are exhausted.
func (b *Batcher) Next() ([]int64, error) {
	if b.pos >= b.blocks {
		return nil, io.EOF
	}
	w := b.block + 1
	out := make([]int64, b.batch*w)
	for s := 0; s < b.batch; s++ {
		start := int64(s)*b.streamLen + b.pos*int64(b.block)
		src := b.ids[start : start+int64(w)]
		dst := out[s*w : (s+1)*w]
		for j, id := range src {
			dst[j] = int64(id)
		}
	}
	b.pos++
	return out, nil
}

// Position is the number of blocks consumed so far.
func (b *Batcher) Position() int64 { return b.pos }

// Seek makes the next call of Next return block pos (0 <= pos <= Blocks).
func (b *Batcher) Seek(pos int64) error {
	if pos < 0 || pos > b.blocks {
		return fmt.Errorf("batcher: split %s: position %d outside 0..%d", b.split, pos, b.blocks)
	}
	b.pos = pos
	return nil
}

// Batch is the number of streams B.
func (b *Batcher) Batch() int { return b.batch }

// Block is M: each row of a step holds M+1 tokens.
func (b *Batcher) Block() int { return b.block }

// StreamLen is the number of tokens in each stream.
func (b *Batcher) StreamLen() int64 { return b.streamLen }

// Blocks is the number of steps until io.EOF: (StreamLen-1)/M.
func (b *Batcher) Blocks() int64 { return b.blocks }
