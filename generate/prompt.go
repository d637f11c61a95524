package generate

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"xspan/tokenize"
)

// UnkPolicy says what to do with prompt characters outside a char vocabulary.
type UnkPolicy string

const (
	// UnkError refuses such a prompt with an error naming the characters (the default).
	UnkError UnkPolicy = "error"
	// UnkReplace maps them to <unk> and returns a warning.
	UnkReplace UnkPolicy = "replace"
)

// ParseUnkPolicy parses "error" (or "") and "replace".
func ParseUnkPolicy(s string) (UnkPolicy, error) {
	switch UnkPolicy(s) {
	case "", UnkError:
		return UnkError, nil
	case UnkReplace:
		return UnkReplace, nil
	}
	return "", fmt.Errorf("unknown-character policy %q: want error or replace", s)
}

// ErrEmptyPrompt is returned for a prompt without tokens: the model needs at least one
// token to predict the next. PromptTokens starts such a prompt from StartToken instead.
var ErrEmptyPrompt = errors.New("prompt is empty: the model needs at least one token to continue")

// A StartIDer is a Model that knows the token texts start from: xspan's models loaded
// from a checkpoint give its start id, the first token of the training split that the
// trainer records in the checkpoint's header (checkpoint.Header.StartID; checkpoints
// written before it was have none).
type StartIDer interface {
	StartID() (id int64, ok bool)
}

// StartToken returns the token an empty prompt starts from, so that a generation from
// nothing begins as a text does after a line break:
//
//   - a newline, where the vocabulary has "\n" as one token (a byte vocabulary always,
//     a char vocabulary whose corpus had line breaks, most tokenizers);
//   - else the model's start id, when it is a StartIDer that has one: for a model from a
//     checkpoint, the first token of its training split (with a char vocabulary prepared
//     with newlines dropped, the first character of the training text);
//   - else id 0, the fallback: a char vocabulary's lowest character (often the space),
//     a tokenizer's first token (often a special one).
func StartToken(m Model) int64 {
	v := m.Vocab()
	if ids, err := v.Encode([]byte("\n")); err == nil && len(ids) == 1 {
		if c, ok := v.(*tokenize.Char); !ok || int(ids[0]) != c.Unk() {
			return int64(ids[0])
		}
	}
	if s, ok := m.(StartIDer); ok {
		if id, ok := s.StartID(); ok && id >= 0 && id < int64(v.Size()) {
			return id
		}
	}
	return 0
}

// PromptTokens encodes a prompt as EncodePrompt does, except that a prompt without
// tokens becomes the one token StartToken names.
func PromptTokens(m Model, prompt []byte, policy UnkPolicy) (ids []int64, warning string, err error) {
	ids, warning, err = EncodePrompt(m.Vocab(), prompt, policy)
	if errors.Is(err, ErrEmptyPrompt) {
		return []int64{StartToken(m)}, "", nil
	}
	return ids, warning, err
}

// UnknownCharsError reports prompt characters that a char vocabulary lacks.
type UnknownCharsError struct {
	Chars []rune // distinct, in order of first appearance
	Count int    // occurrences
}

func (e *UnknownCharsError) Error() string {
	return fmt.Sprintf("prompt has %d character(s) outside the model's vocabulary: %s (edit them out, or map them to <unk> with --unk replace)", e.Count, quoteRunes(e.Chars))
}

func quoteRunes(rs []rune) string {
	const show = 8
	parts := make([]string, 0, min(len(rs), show)+1)
	for i, r := range rs {
		if i == show {
			parts = append(parts, fmt.Sprintf("and %d more", len(rs)-show))
			break
		}
		parts = append(parts, strconv.QuoteRune(r))
	}
	return strings.Join(parts, ", ")
}

// EncodePrompt turns a prompt into token ids. With a char vocabulary, characters it lacks
// are an *UnknownCharsError under UnkError, and become <unk> under UnkReplace with a
// one-line warning. Invalid UTF-8 is an error for char and hf vocabularies; a byte
// vocabulary takes any bytes. An empty result is ErrEmptyPrompt.
func EncodePrompt(vocab tokenize.Vocab, prompt []byte, policy UnkPolicy) (ids []int64, warning string, err error) {
	raw, err := vocab.Encode(prompt)
	if err != nil {
		return nil, "", fmt.Errorf("prompt: %w", err)
	}
	if len(raw) == 0 {
		return nil, "", ErrEmptyPrompt
	}
	if c, ok := vocab.(*tokenize.Char); ok {
		unk := uint32(c.Unk())
		var bad UnknownCharsError
		seen := map[rune]bool{}
		rest := prompt
		for _, id := range raw { // a char vocabulary gives one id per character
			r, size := utf8.DecodeRune(rest)
			rest = rest[size:]
			if id == unk {
				bad.Count++
				if !seen[r] {
					seen[r] = true
					bad.Chars = append(bad.Chars, r)
				}
			}
		}
		if bad.Count > 0 {
			if policy != UnkReplace {
				return nil, "", &bad
			}
			warning = fmt.Sprintf("warning: %d prompt character(s) outside the vocabulary became <unk>: %s", bad.Count, quoteRunes(bad.Chars))
		}
	}
	ids = make([]int64, len(raw))
	for i, id := range raw {
		ids[i] = int64(id)
	}
	return ids, warning, nil
}
