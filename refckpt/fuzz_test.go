package refckpt

import (
	"bytes"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add(fixtureBytes(f, "post.pt"))
	f.Add(makeZip(f, map[string][]byte{"data.pkl": pickleEpochOnly}))
	f.Add(makeZip(f, map[string][]byte{"data.pkl": storagePickle("FloatStorage", "0", 4), "data/0": make([]byte, 16)}))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(bytes.NewReader(b), int64(len(b)), "fuzz.pt")
		if err == nil {
			for _, p := range c.Params {
				if int64(len(p.Data)) != p.Numel() {
					t.Fatalf("%s: %d values for shape %v", p.Name, len(p.Data), p.Shape)
				}
			}
			if a, err := InferArch(c); err == nil {
				if vm, err := ByteVocabMap(make([]string, 0)); err == nil {
					ToXspan(c, a, vm)
				}
			}
		}
	})
}

// FuzzUnpickle works on the pickle itself (a zip's CRCs stop most mutations of a whole
// file before the unpickler sees them), resolving storages to an archive of one storage.
func FuzzUnpickle(f *testing.F) {
	good := fixtureBytes(f, "post.pt")
	a, _, err := load(bytes.NewReader(good), int64(len(good)), "x")
	if err != nil {
		f.Fatal(err)
	}
	pkl, err := a.readRecord(a.files["post/data.pkl"], maxPickleBytes)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pkl)
	f.Add(pickleEpochOnly)
	f.Add(storagePickle("FloatStorage", "0", 4))
	f.Fuzz(func(t *testing.T, b []byte) {
		a.storages = map[string]*Storage{}
		v, err := unpickle(b, a.persistentLoad, a.rebuild)
		if err == nil {
			kind(v)
		}
	})
}
