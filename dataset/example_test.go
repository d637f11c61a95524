package dataset_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"xspan/dataset"
)

func Example() {
	dir, _ := os.MkdirTemp("", "xspan-example-")
	defer os.RemoveAll(dir)
	in := filepath.Join(dir, "corpus.txt")
	os.WriteFile(in, []byte(strings.Repeat("to be or not to be\n", 100)), 0o644)

	// Prepare: 90/5/5 split of the text, char vocabulary.
	out := filepath.Join(dir, "ds")
	if _, err := dataset.Prep(context.Background(), out, []string{in}); err != nil {
		log.Fatal(err)
	}

	// Read: 2 streams, blocks of 8+1 tokens.
	r, err := dataset.Open(out)
	if err != nil {
		log.Fatal(err)
	}
	b, err := dataset.NewBatcher(r, "train", 2, 8)
	if err != nil {
		log.Fatal(err)
	}
	x, _ := b.Next()
	v, _ := r.Vocab()
	ids := make([]uint32, len(x))
	for i, id := range x {
		ids[i] = uint32(id)
	}
	fmt.Printf("%d blocks of %d ids; first rows: %q %q\n", b.Blocks(), len(x), v.Decode(ids[:9]), v.Decode(ids[9:]))
	// Output:
	// 106 blocks of 18 ids; first rows: "to be or " "to be or "
}

// A copy-task dataset: streams start at example boundaries, and NextWithMask says which
// targets are scored (the copied string). The training loss is sum(nll*mask)/sum(mask).
func ExamplePrepCopy() {
	dir, _ := os.MkdirTemp("", "xspan-example-")
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "copy")
	task := dataset.CopyTask{SeqLen: 3, Gap: 4, Alphabet: 4, Examples: 8, Seed: 1}
	if _, err := dataset.PrepCopy(context.Background(), out, task); err != nil {
		log.Fatal(err)
	}
	r, err := dataset.Open(out)
	if err != nil {
		log.Fatal(err)
	}
	v, _ := r.Vocab()
	// 2 streams of 4 examples of 12 tokens; blocks of 6+1 tokens.
	b, err := dataset.NewBatcher(r, "train", 2, 6)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("example length", b.ExampleLen(), "stream length", b.StreamLen())
	for range 2 {
		ids, mask, err := b.NextWithMask()
		if err != nil {
			log.Fatal(err)
		}
		for s := range b.Batch() {
			row := make([]uint32, 7)
			for j := range row {
				row[j] = uint32(ids[s*7+j])
			}
			fmt.Printf("stream %d: %q targets %q scored %v\n", s, v.Decode(row), v.Decode(row[1:]), mask[s*6:(s+1)*6])
		}
	}
	// Output:
	// example length 12 stream length 48
	// stream 0: "dbc<..." targets "bc<..." scored [0 0 0 0 0 0]
	// stream 1: "dcc<..." targets "cc<..." scored [0 0 0 0 0 0]
	// stream 0: "..>dbca" targets ".>dbca" scored [0 0 1 1 1 0]
	// stream 1: "..>dcca" targets ".>dcca" scored [0 0 1 1 1 0]
}
