package dataset

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"xspan/tokenize"
)

// TestWriteIDs writes splits given as ids and reads them back: the same ids, the
// vocabulary, the newline policy and <unk> counted; an id outside the vocabulary is
// refused and leaves no folder.
func TestWriteIDs(t *testing.T) {
	v, err := tokenize.NewChar([]rune("\nab"))
	if err != nil {
		t.Fatal(err)
	}
	train := []uint32{1, 2, 0, 3, 1, 1, 2}
	valid := []uint32{2, 1, 3}
	dir := filepath.Join(t.TempDir(), "data")
	splits := []IDSplit{{Name: "train", IDs: train, Bytes: 7, Chars: 7}, {Name: "valid", IDs: valid, Bytes: 3, Chars: 3, DroppedNewlines: 2}}
	if _, err := WriteIDs(context.Background(), dir, "reference", v, NewlinesDrop, splits, WithShardTokens(3)); err != nil {
		t.Fatal(err)
	}
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range splits {
		got, err := r.Tokens(s.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, s.IDs) {
			t.Errorf("split %s: %v, want %v", s.Name, got, s.IDs)
		}
	}
	m := r.Manifest()
	rv, _ := r.Vocab()
	if rv.Spec().Ref() != v.Spec().Ref() || m.Newlines != NewlinesDrop || m.Input != "reference" {
		t.Errorf("manifest: vocabulary %v, newlines %s, input %s", rv.Spec(), m.Newlines, m.Input)
	}
	if sp, _ := m.Split("train"); sp.Unk != 1 || len(sp.Shards) != 3 || sp.Source.Checksum == "" {
		t.Errorf("train: unk %d, %d shards, checksum %q; want 1, 3 and one", sp.Unk, len(sp.Shards), sp.Source.Checksum)
	}
	bad := filepath.Join(t.TempDir(), "bad")
	_, err = WriteIDs(context.Background(), bad, "reference", v, NewlinesKeep, []IDSplit{{Name: "train", IDs: []uint32{0, 4}}})
	if err == nil || !strings.Contains(err.Error(), "token 1 is id 4, outside the vocabulary of 4") {
		t.Errorf("an id outside the vocabulary: %v", err)
	}
	if _, err := Open(bad); err == nil {
		t.Errorf("a refused WriteIDs left a dataset")
	}
}
