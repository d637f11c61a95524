package generate

import (
	"strings"
	"testing"
)

func TestStopper(t *testing.T) {
	s := stopper{seqs: []string{"\n\n", "END"}}
	var out []string
	for _, piece := range []string{"ab", "c\n", "x\n", "E", "N", "d", "EN", "D!", "zz"} {
		got, hit := s.push(piece)
		out = append(out, got)
		if hit {
			break
		}
	}
	// "\n" and "E"/"EN" wait until the next piece shows they begin no stop sequence.
	want := []string{"ab", "c", "\nx", "\n", "", "ENd", "", ""}
	if strings.Join(out, "|") != strings.Join(want, "|") {
		t.Errorf("pieces %q, want %q", out, want)
	}
	s = stopper{seqs: []string{"é!"}} // held text ends on a character boundary
	if got, _ := s.push("aé"); got != "a" || s.flush() != "é" {
		t.Errorf("multi-byte: %q", got)
	}
	if got, hit := (&stopper{}).push("anything"); got != "anything" || hit {
		t.Errorf("no stop sequences: %q %v", got, hit)
	}
}
