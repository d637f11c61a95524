package main

import (
	"bufio"
	"fmt"

	"xspan/dataset"
)

func init() {
	register(command{name: "cat", summary: "write a split of a dataset as decoded text to stdout", run: runCat})
}

func runCat(e *env, args []string) error {
	fs := newFlagSet("cat", "DIR --split NAME", "Writes a split's decoded text to stdout; with a byte vocabulary it is the\nsource text byte for byte (after the newline policy).")
	split := fs.String("split", "", "split to write (required): train, valid or test")
	pos, err := fs.parse(e, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("want one dataset folder, got %d arguments", len(pos))
	}
	if *split == "" {
		return usageErrorf("--split is required")
	}
	r, err := dataset.Open(pos[0])
	if err != nil {
		return err
	}
	if _, err := r.SplitLen(*split); err != nil {
		return err
	}
	v, err := r.Vocab()
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(e.stdout, 1<<20)
	raw := v.Kind() == "byte" && r.Manifest().TokenWidth == 1
	s, _ := r.Manifest().Split(*split)
	var packed []byte
	for i := range s.Shards {
		if raw {
			if packed, err = r.ShardPacked(*split, i, packed); err != nil {
				return err
			}
			_, err = w.Write(packed)
		} else {
			var ids []uint32
			if ids, err = r.Shard(*split, i); err != nil {
				return err
			}
			_, err = w.Write(v.Decode(ids))
		}
		if err != nil {
			return fmt.Errorf("writing standard output: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("writing standard output: %w", err)
	}
	return nil
}
