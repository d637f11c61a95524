package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"xspan/dataset"
)

func init() {
	register(command{name: "cat", summary: "write a split of a dataset as decoded text to stdout", run: runCat})
}

func runCat(args []string) error {
	fs := newFlagSet("cat", "DIR --split NAME", "Writes a split's decoded text to stdout; with a byte vocabulary it is the\nsource text byte for byte (after the newline policy).")
	split := fs.String("split", "", "split to write (required): train, valid or test")
	if err := fs.Parse(reorder(args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErrorf("%v", err)
	}
	if fs.NArg() != 1 {
		return usageErrorf("want one dataset folder, got %d arguments", fs.NArg())
	}
	if *split == "" {
		return usageErrorf("--split is required")
	}
	r, err := dataset.Open(fs.Arg(0))
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
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
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
			return fmt.Errorf("stdout: %v", err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("stdout: %v", err)
	}
	return nil
}

// reorder moves flags before positional arguments, so "cat DIR --split x" parses.
func reorder(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && len(a) > 1:
			flags = append(flags, a)
			if !strings.Contains(a, "=") && i+1 < len(args) && strings.TrimLeft(a, "-") != "h" && strings.TrimLeft(a, "-") != "help" {
				flags = append(flags, args[i+1])
				i++
			}
		default:
			pos = append(pos, a)
		}
	}
	return append(flags, pos...)
}
