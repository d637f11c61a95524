package dataset

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/klauspost/compress/zstd"

	"xspan/tokenize"
)

func newTestEncoder(t testing.TB) *zstd.Encoder {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// FuzzDecodeShard feeds arbitrary bytes to the shard reader: it must not panic nor
// allocate past its limit, and what it accepts must round-trip.
func FuzzDecodeShard(f *testing.F) {
	enc := newTestEncoder(f)
	for _, w := range []int{1, 2, 4} {
		packed := pack(nil, []uint32{1, 2, 3, 250, 7, 7, 7, 7}, w)
		s := appendShard(nil, enc, packed, w)
		f.Add(s)
		f.Add(s[:len(s)-3])
		f.Add(s[:shardHeaderSize])
	}
	f.Add([]byte("XSPN\x01\x01\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 1 << 16
		w, packed, err := decodeShard(data, max, nil)
		if err != nil {
			return
		}
		if len(packed)%w != 0 || len(packed)/w > max {
			t.Fatalf("%d bytes of width %d", len(packed), w)
		}
		again := appendShard(nil, enc, packed, w)
		w2, p2, err := decodeShard(again, max, nil)
		if err != nil || w2 != w || !bytes.Equal(p2, packed) {
			t.Fatalf("re-encoded shard does not decode the same: %v", err)
		}
	})
}

// FuzzParseManifest feeds arbitrary bytes to the manifest parser: it must not panic,
// and a manifest it accepts must survive Marshal and a second parse unchanged.
func FuzzParseManifest(f *testing.F) {
	unk := 3
	m := &Manifest{
		Format: FormatName, Version: Version, Input: "text",
		Vocab:    tokenize.Spec{Kind: "char", Size: 4, Chars: "abc", Unk: &unk},
		Newlines: NewlinesKeep, TokenWidth: 1, Compression: Compression{Codec: "zstd", Level: 3},
		Splits: []Split{{Name: "train", Tokens: 10, Bytes: 10, Chars: 10,
			Source: Source{Bytes: 10, Checksum: "xxh64:0123456789abcdef", Ranges: []SourceRange{{Path: "a.txt", Length: 10}}},
			Shards: []Shard{{File: "train-00000.xsh", Tokens: 10, Bytes: 40, Checksum: "xxh64:0123456789abcdef"}}}},
	}
	good, _ := m.Marshal()
	f.Add(good)
	f.Add(bytes.Replace(good, []byte(`"version": 1`), []byte(`"version": 2`), 1))
	f.Add(bytes.Replace(good, []byte(`"train-00000.xsh"`), []byte(`"../etc/passwd"`), 1))
	f.Add(bytes.Replace(good, []byte(`"tokens": 10,`), []byte(`"tokens": -1,`), 1))
	f.Add([]byte(`{"format":"xspan-dataset","version":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		m2, err := ParseManifest(out)
		if err != nil {
			t.Fatalf("marshalled manifest does not parse: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatal("manifest changed in a Marshal/Parse round trip")
		}
	})
}
