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
//
// When the split is made of examples (its Split.ExampleLen is set, as in a copy-task
// dataset), StreamLen is rounded down to whole examples, so every stream starts at an
// example boundary and no example is cut in two at a stream start: each stream holds
// (examples/B) whole examples, the last examples mod B are not used, and a stream's
// last example may be cut short by its unused tail. When the dataset has scored masks
// (FeatureScoredMask), NextWithMask returns which targets count in the loss.
type Batcher struct {
	ids       []uint32
	scored    []bool // the split's mask, nil without FeatureScoredMask
	exLen     int64
	split     string
	batch     int
	block     int
	streamLen int64
	start     int64 // offset of block 0 in every stream (SetStart)
	blocks    int64
	pos       int64
}

// NewBatcher returns a Batcher over a split with batch streams and blocks of block+1
// tokens. It loads the split with r.Tokens, and its mask with r.Scored when the
// dataset has one.
func NewBatcher(r *Reader, split string, batch, block int) (*Batcher, error) {
	if batch < 1 || block < 1 {
		return nil, fmt.Errorf("batcher: batch %d and block %d must be at least 1", batch, block)
	}
	n, err := r.SplitLen(split)
	if err != nil {
		return nil, err
	}
	L := n / int64(batch)
	s, _ := r.m.Split(split)
	exLen := s.ExampleLen
	if exLen > 0 {
		L = n / exLen / int64(batch) * exLen
		if L < int64(block)+1 {
			return nil, fmt.Errorf("%s: split %s has %d examples of %d tokens, too few for %d streams of whole examples and at least one block of %d+1 tokens",
				r.dir, split, n/exLen, exLen, batch, block)
		}
	}
	if L < int64(block)+1 {
		return nil, fmt.Errorf("%s: split %s has %d tokens, too few for %d streams of one block of %d+1 tokens (need at least %d)",
			r.dir, split, n, batch, block, int64(batch)*(int64(block)+1))
	}
	ids, err := r.Tokens(split)
	if err != nil {
		return nil, err
	}
	var scored []bool
	if r.HasMask() {
		if scored, err = r.Scored(split); err != nil {
			return nil, err
		}
	}
	return &Batcher{ids: ids, scored: scored, exLen: exLen, split: split, batch: batch, block: block,
		streamLen: L, blocks: (L - 1) / int64(block)}, nil
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
		start := b.TokenOffset(b.pos, s)
		src := b.ids[start : start+int64(w)]
		dst := out[s*w : (s+1)*w]
		for j, id := range src {
			dst[j] = int64(id)
		}
	}
	b.pos++
	return out, nil
}

// NextWithMask returns the next block like Next, and with it the mask of the block's
// targets: batch*block float32 values, row-major ([B][M], ready for a tensor), in a new
// slice. mask[s*M+j] is 1 if target j of row s (token j+1 of the row, the one
// predicted from token j) is scored, else 0. Without scored masks (HasMask false)
// every target is scored and the mask is all ones.
//
// Loss over scored targets only: sum(nll*mask) / sum(mask). The sum may be 0 (a copy-
// task block inside a gap scores nothing): such a block adds no task loss, but must
// still be run to carry the memory forward. It returns io.EOF like Next.
func (b *Batcher) NextWithMask() (ids []int64, mask []float32, err error) {
	pos := b.pos
	ids, err = b.Next()
	if err != nil {
		return nil, nil, err
	}
	M := b.block
	mask = make([]float32, b.batch*M)
	for s := 0; s < b.batch; s++ {
		row := mask[s*M : (s+1)*M]
		if b.scored == nil {
			for j := range row {
				row[j] = 1
			}
			continue
		}
		first := b.TokenOffset(pos, s) + 1
		for j, v := range b.scored[first : first+int64(M)] {
			if v {
				row[j] = 1
			}
		}
	}
	return ids, mask, nil
}

// HasMask reports whether the split has a scored mask (else NextWithMask's masks are
// all ones).
func (b *Batcher) HasMask() bool { return b.scored != nil }

// ExampleLen is the split's example length (0 for a split without examples).
func (b *Batcher) ExampleLen() int64 { return b.exLen }

// TokenOffset is the split offset of token 0 of row s of block pos: row*StreamLen +
// pos*M. Target j of that row is token TokenOffset+1+j of the split; with ExampleLen
// set, it belongs to example (TokenOffset+1+j)/ExampleLen, at offset
// (TokenOffset+1+j)%ExampleLen in it.
func (b *Batcher) TokenOffset(pos int64, row int) int64 {
	return int64(row)*b.streamLen + b.start + pos*int64(b.block)
}

// SetStart starts every stream start tokens later (0 <= start < M) and rewinds to block
// 0: a new pass over the data whose blocks fall on other boundaries, as the reference
// implementation begins each epoch after the first at a random offset below M. Streams
// of examples (ExampleLen set) keep their example boundaries: start must be 0.
func (b *Batcher) SetStart(start int64) error {
	if start < 0 || start >= int64(b.block) || (start > 0 && b.exLen > 0) {
		return fmt.Errorf("batcher: split %s: start %d outside 0..%d (0 for streams of examples)", b.split, start, b.block-1)
	}
	b.start, b.pos = start, 0
	b.blocks = (b.streamLen - 1 - start) / int64(b.block)
	return nil
}

// Start is the offset SetStart set.
func (b *Batcher) Start() int64 { return b.start }

// Position is the number of blocks consumed so far.
func (b *Batcher) Position() int64 { return b.pos }

// SetPosition makes the next call of Next return block pos (0 <= pos <= Blocks).
func (b *Batcher) SetPosition(pos int64) error {
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

// Blocks is the number of steps until io.EOF: (StreamLen-1-Start)/M.
func (b *Batcher) Blocks() int64 { return b.blocks }
