// Package safetensors writes and reads the safetensors format
// (https://github.com/huggingface/safetensors) in Go, without libtorch:
//
//	header length  uint64, little-endian
//	header         JSON: name -> {"dtype", "shape", "data_offsets": [begin, end]}, and
//	               "__metadata__": string -> string; padded with spaces to a multiple of 8
//	data           the tensors' bytes, little-endian, row-major, in offset order
//
// Decode checks a file completely before returning anything: the header's length and
// JSON, every dtype, shape and offset pair (in bounds, contiguous, of the size the dtype
// and shape give, no overflow), and, when the metadata holds an "xxh64" key (Encode writes
// one), the checksum of the data. Nothing it allocates exceeds the input's size.
package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// ChecksumKey is the metadata key of the xxh64 checksum of the data section.
const ChecksumKey = "xxh64"

// MaxHeader bounds the JSON header a reader accepts.
const MaxHeader = 64 << 20

// Tensor is one named tensor: its dtype ("F32", "F64", "I64", …), shape and raw
// little-endian bytes.
type Tensor struct {
	Name  string
	DType string
	Shape []int64
	Data  []byte
}

// dtypeSizes are the dtypes this package knows, with their sizes in bytes.
var dtypeSizes = map[string]int64{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
	"I16": 2, "U16": 2, "F16": 2, "BF16": 2,
	"I32": 4, "U32": 4, "F32": 4,
	"I64": 8, "U64": 8, "F64": 8,
}

// DTypeSize is the size in bytes of one element of dtype (0: unknown dtype).
func DTypeSize(dtype string) int64 { return dtypeSizes[dtype] }

type entry struct {
	DType   string   `json:"dtype"`
	Shape   []int64  `json:"shape"`
	Offsets [2]int64 `json:"data_offsets"`
}

// numel returns the number of elements of shape, or an error for a negative dimension
// or a count beyond limit.
func numel(shape []int64, limit int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
		if d != 0 && n > limit/d {
			return 0, fmt.Errorf("shape %v is larger than the file", shape)
		}
		n *= d
	}
	return n, nil
}

// Encode writes tensors (in the order given) with the metadata meta, to which it adds
// the data's checksum under ChecksumKey. Names must be unique and not "__metadata__".
func Encode(w io.Writer, tensors []Tensor, meta map[string]string) error {
	header := map[string]any{}
	md := map[string]string{}
	for k, v := range meta {
		md[k] = v
	}
	h := xxhash.New()
	var off int64
	for _, t := range tensors {
		if t.Name == "" || t.Name == "__metadata__" {
			return fmt.Errorf("safetensors: bad tensor name %q", t.Name)
		}
		if _, dup := header[t.Name]; dup {
			return fmt.Errorf("safetensors: tensor %q twice", t.Name)
		}
		size := DTypeSize(t.DType)
		if size == 0 {
			return fmt.Errorf("safetensors: tensor %q: unknown dtype %q", t.Name, t.DType)
		}
		n, err := numel(t.Shape, math.MaxInt64/size)
		if err != nil {
			return fmt.Errorf("safetensors: tensor %q: %w", t.Name, err)
		}
		if n*size != int64(len(t.Data)) {
			return fmt.Errorf("safetensors: tensor %q: %d bytes for shape %v of %s", t.Name, len(t.Data), t.Shape, t.DType)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int64{}
		}
		header[t.Name] = entry{DType: t.DType, Shape: shape, Offsets: [2]int64{off, off + int64(len(t.Data))}}
		off += int64(len(t.Data))
		h.Write(t.Data)
	}
	md[ChecksumKey] = fmt.Sprintf("%016x", h.Sum64())
	header["__metadata__"] = md
	js, err := json.Marshal(header)
	if err != nil {
		return err
	}
	if pad := len(js) % 8; pad != 0 {
		js = append(js, strings.Repeat(" ", 8-pad)...)
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(js)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	if _, err := w.Write(js); err != nil {
		return err
	}
	for _, t := range tensors {
		if _, err := w.Write(t.Data); err != nil {
			return err
		}
	}
	return nil
}

// File is a decoded safetensors file. Its tensors' Data alias the decoded bytes.
type File struct {
	Tensors  []Tensor // in data order
	Metadata map[string]string
}

// Get returns the tensor called name, or nil.
func (f *File) Get(name string) *Tensor {
	for i := range f.Tensors {
		if f.Tensors[i].Name == name {
			return &f.Tensors[i]
		}
	}
	return nil
}

// Decode parses and checks a whole safetensors file held in data. Its errors say what
// is wrong, for a caller to prefix with the file's name.
func Decode(data []byte) (*File, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("not a safetensors file: %d bytes, shorter than the header length", len(data))
	}
	hlen := binary.LittleEndian.Uint64(data)
	if hlen > MaxHeader || hlen > uint64(len(data)-8) {
		return nil, fmt.Errorf("not a safetensors file, or truncated: header of %d bytes in a file of %d", hlen, len(data))
	}
	body := data[8+hlen:]
	dec := json.NewDecoder(strings.NewReader(string(data[8 : 8+hlen])))
	dec.UseNumber()
	var raw map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("bad safetensors header: %v", err)
	}
	f := &File{Metadata: map[string]string{}}
	if m, ok := raw["__metadata__"]; ok {
		if err := json.Unmarshal(m, &f.Metadata); err != nil {
			return nil, fmt.Errorf("bad safetensors metadata: %v", err)
		}
		delete(raw, "__metadata__")
	}
	type placed struct {
		name string
		e    entry
	}
	var all []placed
	for name, js := range raw {
		var e entry
		d := json.NewDecoder(strings.NewReader(string(js)))
		d.DisallowUnknownFields()
		if err := d.Decode(&e); err != nil {
			return nil, fmt.Errorf("tensor %q: bad header entry: %v", name, err)
		}
		size := DTypeSize(e.DType)
		if size == 0 {
			return nil, fmt.Errorf("tensor %q: unknown dtype %q", name, e.DType)
		}
		n, err := numel(e.Shape, int64(len(body))/size)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %v", name, err)
		}
		b, end := e.Offsets[0], e.Offsets[1]
		if b < 0 || end < b || end > int64(len(body)) {
			return nil, fmt.Errorf("tensor %q: data offsets [%d, %d] outside the %d bytes of data (truncated?)", name, b, end, len(body))
		}
		if end-b != n*size {
			return nil, fmt.Errorf("tensor %q: %d bytes of data for shape %v of %s (%d wanted)", name, end-b, e.Shape, e.DType, n*size)
		}
		all = append(all, placed{name, e})
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i].e.Offsets, all[j].e.Offsets
		return a[0] < b[0] || (a[0] == b[0] && a[1] < b[1])
	})
	var pos int64
	for _, p := range all {
		if o := p.e.Offsets[0]; o != pos {
			return nil, fmt.Errorf("tensor %q: data starts at %d, want %d (tensors must cover the data without gaps or overlaps)", p.name, o, pos)
		}
		pos = p.e.Offsets[1]
		f.Tensors = append(f.Tensors, Tensor{Name: p.name, DType: p.e.DType, Shape: p.e.Shape, Data: body[p.e.Offsets[0]:pos:pos]})
	}
	if pos != int64(len(body)) {
		return nil, fmt.Errorf("%d bytes of data after the last tensor: not a whole safetensors file", int64(len(body))-pos)
	}
	if sum, ok := f.Metadata[ChecksumKey]; ok {
		want, err := strconv.ParseUint(sum, 16, 64)
		if err != nil || len(sum) != 16 {
			return nil, fmt.Errorf("bad %s checksum %q in the metadata", ChecksumKey, sum)
		}
		if got := xxhash.Sum64(body); got != want {
			return nil, fmt.Errorf("data checksum %016x does not match the header's %016x: the file is corrupt", got, want)
		}
	}
	return f, nil
}
