package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"xspan/dataset"
)

func init() {
	register(command{name: "inspect", summary: "describe a dataset folder and show a decoded sample", run: runInspect})
}

func runInspect(e *env, args []string) error {
	fs := newFlagSet("inspect", "DIR [flags]", "Prints a dataset's manifest in human form and a decoded sample.")
	sample := fs.Int("sample", 300, "tokens of decoded sample to show (0 for none)")
	split := fs.String("split", "", "split to sample (default valid, else the first)")
	pos, err := fs.parse(e, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("want one dataset folder, got %d arguments", len(pos))
	}
	if *sample < 0 {
		return usageErrorf("--sample %d: must not be negative (0: no sample)", *sample)
	}
	r, err := dataset.Open(pos[0])
	if err != nil {
		return err
	}
	w := bufio.NewWriter(e.stdout)
	if err := inspect(w, r, *split, *sample); err != nil {
		return err
	}
	return w.Flush()
}

// inspect writes the manifest and a sample of n tokens of split.
func inspect(w io.Writer, r *dataset.Reader, split string, n int) error {
	if err := describe(w, r); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	name := split
	m := r.Manifest()
	if name == "" {
		name = m.Splits[0].Name
		if _, err := m.Split("valid"); err == nil {
			name = "valid"
		}
	}
	ids := make([]uint32, n)
	got, err := r.ReadAt(name, 0, ids)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	v, err := r.Vocab()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nsample: the first %d tokens of %s, decoded:\n", got, name)
	for _, line := range strings.Split(printable(v.Decode(ids[:got])), "\n") {
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
