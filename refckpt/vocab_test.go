package refckpt

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestBuildVocabMatchesReference(t *testing.T) {
	v, err := BuildVocabFile(filepath.Join("testdata", "data"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"post", "pre"} {
		if fx := readFixture(t, name); !slices.Equal(v, fx.Vocab) {
			t.Errorf("%s: vocabulary\n%q\nwant\n%q", name, v, fx.Vocab)
		}
	}
	if v[len(v)-1] != UnkToken {
		t.Errorf("<unk> is not last: %q", v)
	}
}

func TestBuildVocabTies(t *testing.T) {
	// Counts a:2 b:1 c:1 <eos>:2 <unk>:0; ties in reverse order of first appearance.
	v, err := BuildVocab(strings.NewReader("a b\r\nc a"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{EOSToken, "a", "c", "b", UnkToken}; !slices.Equal(v, want) {
		t.Errorf("got %q, want %q", v, want)
	}
}

func TestTokenizeMatchesFixtureAndCorpusCache(t *testing.T) {
	vocab := readFixture(t, "post").Vocab
	valid, err := os.ReadFile(filepath.Join("testdata", "data", "valid.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		eos  bool
	}{{"post", false}, {"pre", true}} {
		ids, err := Tokenize(strings.NewReader(string(valid)), vocab, tc.eos)
		if err != nil {
			t.Fatal(err)
		}
		fx := readFixture(t, tc.name)
		for b, bl := range fx.Blocks {
			for j := range bl.Inputs {
				if int(ids[8*b+j]) != bl.Inputs[j] || int(ids[8*b+j+1]) != bl.Targets[j] {
					t.Fatalf("%s: block %d token %d: ids %d→%d, want %d→%d", tc.name, b, j, ids[8*b+j], ids[8*b+j+1], bl.Inputs[j], bl.Targets[j])
				}
			}
		}
	}
	c, err := ReadCorpus(filepath.Join("testdata", "corpus-eos.pt"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.IncludeEOS || !slices.Equal(c.Vocab, vocab) {
		t.Errorf("corpus cache: eos %v, vocabulary %q", c.IncludeEOS, c.Vocab)
	}
	for _, sp := range []struct {
		file string
		ids  []int32
	}{{"train.txt", c.Train}, {"valid.txt", c.Valid}, {"test.txt", c.Test}} {
		f, err := os.Open(filepath.Join("testdata", "data", sp.file))
		if err != nil {
			t.Fatal(err)
		}
		ids, err := Tokenize(f, vocab, true)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids, sp.ids) {
			t.Errorf("%s: Tokenize gives %d ids that differ from the corpus cache's %d", sp.file, len(ids), len(sp.ids))
		}
	}
}

func TestCharVocabMap(t *testing.T) {
	vocab := readFixture(t, "post").Vocab
	m, err := CharVocabMap(vocab)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Exact || len(m.RefID) != len(vocab) || len(m.Chars) != len(vocab)-1 {
		t.Fatalf("map %+v", m)
	}
	if !slices.IsSorted(m.Chars) || m.Chars[0] != '\n' || vocab[m.RefID[0]] != EOSToken || vocab[m.RefID[len(m.RefID)-1]] != UnkToken {
		t.Errorf("chars %q, first ref %q", string(m.Chars), vocab[m.RefID[0]])
	}
	for x, r := range m.Chars {
		if b, _ := tokenByte(vocab[m.RefID[x]]); rune(b) != r {
			t.Errorf("xspan id %d (%q) maps to reference token %q", x, r, vocab[m.RefID[x]])
		}
	}
	for _, bad := range [][]string{
		{"104", "x", UnkToken},            // not a decimal byte
		{"104", "200", UnkToken},          // not ASCII
		{"104", "10", EOSToken, UnkToken}, // two newlines
		{"104", "105"},                    // no <unk>
		{"104", "0104", UnkToken},         // not canonical
	} {
		if _, err := CharVocabMap(bad); err == nil {
			t.Errorf("CharVocabMap(%q) accepted", bad)
		}
	}
	bm, err := ByteVocabMap(vocab)
	if err != nil {
		t.Fatal(err)
	}
	if bm.Exact || bm.RefID['\n'] < 0 || vocab[bm.RefID['\n']] != EOSToken || bm.RefID[0] != -1 || vocab[bm.RefID['a']] != "97" {
		t.Errorf("byte map %v", bm.RefID)
	}
}
