package generate

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"xspan/tokenize"
)

func TestTextStreamSplitsNoCharacter(t *testing.T) {
	text := "aé€😀 z\n"
	s := NewTextStream(tokenize.Byte{})
	var got strings.Builder
	var pieces []string
	for _, b := range []byte(text) {
		p := s.Push(int(b))
		if !utf8.ValidString(p) {
			t.Fatalf("piece %q is not valid UTF-8", p)
		}
		pieces = append(pieces, p)
		got.WriteString(p)
	}
	got.WriteString(s.Flush())
	if got.String() != text {
		t.Errorf("stream gave %q, want %q", got.String(), text)
	}
	// 'a', then é held for one byte, € for two, 😀 for three.
	want := []string{"a", "", "é", "", "", "€", "", "", "", "😀", " ", "z", "\n"}
	if strings.Join(pieces, "|") != strings.Join(want, "|") {
		t.Errorf("pieces %q, want %q", pieces, want)
	}
}

func TestTextStreamInvalidBytes(t *testing.T) {
	s := NewTextStream(tokenize.Byte{})
	var got strings.Builder
	for _, b := range []byte{'x', 0xff, 0xe2, 0x82, 'y', 0xc3} {
		got.WriteString(s.Push(int(b)))
	}
	if s.Pending() != 1 {
		t.Errorf("pending = %d, want 1 (the lone 0xc3)", s.Pending())
	}
	got.WriteString(s.Flush())
	// 0xff can never start a character; 0xe2 0x82 is cut short by 'y'; 0xc3 ends the stream.
	want := "x\uFFFD\uFFFD\uFFFDy\uFFFD"
	if got.String() != want {
		t.Errorf("got %q, want %q", got.String(), want)
	}
	if s.Flush() != "" {
		t.Errorf("second flush should be empty")
	}
}

func TestTextStreamChar(t *testing.T) {
	v, err := tokenize.NewChar([]rune("abé"))
	if err != nil {
		t.Fatal(err)
	}
	s := NewTextStream(v)
	ids, _ := v.Encode([]byte("béa"))
	var got strings.Builder
	for _, id := range ids {
		p := s.Push(int(id))
		if p == "" {
			t.Errorf("char token %d gave no text", id)
		}
		got.WriteString(p)
	}
	got.WriteString(s.Push(v.Unk()))
	if got.String() != "béa\uFFFD" {
		t.Errorf("got %q", got.String())
	}
}

func TestEncodePrompt(t *testing.T) {
	v, _ := tokenize.NewChar([]rune("abc "))
	ids, warn, err := EncodePrompt(v, []byte("ab c"), UnkError)
	if err != nil || warn != "" || len(ids) != 4 {
		t.Fatalf("plain prompt: %v %q %v", ids, warn, err)
	}
	_, _, err = EncodePrompt(v, []byte("abΩxΩ"), UnkError)
	var unk *UnknownCharsError
	if !errors.As(err, &unk) || unk.Count != 3 || string(unk.Chars) != "Ωx" {
		t.Fatalf("unknown characters: %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "'Ω', 'x'") || strings.Contains(msg, "\n") {
		t.Errorf("message %q should name the characters on one line", msg)
	}
	ids, warn, err = EncodePrompt(v, []byte("abΩ"), UnkReplace)
	if err != nil || ids[2] != int64(v.Unk()) || !strings.Contains(warn, "<unk>") {
		t.Errorf("replace: %v %q %v", ids, warn, err)
	}
	if _, _, err := EncodePrompt(v, nil, UnkError); err != ErrEmptyPrompt {
		t.Errorf("empty prompt: %v", err)
	}
	if _, _, err := EncodePrompt(v, []byte{'a', 0xff}, UnkError); err == nil {
		t.Errorf("invalid UTF-8 in a char prompt should fail")
	}
	ids, _, err = EncodePrompt(tokenize.Byte{}, []byte{'a', 0xff}, UnkError)
	if err != nil || len(ids) != 2 || ids[1] != 255 {
		t.Errorf("byte vocabulary takes any bytes: %v %v", ids, err)
	}
	if _, err := ParseUnkPolicy("drop"); err == nil {
		t.Errorf("ParseUnkPolicy(drop) should fail")
	}
}
