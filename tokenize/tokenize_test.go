package tokenize

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"unicode/utf8"
)

func TestByteRoundTrip(t *testing.T) {
	in := []byte("any bytes \x00\xff\xfe, not UTF-8\n")
	var v Vocab = Byte{}
	ids, err := v.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != len(in) || ids[10] != 0 || ids[11] != 255 {
		t.Fatalf("ids %v", ids)
	}
	if got := v.Decode(ids); !bytes.Equal(got, in) {
		t.Fatalf("decode %q, want %q", got, in)
	}
	for _, w := range []int{1, 2, 4} {
		packed, unk, err := Byte{}.AppendPacked(nil, w, in)
		if err != nil || unk != 0 || len(packed) != w*len(in) {
			t.Fatalf("width %d: %d bytes, unk %d, err %v", w, len(packed), unk, err)
		}
	}
}

func TestCharVocab(t *testing.T) {
	var cs CharSet
	if err := cs.Add([]byte("héllo wörld\n")); err != nil {
		t.Fatal(err)
	}
	c := cs.Vocab()
	want := []rune("héllo wörld\n")
	slices.Sort(want)
	want = slices.Compact(want)
	if !slices.Equal(c.Chars(), want) {
		t.Fatalf("chars %q, want %q", string(c.Chars()), string(want))
	}
	if c.Size() != len(want)+1 || c.Unk() != len(want) {
		t.Fatalf("size %d unk %d", c.Size(), c.Unk())
	}
	ids, unk, err := c.EncodeCount(nil, []byte("hél, wörld™"))
	if err != nil {
		t.Fatal(err)
	}
	if unk != 2 { // ',' and '™'
		t.Fatalf("unk %d, want 2", unk)
	}
	if got := string(c.Decode(ids)); got != "hél\ufffd wörld\ufffd" {
		t.Fatalf("decode %q", got)
	}
	packed, unk2, err := c.AppendPacked(nil, 1, []byte("hél, wörld™"))
	if err != nil || unk2 != unk || len(packed) != len(ids) {
		t.Fatalf("packed %d bytes unk %d err %v", len(packed), unk2, err)
	}
	for i, id := range ids {
		if uint32(packed[i]) != id {
			t.Fatalf("packed[%d] = %d, want %d", i, packed[i], id)
		}
	}
}

func TestCharInvalidUTF8(t *testing.T) {
	var cs CharSet
	err := cs.Add([]byte("ok é \xc3("))
	var ue *InvalidUTF8Error
	if !errors.As(err, &ue) || ue.Offset != 6 {
		t.Fatalf("err %v, want invalid UTF-8 at offset 6", err)
	}
	c, _ := NewChar([]rune("abc"))
	if _, err := c.Encode([]byte("ab\xffc")); !errors.As(err, &ue) || ue.Offset != 2 {
		t.Fatalf("encode err %v, want offset 2", err)
	}
	if err := CheckUTF8([]byte("aé\xed\xa0\x80")); !errors.As(err, &ue) || ue.Offset != 3 {
		t.Fatalf("surrogate: %v, want offset 3", err) // UTF-8 encoded surrogates are invalid
	}
}

func TestCharWide(t *testing.T) {
	var chars []rune
	for r := rune(0x4e00); r < 0x4e00+300; r++ {
		chars = append(chars, r)
	}
	c, err := NewChar(chars)
	if err != nil {
		t.Fatal(err)
	}
	if Width(c.Size()) != 2 {
		t.Fatalf("width %d", Width(c.Size()))
	}
	text := []byte(string(chars[:10]) + "x")
	if _, _, err := c.AppendPacked(nil, 1, text); err == nil {
		t.Fatal("1-byte packing of 301 ids: no error")
	}
	packed, unk, err := c.AppendPacked(nil, 2, text)
	if err != nil || unk != 1 || len(packed) != 22 || packed[20] != byte(c.Unk()) || packed[21] != byte(c.Unk()>>8) {
		t.Fatalf("packed %v unk %d err %v", packed, unk, err)
	}
}

func TestSpecRoundTrip(t *testing.T) {
	c, _ := NewChar([]rune("zyx\x00é"))
	for _, v := range []Vocab{Byte{}, c} {
		got, err := FromSpec(v.Spec(), "")
		if err != nil {
			t.Fatalf("%s: %v", v.Kind(), err)
		}
		if got.Kind() != v.Kind() || got.Size() != v.Size() {
			t.Fatalf("%s: got %s/%d", v.Kind(), got.Kind(), got.Size())
		}
		text := []byte("xyz\x00é")
		a, _ := v.Encode(text)
		b, _ := got.Encode(text)
		if !slices.Equal(a, b) {
			t.Fatalf("%s: ids differ", v.Kind())
		}
	}
	bad := c.Spec()
	bad.Chars = "ba"
	if _, err := FromSpec(bad, ""); err == nil {
		t.Fatal("unordered chars: no error")
	}
	if _, err := FromSpec(Spec{Kind: "words", Size: 3}, ""); err == nil {
		t.Fatal("unknown kind: no error")
	}
}

func TestWidth(t *testing.T) {
	for _, c := range []struct{ size, w int }{{1, 1}, {256, 1}, {257, 2}, {65536, 2}, {65537, 4}} {
		if got := Width(c.size); got != c.w {
			t.Errorf("Width(%d) = %d, want %d", c.size, got, c.w)
		}
	}
}

func BenchmarkCharAppendPacked(b *testing.B) {
	text := bytes.Repeat([]byte("The quick brown fox jumps over the lazy dog; ça va. "), 20000)
	var cs CharSet
	cs.Add(text)
	c := cs.Vocab()
	b.SetBytes(int64(len(text)))
	var dst []byte
	for b.Loop() {
		dst, _, _ = c.AppendPacked(dst[:0], 1, text)
	}
	if utf8.RuneCount(text) != len(dst) {
		b.Fatal("count")
	}
}
