package generate

import (
	"unicode/utf8"

	"xspan/tokenize"
)

// A TextStream decodes tokens to text one at a time. Byte vocabularies may split a
// multi-byte UTF-8 character across tokens: the stream holds back an incomplete sequence
// until the tokens that complete it arrive, so every piece it returns is valid UTF-8.
// Bytes that can never form a character come out as U+FFFD.
type TextStream struct {
	vocab   tokenize.Vocab
	pending []byte
	id      [1]uint32
}

// NewTextStream returns a stream decoding with vocab.
func NewTextStream(vocab tokenize.Vocab) *TextStream { return &TextStream{vocab: vocab} }

// Push decodes one token and returns the text that is now complete (maybe empty).
func (s *TextStream) Push(id int) string {
	s.id[0] = uint32(id)
	return s.Write(s.vocab.Decode(s.id[:]))
}

// Write adds decoded bytes and returns the text that is now complete.
func (s *TextStream) Write(b []byte) string {
	buf := append(s.pending, b...)
	out := make([]byte, 0, len(buf))
	i := 0
	for i < len(buf) {
		if buf[i] < utf8.RuneSelf {
			out = append(out, buf[i])
			i++
			continue
		}
		r, size := utf8.DecodeRune(buf[i:])
		if r == utf8.RuneError && size <= 1 {
			if !utf8.FullRune(buf[i:]) {
				break // a valid start of a character whose rest has not come yet
			}
			out = utf8.AppendRune(out, utf8.RuneError)
			i++
			continue
		}
		out = append(out, buf[i:i+size]...)
		i += size
	}
	s.pending = append(s.pending[:0], buf[i:]...)
	return string(out)
}

// Flush returns what is held back, as U+FFFD: the stream ended inside a character.
func (s *TextStream) Flush() string {
	if len(s.pending) == 0 {
		return ""
	}
	s.pending = s.pending[:0]
	return string(utf8.RuneError)
}

// Pending is the number of bytes held back.
func (s *TextStream) Pending() int { return len(s.pending) }
