package dataset

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"unicode/utf8"

	"xspan/tokenize"
)

// splitText is one split's raw text and where it came from.
type splitText struct {
	name    string
	raw     []byte // before the newline policy
	text    []byte // after it
	segs    []segment
	ranges  []SourceRange
	dropped int64
}

// Prep turns inputs into a dataset folder at out and returns its manifest. The folder
// is written under a temporary name beside out and renamed at the end, so an error or
// a cancelled ctx leaves nothing that looks like a dataset. An existing out is an error
// unless WithForce is given (and even then it is replaced only if it is an empty folder
// or holds a manifest.json). All text is held in memory while it is encoded.
func Prep(ctx context.Context, out string, inputs []string, opts ...Option) (*Manifest, error) {
	c := defaultConfig()
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	haveSplitFiles := len(c.splitFiles[0]) > 0
	if haveSplitFiles && len(inputs) > 0 {
		return nil, errors.New("give either inputs to split by fractions or files per split, not both")
	}
	if !haveSplitFiles && len(inputs) == 0 {
		return nil, errors.New("no inputs")
	}
	f, err := newFolder(out, c.force)
	if err != nil {
		return nil, err
	}
	defer f.discard()

	// Inputs and format.
	var files [3][]string
	if haveSplitFiles {
		for i, args := range c.splitFiles {
			if len(args) == 0 {
				continue
			}
			if files[i], err = expandInputs(args); err != nil {
				return nil, err
			}
		}
	} else if files[0], err = expandInputs(inputs); err != nil {
		return nil, err
	}
	format := c.format
	if format == "auto" {
		format = "text"
		for _, fs := range files {
			for _, f := range fs {
				if isEnwik8Name(f) {
					format = "enwik8"
					c.logf("format: enwik8 (from the file name %s; --format text to read it as text)", f)
				}
			}
		}
		if format == "text" {
			c.logf("format: text")
		}
	}
	vocabName := c.vocab
	if vocabName == "" {
		vocabName = map[string]string{"enwik8": "byte", "text": "char"}[format]
		c.logf("vocabulary: %s (the default for %s; --vocab to change it)", vocabName, format)
	} else {
		c.logf("vocabulary: %s", vocabName)
	}
	var hf *tokenize.HF
	if vocabName != tokenize.KindByte && vocabName != tokenize.KindChar {
		if hf, err = tokenize.LoadHF(vocabName); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%s: no such file (--vocab takes byte, char or a tokenizer.json)", vocabName)
			}
			return nil, err
		}
		if n := hf.Pieces(); n > 0 {
			c.logf("%s has no pre-tokenizer: the text is encoded a line at a time (long lines in pieces of at most %d bytes), as prompts will be; the manifest records it", vocabName, n)
		}
	}
	needUTF8 := vocabName != tokenize.KindByte

	// Read the text and cut the splits.
	var splits []*splitText
	var invalidCount int64
	if format == "enwik8" && (c.encoding != EncodingUTF8 || c.invalid != InvalidError) {
		return nil, errors.New("enwik8 is read as bytes: --encoding and --invalid apply to text inputs")
	}
	if format == "enwik8" {
		splits, err = readEnwik8(files, haveSplitFiles, c.splitSet, needUTF8)
	} else {
		var changed int64
		splits, changed, err = readText(files, haveSplitFiles, c.split, needUTF8, c.encoding, c.invalid)
		if changed > 0 {
			c.logf("invalid UTF-8: %d sequences %sd (--invalid %s)", changed, c.invalid, c.invalid)
		}
		invalidCount = changed
	}
	if err != nil {
		return nil, err
	}
	var total int64
	for _, s := range splits {
		if c.newlines == NewlinesDrop {
			s.text, s.dropped = dropNewlines(s.raw)
		} else {
			s.text = s.raw
		}
		if len(s.text) == 0 {
			return nil, fmt.Errorf("split %s is empty after dropping newlines (%s)", s.name, describeRanges(s.ranges))
		}
		total += int64(len(s.text))
	}

	// The vocabulary.
	var vocab tokenize.Vocab
	switch {
	case hf != nil:
		vocab = hf
	case vocabName == tokenize.KindByte:
		vocab = tokenize.Byte{}
	default:
		cs, err := charSetOf(splits[0], c.workers)
		if err != nil {
			return nil, err
		}
		vocab = cs.Vocab()
		c.logf("char vocabulary: %d characters from the train split, plus <unk>", cs.Len())
	}
	width := tokenize.Width(vocab.Size())

	m := &Manifest{
		Format: FormatName, Version: Version, Input: format, Vocab: vocab.Spec(),
		Newlines: c.newlines, TokenWidth: width,
		Compression: Compression{Codec: "zstd", Level: c.level},
	}
	if c.encoding != EncodingUTF8 {
		m.Encoding = c.encoding
	}
	if c.invalid != InvalidError {
		m.Invalid, m.InvalidCount = c.invalid, invalidCount
	}
	w := &writer{c: &c, f: f, width: width, vocab: vocab, total: total}
	if m.Splits, err = w.writeAll(ctx, splits); err != nil {
		return nil, err
	}
	for _, sp := range m.Splits {
		if sp.Unk > 0 {
			c.logf("split %s: %d characters not in the train split were replaced by <unk>", sp.Name, sp.Unk)
		}
	}
	if hf != nil {
		if err := f.writeFile(m.Vocab.File, hf.JSON()); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := f.install(m); err != nil {
		return nil, err
	}
	return m, nil
}

// readEnwik8 reads the one enwik8 input and cuts the standard split.
func readEnwik8(files [3][]string, splitFiles, splitSet, needUTF8 bool) ([]*splitText, error) {
	if splitFiles || splitSet {
		return nil, errors.New("enwik8 has a fixed split: --split, --train, --valid and --test do not apply (use --format text)")
	}
	if len(files[0]) != 1 {
		return nil, fmt.Errorf("enwik8 is one file, got %d inputs (use --format text for several)", len(files[0]))
	}
	path := files[0][0]
	data, err := readInput(path, enwik8Name)
	if err != nil {
		return nil, err
	}
	if len(data) != Enwik8Size {
		return nil, fmt.Errorf("%s: enwik8 must be %d bytes, this is %d (use --format text for other files)", path, Enwik8Size, len(data))
	}
	if needUTF8 {
		if err := tokenize.CheckUTF8(data); err != nil {
			return nil, utf8Error(path, err)
		}
	}
	segs := []segment{{path: path, size: Enwik8Size}}
	cuts := [4]int64{0, Enwik8Train, Enwik8Train + Enwik8Valid, Enwik8Size}
	var out []*splitText
	for i, name := range SplitNames {
		a, b := cuts[i], cuts[i+1]
		out = append(out, &splitText{name: name, raw: data[a:b], segs: segs, ranges: rangesOf(segs, a, b)})
	}
	return out, nil
}

// readText reads text inputs and cuts them into splits, by fractions of the
// concatenated bytes (moved to the next character boundary) or by files.
func readText(files [3][]string, splitFiles bool, frac [3]float64, needUTF8 bool, enc, invalid string) ([]*splitText, int64, error) {
	var out []*splitText
	var changed int64
	if splitFiles {
		for i, fs := range files {
			if len(fs) == 0 {
				continue
			}
			data, segs, n, err := concat(fs, needUTF8, enc, invalid)
			if err != nil {
				return nil, 0, err
			}
			changed += n
			if len(data) == 0 {
				return nil, 0, fmt.Errorf("%s: split %s is empty", strings.Join(fs, ", "), SplitNames[i])
			}
			out = append(out, &splitText{name: SplitNames[i], raw: data, segs: segs, ranges: rangesOf(segs, 0, int64(len(data)))})
		}
		return out, changed, nil
	}
	data, segs, changed, err := concat(files[0], needUTF8, enc, invalid)
	if err != nil {
		return nil, 0, err
	}
	n := int64(len(data))
	if n == 0 {
		return nil, 0, fmt.Errorf("%s: empty input", strings.Join(files[0], ", "))
	}
	cut := func(f float64) int64 {
		b := min(int64(f*float64(n)+0.5), n)
		for b < n && !utf8.RuneStart(data[b]) {
			b++
		}
		return b
	}
	cuts := [4]int64{0, cut(frac[0]), cut(frac[0] + frac[1]), n}
	if frac[2] == 0 {
		cuts[2] = n
	}
	for i, name := range SplitNames {
		if frac[i] == 0 {
			continue
		}
		a, b := cuts[i], cuts[i+1]
		if a >= b {
			return nil, 0, fmt.Errorf("%s: split %s is empty: %d bytes of text are too few for the split %g,%g,%g",
				strings.Join(files[0], ", "), name, n, frac[0], frac[1], frac[2])
		}
		out = append(out, &splitText{name: name, raw: data[a:b], segs: segs, ranges: rangesOf(segs, a, b)})
	}
	return out, changed, nil
}

// concat reads files, turns each into UTF-8 (enc, invalid) and joins their text. It also
// returns how many invalid sequences the policy changed.
func concat(files []string, needUTF8 bool, enc, invalid string) ([]byte, []segment, int64, error) {
	var all []byte
	var segs []segment
	var changed int64
	for _, f := range files {
		data, err := readInput(f, "")
		if err != nil {
			return nil, nil, 0, err
		}
		data, n, err := toUTF8(data, enc, invalid)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("%s: decoding %s: %w", f, enc, err)
		}
		changed += n
		if needUTF8 {
			if err := tokenize.CheckUTF8(data); err != nil {
				return nil, nil, 0, utf8Error(f, err)
			}
		}
		segs = append(segs, segment{path: f, start: int64(len(all)), size: int64(len(data))})
		if len(files) == 1 {
			all = data
		} else {
			all = append(all, data...)
		}
	}
	return all, segs, changed, nil
}

func utf8Error(path string, err error) error {
	var ue *tokenize.InvalidUTF8Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: invalid UTF-8 at byte offset %d (the char and tokenizer vocabularies need UTF-8: --encoding latin-1 or cp1252 reads such text, --invalid replace or skip mends stray bytes, --vocab byte takes any bytes)", path, ue.Offset)
	}
	return fmt.Errorf("%s: %w", path, err)
}

func describeRanges(rs []SourceRange) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%s bytes %d-%d", r.Path, r.Offset, r.Offset+r.Length))
	}
	return strings.Join(parts, ", ")
}

// dropNewlines returns text without '\n' bytes and how many were dropped.
func dropNewlines(text []byte) ([]byte, int64) {
	n := bytes.Count(text, []byte{'\n'})
	if n == 0 {
		return text, 0
	}
	out := make([]byte, 0, len(text)-n)
	for len(text) > 0 {
		i := bytes.IndexByte(text, '\n')
		if i < 0 {
			out = append(out, text...)
			break
		}
		out = append(out, text[:i]...)
		text = text[i+1:]
	}
	return out, int64(n)
}

// charSetOf collects the characters of a split's text in parallel.
func charSetOf(s *splitText, workers int) (*tokenize.CharSet, error) {
	pieces := runeChunks(s.text, workers)
	sets := make([]tokenize.CharSet, len(pieces))
	errs := make([]error, len(pieces))
	var wg sync.WaitGroup
	for i, p := range pieces {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = sets[i].Add(p)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("split %s (%s): piece %d: %w", s.name, describeRanges(s.ranges), i, err)
		}
		if i > 0 {
			sets[0].Merge(&sets[i])
		}
	}
	return &sets[0], nil
}

// runeChunks cuts text into n pieces at character boundaries.
func runeChunks(text []byte, n int) [][]byte {
	var out [][]byte
	for n > 1 && len(text) > 0 {
		c := len(text) / n
		for c < len(text) && !utf8.RuneStart(text[c]) {
			c++
		}
		out = append(out, text[:c])
		text = text[c:]
		n--
	}
	return append(out, text)
}

// advanceRunes returns the byte offset after n characters of text (or len(text)).
// Invalid bytes count as one character each.
func advanceRunes(text []byte, n int) int {
	i := 0
	for n > 0 && i < len(text) {
		if n >= 8 && i+8 <= len(text) && binary.LittleEndian.Uint64(text[i:])&0x8080808080808080 == 0 {
			i += 8
			n -= 8
			continue
		}
		if text[i] < utf8.RuneSelf {
			i++
		} else {
			_, size := utf8.DecodeRune(text[i:])
			i += size
		}
		n--
	}
	return i
}
