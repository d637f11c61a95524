package refckpt

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// The reference's special tokens.
const (
	UnkToken = "<unk>"
	EOSToken = "<eos>"
)

// maxLineBytes bounds one line of a reference data file.
const maxLineBytes = 1 << 30

// forEachLine calls f with every line of r as Python's text mode reads it (universal
// newlines: \n, \r\n and \r end a line; a last line without a newline counts).
func forEachLine(r io.Reader, f func(line string) error) error {
	br := bufio.NewReaderSize(r, 1<<16)
	var cur bytes.Buffer
	flush := func() error {
		s := cur.String()
		cur.Reset()
		return f(s)
	}
	for {
		b, err := br.ReadByte()
		if err == io.EOF {
			if cur.Len() > 0 {
				return flush()
			}
			return nil
		}
		if err != nil {
			return err
		}
		switch b {
		case '\n':
			if err := flush(); err != nil {
				return err
			}
		case '\r':
			if nb, err := br.Peek(1); err == nil && nb[0] == '\n' {
				br.ReadByte()
			}
			if err := flush(); err != nil {
				return err
			}
		default:
			if cur.Len() >= maxLineBytes {
				return fmt.Errorf("a line longer than %d bytes", maxLineBytes)
			}
			cur.WriteByte(b)
		}
	}
}

// BuildVocab returns the vocabulary that the reference's data.Corpus builds from a
// train.txt (its id order): every whitespace-separated token and <eos> (once per line,
// with or without --data-eos) counted, <unk> added first with count 0, then sorted by count,
// most frequent first, ties in reverse order of first appearance — Python's
// sorted(word2count.items(), key=count)[::-1]. <unk> therefore comes last.
func BuildVocab(train io.Reader) ([]string, error) {
	count := map[string]int{UnkToken: 0}
	order := []string{UnkToken}
	add := func(w string) {
		if _, ok := count[w]; !ok {
			order = append(order, w)
		}
		count[w]++
	}
	err := forEachLine(train, func(line string) error {
		for _, w := range strings.Fields(line) {
			add(w)
		}
		add(EOSToken)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(order, func(i, j int) bool { return count[order[i]] < count[order[j]] })
	for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
		order[i], order[j] = order[j], order[i]
	}
	return order, nil
}

// BuildVocabFile is BuildVocab on a data folder's train.txt.
func BuildVocabFile(dir string) ([]string, error) {
	f, err := os.Open(dir + "/train.txt")
	if err != nil {
		return nil, fmt.Errorf("refckpt: %v", err)
	}
	defer f.Close()
	v, err := BuildVocab(f)
	if err != nil {
		return nil, fmt.Errorf("refckpt: %s: %v", f.Name(), err)
	}
	return v, nil
}

// Tokenize returns the ids that the reference's data.Corpus gives a split: the tokens of
// every line, then <eos> when includeEOS; a token outside vocab gets <unk>'s id.
func Tokenize(r io.Reader, vocab []string, includeEOS bool) ([]int32, error) {
	ids := make(map[string]int32, len(vocab))
	for i, w := range vocab {
		ids[w] = int32(i)
	}
	unk, ok := ids[UnkToken]
	if !ok {
		return nil, fmt.Errorf("a vocabulary without %s", UnkToken)
	}
	id := func(w string) int32 {
		if i, ok := ids[w]; ok {
			return i
		}
		return unk
	}
	var out []int32
	err := forEachLine(r, func(line string) error {
		for _, w := range strings.Fields(line) {
			out = append(out, id(w))
		}
		if includeEOS {
			out = append(out, id(EOSToken))
		}
		return nil
	})
	return out, err
}

// Corpus is the reference's corpus cache (corpus.pt in its data folder).
type Corpus struct {
	Vocab              []string // idx2word
	IncludeEOS         bool
	Train, Valid, Test []int32
}

// ReadCorpus reads the reference's corpus cache, a torch.save of its data.Corpus.
func ReadCorpus(path string) (*Corpus, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("refckpt: %v", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("refckpt: %v", err)
	}
	a, root, err := load(f, st.Size(), path)
	if err != nil {
		return nil, err
	}
	obj, ok := root.(*Object)
	if !ok || obj.Class.Name != "Corpus" && obj.Class.Name != "CharCorpus" {
		return nil, a.errorf("the saved object is a %s, not the reference's data.Corpus", kind(root))
	}
	state, ok := obj.State.(*Dict)
	if !ok {
		return nil, a.errorf("corpus without state")
	}
	c := &Corpus{}
	if v, ok := state.Get("include_eos"); ok {
		c.IncludeEOS, _ = v.(bool)
	}
	dv, _ := state.Get("dictionary")
	dobj, ok := dv.(*Object)
	if !ok {
		return nil, a.errorf("corpus without a dictionary")
	}
	dstate, _ := dobj.State.(*Dict)
	if dstate == nil {
		return nil, a.errorf("dictionary without state")
	}
	lv, _ := dstate.Get("idx2word")
	l, ok := lv.(*List)
	if !ok {
		return nil, a.errorf("dictionary without an idx2word list")
	}
	for i, w := range l.Items {
		s, ok := w.(string)
		if !ok {
			return nil, a.errorf("idx2word[%d] is a %s", i, kind(w))
		}
		c.Vocab = append(c.Vocab, s)
	}
	for _, sp := range []struct {
		name string
		dst  *[]int32
	}{{"train", &c.Train}, {"valid", &c.Valid}, {"test", &c.Test}} {
		v, ok := state.Get(sp.name)
		if !ok {
			return nil, a.errorf("corpus without a %s split", sp.name)
		}
		t, ok := v.(*Tensor)
		if !ok {
			return nil, a.errorf("the %s split is a %s, not a tensor", sp.name, kind(v))
		}
		ids, err := t.Int64s()
		if err != nil {
			return nil, a.errorf("the %s split: %v", sp.name, err)
		}
		out := make([]int32, len(ids))
		for i, x := range ids {
			if x < 0 || x >= int64(len(c.Vocab)) {
				return nil, a.errorf("the %s split holds id %d, outside a vocabulary of %d", sp.name, x, len(c.Vocab))
			}
			out[i] = int32(x)
		}
		*sp.dst = out
	}
	return c, nil
}
