package dataset

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// Input encodings that prep reads (--encoding), and what it does with bytes that are not
// valid UTF-8 (--invalid). The text is turned into UTF-8 before anything else; the
// manifest records both, and how many sequences the policy changed.
const (
	EncodingUTF8    = "utf-8"
	EncodingLatin1  = "latin-1" // ISO 8859-1: every byte is the code point of its value
	EncodingCP1252  = "cp1252"  // Windows-1252: Latin-1 with printable characters in 0x80–0x9F
	InvalidError    = "error"   // refuse the input, naming the file and the offset
	InvalidReplace  = "replace" // each invalid sequence becomes U+FFFD
	InvalidSkip     = "skip"    // each invalid sequence is dropped
	replacementRune = '\uFFFD'
)

// WithEncoding sets the input text's encoding: "utf-8" (the default), "latin-1" or
// "cp1252".
func WithEncoding(enc string) Option {
	return func(c *config) error {
		switch e := normalizeEncoding(enc); e {
		case EncodingUTF8, EncodingLatin1, EncodingCP1252:
			c.encoding = e
			return nil
		}
		return fmt.Errorf("encoding %q: want utf-8, latin-1 or cp1252", enc)
	}
}

// WithInvalid sets what prep does with invalid UTF-8: "error" (the default), "replace"
// (U+FFFD) or "skip".
func WithInvalid(policy string) Option {
	return func(c *config) error {
		switch policy {
		case InvalidError, InvalidReplace, InvalidSkip:
			c.invalid = policy
			return nil
		}
		return fmt.Errorf("invalid-UTF-8 policy %q: want error, replace or skip", policy)
	}
}

func normalizeEncoding(e string) string {
	switch strings.ToLower(strings.ReplaceAll(e, "_", "-")) {
	case "", "utf-8", "utf8":
		return EncodingUTF8
	case "latin-1", "latin1", "iso-8859-1", "iso8859-1":
		return EncodingLatin1
	case "cp1252", "windows-1252":
		return EncodingCP1252
	}
	return e
}

// toUTF8 turns one input's bytes into UTF-8 text: decoded from enc, then, for UTF-8
// input, with invalid sequences replaced or dropped as policy says (InvalidError leaves
// the text as it is, for the caller's check). It returns the text and how many invalid
// sequences it changed.
func toUTF8(data []byte, enc, policy string) ([]byte, int64, error) {
	switch enc {
	case EncodingLatin1, EncodingCP1252:
		cm := charmap.ISO8859_1
		if enc == EncodingCP1252 {
			cm = charmap.Windows1252
		}
		out, err := cm.NewDecoder().Bytes(data)
		return out, 0, err
	}
	if policy == InvalidError || utf8.Valid(data) {
		return data, 0, nil
	}
	out := make([]byte, 0, len(data))
	var n int64
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		if r == utf8.RuneError && size <= 1 {
			n++
			if policy == InvalidReplace {
				out = utf8.AppendRune(out, replacementRune)
			}
			data = data[1:]
			continue
		}
		out = append(out, data[:size]...)
		data = data[size:]
	}
	return out, n, nil
}
