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
