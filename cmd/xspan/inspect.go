package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"

	"xspan/dataset"
)

func init() {
	register(command{name: "inspect", summary: "describe a dataset folder and show a decoded sample", run: runInspect})
	register(command{name: "cat", summary: "write a split of a dataset as decoded text to stdout", run: runCat})
}

func runInspect(args []string) error {
	fs := newFlagSet("inspect", "[flags] DIR", "Prints a dataset's manifest in human form and a decoded sample.")
	sample := fs.Int("sample", 300, "tokens of decoded sample to show (0 for none)")
	split := fs.String("split", "", "split to sample (default valid, else the first)")
	if err := fs.Parse(reorder(args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErrorf("%v", err)
	}
	if fs.NArg() != 1 {
		return usageErrorf("want one dataset folder, got %d arguments", fs.NArg())
	}
	r, err := dataset.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	if err := describe(w, r); err != nil {
		return err
	}
	if *sample <= 0 {
		return nil
	}
	name := *split
	m := r.Manifest()
	if name == "" {
		name = m.Splits[0].Name
		if _, err := m.Split("valid"); err == nil {
			name = "valid"
		}
	}
	ids := make([]uint32, *sample)
	n, err := r.ReadAt(name, 0, ids)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	v, err := r.Vocab()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nsample: the first %d tokens of %s, decoded:\n", n, name)
	for _, line := range strings.Split(printable(v.Decode(ids[:n])), "\n") {
		fmt.Fprintf(w, "  | %s\n", line)
	}
	return nil
}

// describe writes the manifest in human form.
func describe(w io.Writer, r *dataset.Reader) error {
	m := r.Manifest()
	fmt.Fprintf(w, "dataset %s (%s version %d)\n", r.Dir(), m.Format, m.Version)
	fmt.Fprintf(w, "input:       %s\n", m.Input)
	voc := fmt.Sprintf("%s, %d ids", m.Vocab.Kind, m.Vocab.Size)
	switch {
	case m.Vocab.Unk != nil:
		voc += fmt.Sprintf(" (<unk> is id %d)", *m.Vocab.Unk)
	case m.Vocab.File != "":
		voc += fmt.Sprintf(" (%s, sha256 %.12s…)", m.Vocab.File, m.Vocab.SHA256)
	}
	fmt.Fprintf(w, "vocabulary:  %s, %d byte(s) a token\n", voc, m.TokenWidth)
	fmt.Fprintf(w, "newlines:    %s\n", m.Newlines)
	fmt.Fprintf(w, "compression: %s level %d\n\n", m.Compression.Codec, m.Compression.Level)
	fmt.Fprintf(w, "%-8s %12s %12s %12s %12s %7s %10s %6s %8s\n", "split", "tokens", "bytes", "chars", "source", "shards", "stored", "ratio", "unk")
	for i := range m.Splits {
		s := &m.Splits[i]
		var stored int64
		for _, sh := range s.Shards {
			stored += sh.Bytes
		}
		fmt.Fprintf(w, "%-8s %12d %12d %12d %12d %7d %10s %6.2f %8d\n", s.Name, s.Tokens, s.Bytes, s.Chars,
			s.Source.Bytes, len(s.Shards), humanBytes(stored), ratio(m, s), s.Unk)
	}
	return nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// printable shows control characters and invalid UTF-8 as escapes, keeping newlines.
func printable(b []byte) string {
	var sb strings.Builder
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&sb, `\x%02x`, b[0])
		case r == '\n':
			sb.WriteByte('\n')
		case r == '\t':
			sb.WriteString(`\t`)
		case !unicode.IsPrint(r) && r != ' ':
			fmt.Fprintf(&sb, `\u%04x`, r)
		default:
			sb.WriteRune(r)
		}
		b = b[size:]
	}
	return sb.String()
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
