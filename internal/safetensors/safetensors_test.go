package safetensors

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"testing"
)

func sample(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	err := Encode(&buf, []Tensor{
		{Name: "w", DType: "F32", Shape: []int64{2, 3}, Data: bytes.Repeat([]byte{1, 2, 3, 4}, 6)},
		{Name: "step", DType: "I64", Shape: []int64{1}, Data: []byte{7, 0, 0, 0, 0, 0, 0, 0}},
		{Name: "empty", DType: "F64", Shape: []int64{0, 4}, Data: nil},
		{Name: "scalar", DType: "F64", Shape: nil, Data: make([]byte, 8)},
	}, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	data := sample(t)
	if hl := binary.LittleEndian.Uint64(data); hl%8 != 0 {
		t.Errorf("header of %d bytes, not a multiple of 8", hl)
	}
	f, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if w := f.Get("w"); w == nil || !slices.Equal(w.Shape, []int64{2, 3}) || !bytes.Equal(w.Data, bytes.Repeat([]byte{1, 2, 3, 4}, 6)) {
		t.Fatalf("w = %+v", w)
	}
	if s := f.Get("step"); s == nil || s.DType != "I64" || s.Data[0] != 7 {
		t.Fatalf("step = %+v", s)
	}
	if e := f.Get("empty"); e == nil || len(e.Data) != 0 || f.Get("scalar") == nil || len(f.Get("scalar").Shape) != 0 {
		t.Fatalf("empty = %+v, scalar = %+v", e, f.Get("scalar"))
	}
	if f.Metadata["format"] != "pt" || len(f.Metadata[ChecksumKey]) != 16 {
		t.Fatalf("metadata %v", f.Metadata)
	}
}

// Every truncation and every flipped byte of the data is refused; so are headers that
// lie about sizes and offsets.
func TestDamageRefused(t *testing.T) {
	data := sample(t)
	for n := 0; n < len(data); n++ {
		if _, err := Decode(data[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(data))
		}
	}
	hl := int(binary.LittleEndian.Uint64(data))
	for i := 8 + hl; i < len(data); i++ {
		b := slices.Clone(data)
		b[i] ^= 0x40
		if _, err := Decode(b); err == nil || !strings.Contains(err.Error(), "checksum") {
			t.Fatalf("byte %d flipped: err = %v", i, err)
		}
	}
	bad := func(header string) []byte {
		var b []byte
		b = binary.LittleEndian.AppendUint64(b, uint64(len(header)))
		return append(append(b, header...), make([]byte, 16)...)
	}
	for header, want := range map[string]string{
		`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`:                                                       "after the last tensor",
		`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,32]}}`:                                                      "outside",
		`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}`:                                                      "bytes of data for shape",
		`{"a":{"dtype":"Q7","shape":[4],"data_offsets":[0,16]}}`:                                                       "unknown dtype",
		`{"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}}`:                                                     "negative",
		`{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,16]}}`:                                  "larger than the file",
		`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`: "gaps or overlaps",
		`[1,2]`: "bad safetensors header",
	} {
		if _, err := Decode(bad(header)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", header, err, want)
		}
	}
	huge := binary.LittleEndian.AppendUint64(nil, 1<<62)
	if _, err := Decode(append(huge, "{}"...)); err == nil {
		t.Error("a header length beyond the file: no error")
	}
}
