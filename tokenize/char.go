package tokenize

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"unicode/utf8"
)

// Char is a vocabulary of Unicode characters: ids 0..n-1 are its characters in
// code-point order and id n is <unk>, which stands for every other character.
type Char struct {
	chars []rune
	ascii [128]int32 // id of each ASCII character, -1 if absent
	other map[rune]uint32
}

// NewChar returns the char vocabulary of chars (sorted and deduplicated here).
func NewChar(chars []rune) (*Char, error) {
	cs := slices.Clone(chars)
	slices.Sort(cs)
	cs = slices.Compact(cs)
	c := &Char{chars: cs, other: make(map[rune]uint32)}
	for i := range c.ascii {
		c.ascii[i] = -1
	}
	for i, r := range cs {
		if !utf8.ValidRune(r) {
			return nil, fmt.Errorf("char vocabulary: invalid character %U", r)
		}
		if r < utf8.RuneSelf {
			c.ascii[r] = int32(i)
		} else {
			c.other[r] = uint32(i)
		}
	}
	return c, nil
}

func (c *Char) Kind() string { return KindChar }

// Size is the number of characters plus one for <unk>.
func (c *Char) Size() int { return len(c.chars) + 1 }

// Unk is the id of <unk>, the last id.
func (c *Char) Unk() int { return len(c.chars) }

// Chars returns the characters in id order (without <unk>).
func (c *Char) Chars() []rune { return slices.Clone(c.chars) }

func (c *Char) Spec() Spec {
	unk := c.Unk()
	return Spec{Kind: KindChar, Size: c.Size(), Chars: string(c.chars), Unk: &unk}
}

// Encode returns one id per character; characters outside the vocabulary get the
// <unk> id. Invalid UTF-8 is an *InvalidUTF8Error.
func (c *Char) Encode(text []byte) ([]uint32, error) {
	ids, _, err := c.EncodeCount(make([]uint32, 0, len(text)), text)
	return ids, err
}

// EncodeCount appends the ids of text to dst and also returns how many of them are
// <unk>.
func (c *Char) EncodeCount(dst []uint32, text []byte) ([]uint32, int, error) {
	unk := uint32(c.Unk())
	n := 0
	for i := 0; i < len(text); {
		b := text[i]
		if b < utf8.RuneSelf {
			id := c.ascii[b]
			if id < 0 {
				dst = append(dst, unk)
				n++
			} else {
				dst = append(dst, uint32(id))
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(text[i:])
		if r == utf8.RuneError && size <= 1 {
			return dst, n, &InvalidUTF8Error{Offset: int64(i)}
		}
		id, ok := c.other[r]
		if !ok {
			id = unk
			n++
		}
		dst = append(dst, id)
		i += size
	}
	return dst, n, nil
}

// AppendPacked appends the ids of text to dst as little-endian integers of width
// bytes (1, 2 or 4, enough for Size) and returns how many ids are <unk>.
func (c *Char) AppendPacked(dst []byte, width int, text []byte) ([]byte, int, error) {
	if width < Width(c.Size()) {
		return dst, 0, fmt.Errorf("char vocabulary of %d ids does not fit %d-byte ids", c.Size(), width)
	}
	if width == 1 {
		return c.appendPacked1(dst, text)
	}
	unk := uint32(c.Unk())
	n := 0
	var tmp [4]byte
	for i := 0; i < len(text); {
		b := text[i]
		var id uint32
		if b < utf8.RuneSelf {
			if a := c.ascii[b]; a >= 0 {
				id = uint32(a)
			} else {
				id = unk
				n++
			}
			i++
		} else {
			r, size := utf8.DecodeRune(text[i:])
			if r == utf8.RuneError && size <= 1 {
				return dst, n, &InvalidUTF8Error{Offset: int64(i)}
			}
			var ok bool
			if id, ok = c.other[r]; !ok {
				id = unk
				n++
			}
			i += size
		}
		switch width {
		case 1:
			dst = append(dst, byte(id))
		case 2:
			dst = binary.LittleEndian.AppendUint16(dst, uint16(id))
		default:
			binary.LittleEndian.PutUint32(tmp[:], id)
			dst = append(dst, tmp[:]...)
		}
	}
	return dst, n, nil
}

// appendPacked1 is AppendPacked for 1-byte ids, with a fast path for ASCII.
func (c *Char) appendPacked1(dst []byte, text []byte) ([]byte, int, error) {
	// With 1-byte ids every <unk> is the byte unk (no character has that id), so
	// <unk>s are counted at the end rather than in the loop.
	var ids [256]byte // indexed by any byte: no bounds checks
	unk := c.Unk()
	for i, id := range c.ascii {
		if id < 0 {
			ids[i] = byte(unk)
		} else {
			ids[i] = byte(id)
		}
	}
	start := len(dst)
	dst = slices.Grow(dst, len(text))[:start+len(text)] // at most one id a byte
	out := dst[start:]
	k := 0
	for i := 0; i < len(text); {
		if i+8 <= len(text) && k+8 <= len(out) {
			if w := binary.LittleEndian.Uint64(text[i:]); w&0x8080808080808080 == 0 {
				t, o := text[i:i+8:i+8], out[k:k+8:k+8]
				o[0], o[1], o[2], o[3] = ids[t[0]], ids[t[1]], ids[t[2]], ids[t[3]]
				o[4], o[5], o[6], o[7] = ids[t[4]], ids[t[5]], ids[t[6]], ids[t[7]]
				i += 8
				k += 8
				continue
			}
		}
		b := text[i]
		if b < utf8.RuneSelf {
			out[k] = ids[b]
			k++
			i++
			continue
		}
		r, size := utf8.DecodeRune(text[i:])
		if r == utf8.RuneError && size <= 1 {
			return dst[:start+k], 0, &InvalidUTF8Error{Offset: int64(i)}
		}
		id, ok := c.other[r]
		if !ok {
			id = uint32(unk)
		}
		out[k] = byte(id)
		k++
		i += size
	}
	return dst[:start+k], bytes.Count(out[:k], []byte{byte(unk)}), nil
}

// Decode returns the characters of ids; <unk> and ids out of range decode to U+FFFD.
func (c *Char) Decode(ids []uint32) []byte {
	out := make([]byte, 0, len(ids))
	for _, id := range ids {
		if int(id) >= len(c.chars) {
			out = utf8.AppendRune(out, utf8.RuneError)
			continue
		}
		out = utf8.AppendRune(out, c.chars[id])
	}
	return out
}

// CharSet collects the characters of a text to build a [Char] vocabulary from. The
// zero value is empty and ready to use.
type CharSet struct {
	ascii [128]bool
	other map[rune]struct{}
}

// Add adds the characters of text. Invalid UTF-8 is an *InvalidUTF8Error.
func (s *CharSet) Add(text []byte) error {
	// Pass 1 marks every byte value, branch-free; pass 2 decodes only where bytes are
	// not ASCII, skipping ASCII eight bytes at a time.
	var seen [256]bool
	for _, b := range text {
		seen[b] = true
	}
	nonASCII := false
	for b := 0; b < utf8.RuneSelf; b++ {
		s.ascii[b] = s.ascii[b] || seen[b]
	}
	for b := utf8.RuneSelf; b < 256; b++ {
		nonASCII = nonASCII || seen[b]
	}
	if !nonASCII {
		return nil
	}
	for i := 0; i < len(text); {
		if i+8 <= len(text) && binary.LittleEndian.Uint64(text[i:])&0x8080808080808080 == 0 {
			i += 8
			continue
		}
		b := text[i]
		if b < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRune(text[i:])
		if r == utf8.RuneError && size <= 1 {
			return &InvalidUTF8Error{Offset: int64(i)}
		}
		if s.other == nil {
			s.other = make(map[rune]struct{})
		}
		s.other[r] = struct{}{}
		i += size
	}
	return nil
}

// Merge adds the characters of o.
func (s *CharSet) Merge(o *CharSet) {
	for i, ok := range o.ascii {
		s.ascii[i] = s.ascii[i] || ok
	}
	for r := range o.other {
		if s.other == nil {
			s.other = make(map[rune]struct{})
		}
		s.other[r] = struct{}{}
	}
}

// Len is the number of distinct characters.
func (s *CharSet) Len() int {
	n := len(s.other)
	for _, ok := range s.ascii {
		if ok {
			n++
		}
	}
	return n
}

// Vocab returns the char vocabulary of the collected characters.
func (s *CharSet) Vocab() *Char {
	chars := make([]rune, 0, s.Len())
	for i, ok := range s.ascii {
		if ok {
			chars = append(chars, rune(i))
		}
	}
	for r := range s.other {
		chars = append(chars, r)
	}
	c, _ := NewChar(chars) // only valid runes were added
	return c
}

// Width returns the bytes per id (1, 2 or 4) that a vocabulary of size ids needs.
func Width(size int) int {
	switch {
	case size <= 1<<8:
		return 1
	case size <= 1<<16:
		return 2
	}
	return 4
}

// AppendPacked appends text as 1-byte ids to dst; a Byte vocabulary has no <unk>.
func (Byte) AppendPacked(dst []byte, width int, text []byte) ([]byte, int, error) {
	if width == 1 {
		return append(dst, text...), 0, nil
	}
	for _, b := range text {
		switch width {
		case 2:
			dst = binary.LittleEndian.AppendUint16(dst, uint16(b))
		default:
			dst = binary.LittleEndian.AppendUint32(dst, uint32(b))
		}
	}
	return dst, 0, nil
}

// Packer is implemented by vocabularies that encode one id per character or byte
// straight into packed little-endian ids (Byte and *Char); it returns the number of
// <unk> ids appended.
type Packer interface {
	AppendPacked(dst []byte, width int, text []byte) ([]byte, int, error)
}
