package refckpt

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fixtureBytes(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// makeZip writes a torch.save-like archive holding the given records under "ck/".
func makeZip(t testing.TB, records map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for name, data := range records {
		f, err := w.CreateHeader(&zip.FileHeader{Name: "ck/" + name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		f.Write(data)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func parseBytes(b []byte) (*Checkpoint, error) {
	return Parse(bytes.NewReader(b), int64(len(b)), "damaged.pt")
}

// pickleOf is a hand-written pickle: {"epoch": 1} (protocol 2).
var pickleEpochOnly = []byte("\x80\x02}q\x00(X\x05\x00\x00\x00epochq\x01K\x01u.")

func TestDamagedFiles(t *testing.T) {
	good := fixtureBytes(t, "post.pt")
	for _, tc := range []struct {
		what string
		data []byte
		want string
	}{
		{"empty", nil, "not a torch.save file"},
		{"text", []byte("this is not a checkpoint\n"), "not a torch.save file"},
		{"legacy pickle", []byte("\x80\x02\x8a\x0alz\xfc\x9cF\xf9 j\xa8P\x19."), "legacy torch.save format"},
		{"truncated to half", good[:len(good)/2], "not a torch.save file"},
		{"zip without data.pkl", makeZip(t, map[string][]byte{"version": []byte("3\n")}), "without a <name>/data.pkl"},
		{"dict without model", makeZip(t, map[string][]byte{"data.pkl": pickleEpochOnly}), `no "model" entry (top-level keys: epoch)`},
		{"truncated pickle", makeZip(t, map[string][]byte{"data.pkl": pickleEpochOnly[:20]}), "truncated"},
		{"a list", makeZip(t, map[string][]byte{"data.pkl": []byte("\x80\x02]q\x00.")}), "a list, not a dict"},
		{"bad opcode", makeZip(t, map[string][]byte{"data.pkl": []byte("\x80\x02}\xff.")}), "unsupported opcode 0xff"},
		{"huge string length", makeZip(t, map[string][]byte{"data.pkl": []byte("\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\x7f")}), "a string of"},
		{"unknown memo", makeZip(t, map[string][]byte{"data.pkl": []byte("\x80\x02h\x07.")}), "memo index 7 was never stored"},
		{"missing storage", makeZip(t, map[string][]byte{"data.pkl": storagePickle("FloatStorage", "0", 4)}), "no record ck/data/0"},
		{"short storage", makeZip(t, map[string][]byte{"data.pkl": storagePickle("FloatStorage", "0", 4), "data/0": make([]byte, 12)}), "do not fill its record of 12 bytes"},
		{"unsupported storage", makeZip(t, map[string][]byte{"data.pkl": storagePickle("QInt8Storage", "0", 4), "data/0": make([]byte, 4)}), "unsupported type torch.QInt8Storage"},
	} {
		_, err := parseBytes(tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "damaged.pt") {
			t.Errorf("%s: error %v, want one naming the file and %q", tc.what, err, tc.want)
		}
	}
}

// storagePickle is {"model": {"w": tensor of n elements of storage key}}, as torch.save
// writes it.
func storagePickle(class, key string, n byte) []byte {
	var b bytes.Buffer
	b.WriteString("\x80\x02}(X\x05\x00\x00\x00model}(X\x01\x00\x00\x00w")
	b.WriteString("ctorch._utils\n_rebuild_tensor_v2\n(")
	b.WriteString("(X\x07\x00\x00\x00storagectorch\n" + class + "\n")
	b.WriteString("X" + string([]byte{byte(len(key)), 0, 0, 0}) + key + "X\x03\x00\x00\x00cpuK" + string([]byte{n}) + "tQ")
	b.WriteString("K\x00K" + string([]byte{n}) + "\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtR")
	b.WriteString("uu.")
	return b.Bytes()
}

func TestStoragePickleReads(t *testing.T) {
	data := make([]byte, 16)
	data[4*2+3] = 0x3f
	data[4*2+2] = 0x80 // 1.0 at index 2
	c, err := parseBytes(makeZip(t, map[string][]byte{"data.pkl": storagePickle("FloatStorage", "0", 4), "data/0": data}))
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Params[0]; p.Name != "w" || len(p.Data) != 4 || p.Data[2] != 1 {
		t.Errorf("read %+v", p)
	}
}

func TestFlippedBytes(t *testing.T) {
	good := fixtureBytes(t, "post.pt")
	a, _, err := load(bytes.NewReader(good), int64(len(good)), "x")
	if err != nil {
		t.Fatal(err)
	}
	// A flipped byte inside a record is caught by its CRC.
	for _, rec := range []string{"post/data.pkl", "post/data/0"} {
		off, err := a.files[rec].DataOffset()
		if err != nil {
			t.Fatal(err)
		}
		bad := bytes.Clone(good)
		bad[off+5] ^= 0x10
		_, err = parseBytes(bad)
		if err == nil || !strings.Contains(err.Error(), rec) || !strings.Contains(err.Error(), "checksum") {
			t.Errorf("flip in %s: error %v", rec, err)
		}
	}
	// Anywhere else: an error or a successful read, never a panic.
	for i := 0; i < len(good); i += 1009 {
		bad := bytes.Clone(good)
		bad[i] ^= 0xff
		parseBytes(bad)
	}
	for n := 0; n < len(good); n += 1013 {
		if _, err := parseBytes(good[:n]); err == nil {
			t.Errorf("truncated to %d bytes: no error", n)
		}
	}
}

func TestReadErrors(t *testing.T) {
	if _, err := Read(filepath.Join("testdata", "nonexistent.pt")); err == nil || !strings.Contains(err.Error(), "nonexistent.pt") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Read("testdata"); err == nil || !strings.Contains(err.Error(), "folder") {
		t.Errorf("folder: %v", err)
	}
	if _, err := Read(filepath.Join("testdata", "corpus-eos.pt")); err == nil || !strings.Contains(err.Error(), "data.Corpus object, not a dict") {
		t.Errorf("corpus cache as a checkpoint: %v", err)
	}
	if _, err := ReadCorpus(filepath.Join("testdata", "post.pt")); err == nil || !strings.Contains(err.Error(), "not the reference's data.Corpus") {
		t.Errorf("checkpoint as a corpus cache: %v", err)
	}
}
