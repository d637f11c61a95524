// Package tokenize turns text into token ids and back for xspan's datasets.
//
// Three vocabularies implement [Vocab]:
//
//   - [Byte]: the 256 byte values, lossless for any input.
//   - [Char]: the Unicode characters of a training text in code-point order, plus one
//     <unk> id (the last) for characters the training text lacks. <unk> decodes to
//     U+FFFD, the Unicode replacement character.
//   - [HF]: a HuggingFace tokenizer.json (BPE, WordPiece, WordLevel, Unigram) loaded
//     from a local file through github.com/sugarme/tokenizer.
//
// A [Spec] is the JSON form of a vocabulary that a dataset manifest records; [FromSpec]
// rebuilds the vocabulary from it.
package tokenize

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// Kinds of vocabulary, as [Vocab.Kind] reports them and [Spec.Kind] records them.
const (
	KindByte = "byte"
	KindChar = "char"
	KindHF   = "hf"
)

// Vocab maps text to token ids and back.
type Vocab interface {
	// Kind is one of KindByte, KindChar or KindHF.
	Kind() string
	// Size is the number of ids: every id is in [0, Size).
	Size() int
	// Encode returns the ids of text. Text that the vocabulary cannot represent is an
	// error (an *InvalidUTF8Error for invalid UTF-8 in a char or hf vocabulary).
	Encode(text []byte) ([]uint32, error)
	// Decode returns the text of ids; ids out of range decode to U+FFFD.
	Decode(ids []uint32) []byte
	// Spec returns the description a manifest records.
	Spec() Spec
}

// Spec describes a vocabulary in a dataset manifest.
type Spec struct {
	Kind string `json:"kind"`
	Size int    `json:"size"`
	// Chars holds a char vocabulary's characters in id order; its <unk> id is Unk.
	Chars string `json:"chars,omitempty"`
	Unk   *int   `json:"unk,omitempty"`
	// File is an hf vocabulary's tokenizer.json, relative to the dataset folder, and
	// SHA256 its hex digest.
	File   string `json:"file,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	// Pieces, for an hf tokenizer without a pre-tokenizer, is the longest piece of text
	// it was given at once (a line, or part of a long one): see HF.Pieces.
	Pieces int `json:"pieces,omitempty"`
}

// Ref is the vocabulary's identity: its kind and a hash of the Spec (and, for an hf
// vocabulary, of its tokenizer file's digest), such as "char:1f2e3d4c5b6a7980". Two
// vocabularies with the same Ref give the same ids to the same text. A config's
// "tokenizer" key holds it, and checkpoints, resumes and evaluations compare it.
func (s Spec) Ref() string {
	js, _ := json.Marshal(s)
	if s.Kind == KindHF {
		js = append(js, s.SHA256...)
	}
	sum := sha256.Sum256(js)
	return s.Kind + ":" + hex.EncodeToString(sum[:8])
}

// Diff says how vocabulary s differs from o, for a message: kind, size, and for char
// vocabularies the characters s has that o lacks ("extra") and those it lacks
// ("missing"), or that it gives them other ids, or another <unk>; for hf ones, the
// tokenizer files' digests. It is "" when the two have the same Ref.
func (s Spec) Diff(o Spec) string {
	if s.Ref() == o.Ref() {
		return ""
	}
	var parts []string
	if s.Kind != o.Kind {
		parts = append(parts, fmt.Sprintf("kind %s, not %s", s.Kind, o.Kind))
	}
	if s.Size != o.Size {
		parts = append(parts, fmt.Sprintf("%d ids, not %d", s.Size, o.Size))
	}
	if s.Kind == KindChar && o.Kind == KindChar {
		has, lacks := runesOnlyIn(s.Chars, o.Chars), runesOnlyIn(o.Chars, s.Chars)
		if len(has) > 0 {
			parts = append(parts, "extra "+quoteRunes(has))
		}
		if len(lacks) > 0 {
			parts = append(parts, "missing "+quoteRunes(lacks))
		}
		if len(has)+len(lacks) == 0 && s.Chars != o.Chars {
			parts = append(parts, "the same characters under other ids")
		}
		if su, ou := unkText(s.Unk), unkText(o.Unk); su != ou {
			parts = append(parts, fmt.Sprintf("<unk> %s, not %s", su, ou))
		}
	}
	if s.Kind == KindHF && o.Kind == KindHF && s.SHA256 != o.SHA256 {
		parts = append(parts, fmt.Sprintf("tokenizer.json sha256 %.12s…, not %.12s…", s.SHA256, o.SHA256))
	}
	if len(parts) == 0 {
		parts = append(parts, fmt.Sprintf("identity %s, not %s", s.Ref(), o.Ref()))
	}
	return strings.Join(parts, "; ")
}

// runesOnlyIn returns the characters of a that b lacks, in a's order.
func runesOnlyIn(a, b string) []rune {
	var out []rune
	for _, r := range a {
		if !strings.ContainsRune(b, r) {
			out = append(out, r)
		}
	}
	return out
}

// quoteRunes quotes up to 12 characters, saying how many more there are.
func quoteRunes(rs []rune) string {
	const most = 12
	if len(rs) <= most {
		return fmt.Sprintf("%s %q", plural(len(rs)), string(rs))
	}
	return fmt.Sprintf("%s %q and %d more", plural(len(rs)), string(rs[:most]), len(rs)-most)
}

func plural(n int) string {
	if n == 1 {
		return "1 character"
	}
	return fmt.Sprintf("%d characters", n)
}

func unkText(unk *int) string {
	if unk == nil {
		return "none"
	}
	return fmt.Sprintf("id %d", *unk)
}

// FromSpec rebuilds the vocabulary that spec describes. Relative file names are taken
// from dir.
func FromSpec(spec Spec, dir string) (Vocab, error) {
	switch spec.Kind {
	case KindByte:
		if spec.Size != 256 {
			return nil, fmt.Errorf("byte vocabulary of size %d, want 256", spec.Size)
		}
		return Byte{}, nil
	case KindChar:
		c, err := NewChar([]rune(spec.Chars))
		if err != nil {
			return nil, err
		}
		if spec.Chars != string(c.chars) {
			return nil, errors.New("char vocabulary: characters are not in code-point order or repeat")
		}
		if c.Size() != spec.Size || spec.Unk == nil || *spec.Unk != c.Unk() {
			return nil, fmt.Errorf("char vocabulary: size %d and unk id do not match its %d characters", spec.Size, len(c.chars))
		}
		return c, nil
	case KindHF:
		if spec.File == "" {
			return nil, errors.New("hf vocabulary without a tokenizer file")
		}
		path := spec.File
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		h, err := LoadHF(path)
		if err != nil {
			return nil, err
		}
		if spec.SHA256 != "" && spec.SHA256 != h.SHA256() {
			return nil, fmt.Errorf("%s: sha256 %s, manifest says %s", path, h.SHA256(), spec.SHA256)
		}
		if spec.Size != h.Size() {
			return nil, fmt.Errorf("%s: %d ids, manifest says %d", path, h.Size(), spec.Size)
		}
		return h, nil
	}
	return nil, fmt.Errorf("unknown vocabulary kind %q", spec.Kind)
}

// InvalidUTF8Error reports invalid UTF-8 at a byte offset of the encoded text.
type InvalidUTF8Error struct {
	Offset int64
}

func (e *InvalidUTF8Error) Error() string {
	return fmt.Sprintf("invalid UTF-8 at byte offset %d", e.Offset)
}

// CheckUTF8 returns nil if text is valid UTF-8, else an *InvalidUTF8Error at the first
// bad byte.
func CheckUTF8(text []byte) error {
	if utf8.Valid(text) {
		return nil
	}
	for i := 0; i < len(text); {
		r, n := utf8.DecodeRune(text[i:])
		if r == utf8.RuneError && n <= 1 {
			return &InvalidUTF8Error{Offset: int64(i)}
		}
		i += n
	}
	return nil
}

// Byte is the vocabulary of the 256 byte values: id i is byte i.
type Byte struct{}

func (Byte) Kind() string { return KindByte }
func (Byte) Size() int    { return 256 }
func (Byte) Spec() Spec   { return Spec{Kind: KindByte, Size: 256} }

// Encode returns one id per byte; it never fails.
func (Byte) Encode(text []byte) ([]uint32, error) {
	ids := make([]uint32, len(text))
	for i, c := range text {
		ids[i] = uint32(c)
	}
	return ids, nil
}

// Decode returns one byte per id; ids above 255 decode to U+FFFD.
func (Byte) Decode(ids []uint32) []byte {
	out := make([]byte, 0, len(ids))
	for _, id := range ids {
		if id > 255 {
			out = utf8.AppendRune(out, utf8.RuneError)
			continue
		}
		out = append(out, byte(id))
	}
	return out
}
