package checkpoint

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"xspan/internal/safetensors"
	"xspan/internal/torchrt"
)

// A format-2 checkpoint gives back exactly what was saved, and each of its tensor files
// is a safetensors file that verifies on its own.
func TestFormat2RoundTrip(t *testing.T) {
	defer torchrt.Lock()()
	run := t.TempDir()
	m, mem, o, _ := testModel(t, 3)
	want := valuesOf(m, mem, o)
	dir := writeTest(t, run, 5, 3)
	got, err := loadAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameValues(want, got); err != nil {
		t.Fatalf("loaded checkpoint differs: %v", err)
	}
	h, err := ReadHeader(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range h.Files {
		names = append(names, name)
	}
	slices.Sort(names)
	if want := []string{"memory-0.safetensors", OptimName, VocabName, WeightsName}; !slices.Equal(names, want) {
		t.Fatalf("HEADER lists %v, want %v", names, want)
	}
	data, err := os.ReadFile(filepath.Join(dir, WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if f.Metadata["xspan"] != "weights" || f.Metadata[safetensors.ChecksumKey] == "" || f.Get("emb") == nil || f.Get("emb").DType != "F32" {
		t.Fatalf("weights.safetensors: metadata %v, emb %+v", f.Metadata, f.Get("emb"))
	}
}

// Every damaged file of a checkpoint (a flipped byte anywhere, a truncation, an empty
// file, a missing file) is refused with a one-line error naming it; nothing panics.
func TestDamagedCheckpointFilesRefused(t *testing.T) {
	defer torchrt.Lock()()
	run := t.TempDir()
	good := writeTest(t, run, 1, 4)
	cases := 0
	for _, name := range []string{HeaderName, WeightsName, OptimName, MemoryName(0), VocabName} {
		orig, err := os.ReadFile(filepath.Join(good, name))
		if err != nil {
			t.Fatal(err)
		}
		type damage struct {
			what string
			data []byte // nil: the file is removed
		}
		var ds []damage
		// Flips at 48 places spread over the file, its first and last bytes included.
		for k := 0; k < 48; k++ {
			i := k * (len(orig) - 1) / 47
			b := slices.Clone(orig)
			b[i] ^= 0x10
			ds = append(ds, damage{"byte " + itoa(i) + " flipped", b})
		}
		for _, n := range []int{0, 1, 8, len(orig) / 2, len(orig) - 1} {
			ds = append(ds, damage{"truncated to " + itoa(n), orig[:n]})
		}
		ds = append(ds, damage{"missing", nil}, damage{"one byte longer", append(slices.Clone(orig), ' ')})
		for _, d := range ds {
			dir := filepath.Join(t.TempDir(), StepDirName(1))
			copyDir(t, good, dir)
			path := filepath.Join(dir, name)
			if d.data == nil {
				os.Remove(path)
			} else {
				os.WriteFile(path, d.data, 0o644)
			}
			_, err := loadAll(dir)
			want := path
			if name == HeaderName && d.data == nil {
				want = dir
			}
			if e := oneLine(err, want); e != nil {
				t.Errorf("%s %s: %v", name, d.what, e)
			}
			cases++
		}
	}
	t.Logf("%d damaged checkpoints refused", cases)
	if _, err := loadAll(good); err != nil {
		t.Fatalf("the undamaged checkpoint: %v", err)
	}
}

// Format-1 checkpoints (libtorch .ot files, no checksums) keep loading; a damaged .ot file
// is a one-line error naming it, never a crash inside libtorch.
func TestFormat1StillLoads(t *testing.T) {
	defer torchrt.Lock()()
	run := t.TempDir()
	m, mem, o, _ := testModel(t, 6)
	want := valuesOf(m, mem, o)
	dir := writeTest(t, run, 2, 6)
	writeFormat1(t, dir)
	if h, err := ReadHeader(dir); err != nil || h.Format != 1 {
		t.Fatalf("format-1 header: %v, %+v", err, h)
	}
	got, err := loadAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameValues(want, got); err != nil {
		t.Fatalf("format-1 checkpoint differs: %v", err)
	}
	orig, err := os.ReadFile(filepath.Join(dir, "weights.ot"))
	if err != nil {
		t.Fatal(err)
	}
	// A flip in the largest entry's data (a tensor's) breaks that entry's CRC.
	zr, err := zip.NewReader(bytes.NewReader(orig), int64(len(orig)))
	if err != nil {
		t.Fatal(err)
	}
	var largest *zip.File
	for _, e := range zr.File {
		if largest == nil || e.CompressedSize64 > largest.CompressedSize64 {
			largest = e
		}
	}
	at, err := largest.DataOffset()
	if err != nil {
		t.Fatal(err)
	}
	flipped := slices.Clone(orig)
	flipped[at+int64(largest.CompressedSize64)/2] ^= 1
	for what, data := range map[string][]byte{"empty": {}, "truncated": orig[:len(orig)/2], "flipped": flipped, "junk": []byte("junk")} {
		bad := filepath.Join(t.TempDir(), StepDirName(2))
		copyDir(t, dir, bad)
		path := filepath.Join(bad, "weights.ot")
		os.WriteFile(path, data, 0o644)
		_, err := loadAll(bad)
		if e := oneLine(err, path); e != nil {
			t.Errorf("weights.ot %s: %v", what, e)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
