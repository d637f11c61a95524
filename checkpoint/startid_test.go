package checkpoint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/sugarme/gotch"

	"xspan/internal/torchrt"
	"xspan/lm"
)

// writeStartID writes the checkpoint of step for the test model into run, with the
// start id start (nil: none).
func writeStartID(t *testing.T, run string, step int64, start *int64) string {
	t.Helper()
	m, mem, o, v := testModel(t, 2)
	dir, err := Write(run, &State{Header: Header{Step: step, StartID: start}, Model: m, Optim: o, Memories: []*lm.Memory{mem}, Vocab: v})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// rewriteHeader edits the JSON of dir's format-2 HEADER as edit says and writes it back
// with its checksum, as another writer of the format would have written it.
func rewriteHeader(t *testing.T, dir string, edit func(map[string]any)) {
	t.Helper()
	data := mustRead(t, filepath.Join(dir, HeaderName))
	_, rest, _ := bytes.Cut(data, []byte("\n"))
	dec := json.NewDecoder(bytes.NewReader(rest))
	dec.UseNumber()
	var h map[string]any
	if err := dec.Decode(&h); err != nil {
		t.Fatal(err)
	}
	edit(h)
	js, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	js = append(js, '\n')
	head := fmt.Sprintf("%s %d xxh64:%016x\n", Magic, FormatVersion, xxhash.Sum64(js))
	if err := os.WriteFile(filepath.Join(dir, HeaderName), append([]byte(head), js...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The start id survives a checkpoint's HEADER (ReadHeader, Open, Checkpoint.StartID) and
// a model export; a HEADER without one, as checkpoints were written before it was
// recorded, loads with none; one outside the vocabulary is refused.
func TestStartIDRoundTrip(t *testing.T) {
	defer torchrt.Lock()()
	run := t.TempDir()
	start := int64(4)
	dir := writeStartID(t, run, 1, &start)
	if !strings.Contains(string(mustRead(t, filepath.Join(dir, HeaderName))), `"start_id": 4`) {
		t.Fatalf("the HEADER does not record the start id:\n%s", mustRead(t, filepath.Join(dir, HeaderName)))
	}
	h, err := ReadHeader(dir)
	if err != nil {
		t.Fatal(err)
	}
	if h.StartID == nil || *h.StartID != 4 || h.Format != FormatVersion {
		t.Fatalf("ReadHeader: start id %v, format %d; want 4, format %d", h.StartID, h.Format, FormatVersion)
	}
	ck, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := ck.StartID(); !ok || id != 4 {
		t.Fatalf("Open: start id %d, %v; want 4, true", id, ok)
	}

	// A model export carries it, and a checkpoint without one exports without it.
	m, ck, err := Load(dir, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.safetensors")
	if err := WriteExport(path, m, ck); err != nil {
		t.Fatal(err)
	}
	_, ex, err := ReadExport(path, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	if ex.StartID == nil || *ex.StartID != 4 || ex.Meta["start_id"] != "4" {
		t.Fatalf("export: start id %v, metadata %q; want 4", ex.StartID, ex.Meta["start_id"])
	}

	// None recorded: the field is absent from the HEADER, and there is no start id.
	none := writeStartID(t, t.TempDir(), 2, nil)
	if strings.Contains(string(mustRead(t, filepath.Join(none, HeaderName))), "start_id") {
		t.Fatalf("a HEADER without a start id mentions one:\n%s", mustRead(t, filepath.Join(none, HeaderName)))
	}
	ck, err = Open(none)
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := ck.StartID(); ok || ck.Header.StartID != nil {
		t.Fatalf("no start id recorded: got %d, %v", id, ok)
	}
	if m, ck, err = Load(none, gotch.CPU); err != nil {
		t.Fatal(err)
	}
	if err := WriteExport(path, m, ck); err != nil {
		t.Fatal(err)
	}
	if _, ex, err = ReadExport(path, gotch.CPU); err != nil {
		t.Fatal(err)
	} else if _, ok := ex.Meta["start_id"]; ok || ex.StartID != nil {
		t.Fatalf("export without a start id: %v, metadata %q", ex.StartID, ex.Meta["start_id"])
	}

	// An old HEADER, written without the field: the whole checkpoint still loads, with
	// no start id, in format 2 and in format 1.
	old := filepath.Join(t.TempDir(), StepDirName(1))
	copyDir(t, dir, old)
	rewriteHeader(t, old, func(h map[string]any) { delete(h, "start_id") })
	if _, err := loadAll(old); err != nil {
		t.Fatalf("a format-2 checkpoint without start_id: %v", err)
	}
	if ck, err = Open(old); err != nil {
		t.Fatal(err)
	} else if id, ok := ck.StartID(); ok {
		t.Fatalf("a format-2 checkpoint without start_id: start id %d", id)
	}
	writeFormat1(t, old)
	if ck, err = Open(old); err != nil {
		t.Fatal(err)
	} else if id, ok := ck.StartID(); ok || ck.Header.Format != 1 {
		t.Fatalf("a format-1 checkpoint without start_id: format %d, start id %d, %v", ck.Header.Format, id, ok)
	}

	// A start id outside the vocabulary is a one-line error naming the HEADER.
	for _, bad := range []int64{-1, int64(ck.Vocab.Size()), 1 << 40} {
		d := filepath.Join(t.TempDir(), StepDirName(1))
		copyDir(t, dir, d)
		rewriteHeader(t, d, func(h map[string]any) { h["start_id"] = bad })
		_, err := Open(d)
		if e := oneLine(err, filepath.Join(d, HeaderName)); e != nil || !strings.Contains(err.Error(), "start id") {
			t.Errorf("start id %d: %v (%v)", bad, e, err)
		}
	}
}
