package dataset

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestBatcher(t *testing.T) {
	text := corpus(10007, 13)
	out := byteDataset(t, text, WithShardTokens(999), WithSplit(1, 0, 0))
	r, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	const B, M = 3, 16
	b, err := NewBatcher(r, "train", B, M)
	if err != nil {
		t.Fatal(err)
	}
	L := int64(len(text) / B)
	if b.Batch() != B || b.Block() != M || b.StreamLen() != L || b.Blocks() != (L-1)/M {
		t.Fatalf("batch %d block %d streamLen %d blocks %d", b.Batch(), b.Block(), b.StreamLen(), b.Blocks())
	}
	var steps [][]int64
	for {
		x, err := b.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(x) != B*(M+1) {
			t.Fatalf("block of %d ids", len(x))
		}
		steps = append(steps, x)
	}
	if int64(len(steps)) != b.Blocks() || b.Position() != b.Blocks() {
		t.Fatalf("%d steps, position %d, want %d", len(steps), b.Position(), b.Blocks())
	}
	for step, x := range steps {
		for s := range B {
			row := x[s*(M+1) : (s+1)*(M+1)]
			start := int64(s)*L + int64(step)*M
			for j, id := range row {
				if byte(id) != text[start+int64(j)] {
					t.Fatalf("step %d stream %d token %d: %d, want %d", step, s, j, id, text[start+int64(j)])
				}
			}
			if step > 0 && row[0] != steps[step-1][s*(M+1)+M] {
				t.Fatalf("step %d stream %d: blocks do not overlap by one token", step, s)
			}
		}
	}
	// Resuming at a position gives the same blocks; a new Batcher is deterministic.
	b2, _ := NewBatcher(r, "train", B, M)
	if err := b2.SetPosition(7); err != nil {
		t.Fatal(err)
	}
	x, _ := b2.Next()
	if !slices.Equal(x, steps[7]) || b2.Position() != 8 {
		t.Fatal("SetPosition(7) then Next is not block 7")
	}
	if err := b2.SetPosition(b2.Blocks() + 1); err == nil {
		t.Fatal("SetPosition past the end: no error")
	}
	b2.SetPosition(b2.Blocks())
	if _, err := b2.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("Next at the end: %v", err)
	}
}

func TestBatcherTooShort(t *testing.T) {
	out := byteDataset(t, corpus(1000, 14), WithSplit(0.9, 0.1, 0))
	r, _ := Open(out)
	// valid has 100 tokens: 4 streams of 25 hold one block of 24+1, not of 25+1.
	if _, err := NewBatcher(r, "valid", 4, 24); err != nil {
		t.Fatal(err)
	}
	_, err := NewBatcher(r, "valid", 4, 25)
	if err == nil || !strings.Contains(err.Error(), "split valid has 100 tokens, too few for 4 streams") {
		t.Fatalf("err %v", err)
	}
	if _, err := NewBatcher(r, "test", 1, 1); err == nil {
		t.Fatal("missing split: no error")
	}
}
