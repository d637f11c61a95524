package refckpt

import (
	"archive/zip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
)

// maxPickleBytes bounds the data.pkl record of a torch.save file (the object tree without
// the tensors' data: a few kB per tensor).
const maxPickleBytes = 256 << 20

// DType is a tensor element type as torch.save names its storage class.
type DType struct {
	Name string // float32, float64, float16, bfloat16, int64, int32, int16, int8, uint8, bool
	Size int    // bytes per element
}

var storageTypes = map[string]DType{
	"FloatStorage":    {"float32", 4},
	"DoubleStorage":   {"float64", 8},
	"HalfStorage":     {"float16", 2},
	"BFloat16Storage": {"bfloat16", 2},
	"LongStorage":     {"int64", 8},
	"IntStorage":      {"int32", 4},
	"ShortStorage":    {"int16", 2},
	"CharStorage":     {"int8", 1},
	"ByteStorage":     {"uint8", 1},
	"BoolStorage":     {"bool", 1},
}

// Storage is one tensor storage of a torch.save archive: the record data/<Key>, read only
// when a tensor's values are asked for.
type Storage struct {
	Key      string
	DType    DType
	Numel    int64
	Location string // "cpu", "cuda:0", …: where it was saved from (ignored)
	file     *zip.File
	archive  *archive
	raw      []byte
}

// Tensor is a tensor of a torch.save archive: a view (offset, shape, strides in elements)
// of a Storage.
type Tensor struct {
	Storage *Storage
	Offset  int64
	Shape   []int64
	Stride  []int64
}

// Numel is the number of elements.
func (t *Tensor) Numel() int64 {
	n := int64(1)
	for _, s := range t.Shape {
		n *= s
	}
	return n
}

// archive is an opened torch.save file (the zip format of PyTorch ≥ 1.6).
type archive struct {
	name     string // the file's name, for errors
	size     int64
	prefix   string // the records' folder, e.g. "post/"
	files    map[string]*zip.File
	storages map[string]*Storage
}

// errorf makes an error that names the file.
func (a *archive) errorf(format string, args ...any) error {
	return fmt.Errorf("refckpt: %s: %s", a.name, fmt.Sprintf(format, args...))
}

// load opens a torch.save archive of size bytes and decodes its object tree; tensors come
// back as *Tensor whose values are read on demand. name is used in errors.
func load(r io.ReaderAt, size int64, name string) (*archive, any, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		var magic [2]byte
		if n, _ := r.ReadAt(magic[:], 0); n == 2 && magic[0] == 0x80 {
			return nil, nil, fmt.Errorf("refckpt: %s: a bare pickle, not a zip archive: the legacy torch.save format (PyTorch < 1.6) is not supported; re-save it with a newer PyTorch", name)
		}
		return nil, nil, fmt.Errorf("refckpt: %s: not a torch.save file (not a zip archive: %v)", name, err)
	}
	a := &archive{name: name, size: size, files: map[string]*zip.File{}, storages: map[string]*Storage{}}
	var pkl *zip.File
	for _, f := range zr.File {
		a.files[f.Name] = f
		if strings.HasSuffix(f.Name, "/data.pkl") && strings.Count(f.Name, "/") == 1 {
			if pkl != nil {
				return nil, nil, a.errorf("two data.pkl records (%s and %s)", pkl.Name, f.Name)
			}
			pkl = f
		}
	}
	if pkl == nil {
		return nil, nil, a.errorf("a zip archive without a <name>/data.pkl record: not a torch.save file")
	}
	a.prefix = strings.TrimSuffix(pkl.Name, "data.pkl")
	if bo, ok := a.files[a.prefix+"byteorder"]; ok {
		b, err := a.readRecord(bo, 16)
		if err != nil {
			return nil, nil, err
		}
		if s := strings.TrimSpace(string(b)); s != "little" {
			return nil, nil, a.errorf("byte order %q: only little-endian archives are supported", s)
		}
	}
	data, err := a.readRecord(pkl, maxPickleBytes)
	if err != nil {
		return nil, nil, err
	}
	root, err := unpickle(data, a.persistentLoad, a.rebuild)
	if err != nil {
		return nil, nil, a.errorf("%s: %v", pkl.Name, err)
	}
	return a, root, nil
}

// readRecord reads a whole stored (uncompressed) record of at most limit bytes, checking
// its CRC.
func (a *archive) readRecord(f *zip.File, limit uint64) ([]byte, error) {
	if f.Method != zip.Store {
		return nil, a.errorf("record %s is compressed (method %d): torch.save stores records uncompressed", f.Name, f.Method)
	}
	if f.UncompressedSize64 > limit || f.UncompressedSize64 > uint64(a.size) || f.CompressedSize64 != f.UncompressedSize64 {
		return nil, a.errorf("record %s claims %d bytes in a file of %d", f.Name, f.UncompressedSize64, a.size)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, a.errorf("record %s: %v", f.Name, err)
	}
	defer rc.Close()
	buf := make([]byte, f.UncompressedSize64)
	if _, err := io.ReadFull(rc, buf); err != nil {
		return nil, a.errorf("record %s: %v", f.Name, err)
	}
	// Reading to the end makes archive/zip check the CRC.
	var one [1]byte
	if n, err := rc.Read(one[:]); n != 0 || (err != nil && err != io.EOF) {
		if err == nil {
			err = errors.New("longer than its header says")
		}
		return nil, a.errorf("record %s: %v", f.Name, err)
	}
	return buf, nil
}

// persistentLoad resolves torch.save's storage references:
// ('storage', storage class, key, location, numel).
func (a *archive) persistentLoad(pid any) (any, error) {
	t, ok := pid.(Tuple)
	if !ok || len(t) != 5 {
		return nil, fmt.Errorf("persistent id is a %s, not a 5-tuple ('storage', class, key, location, numel)", kind(pid))
	}
	if s, _ := t[0].(string); s != "storage" {
		return nil, fmt.Errorf("persistent id of kind %v, not 'storage'", t[0])
	}
	cls, ok1 := t[1].(Global)
	key, ok2 := t[2].(string)
	loc, ok3 := t[3].(string)
	numel, ok4 := t[4].(int64)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return nil, errors.New("storage reference with fields of the wrong types")
	}
	if st, ok := a.storages[key]; ok {
		return st, nil
	}
	dt, ok := storageTypes[cls.Name]
	if cls.Module != "torch" || !ok {
		return nil, fmt.Errorf("storage %s of unsupported type %s.%s", key, cls.Module, cls.Name)
	}
	f, ok := a.files[a.prefix+"data/"+key]
	if !ok {
		return nil, fmt.Errorf("storage %s: no record %sdata/%s", key, a.prefix, key)
	}
	if numel < 0 || uint64(numel) > f.UncompressedSize64/uint64(dt.Size) || uint64(numel)*uint64(dt.Size) != f.UncompressedSize64 {
		return nil, fmt.Errorf("storage %s: %d %s values do not fill its record of %d bytes", key, numel, dt.Name, f.UncompressedSize64)
	}
	st := &Storage{Key: key, DType: dt, Numel: numel, Location: loc, file: f, archive: a}
	a.storages[key] = st
	return st, nil
}

// rebuild builds tensors from torch._utils' rebuild functions; other calls become Objects.
func (a *archive) rebuild(g Global, args Tuple) (any, bool, error) {
	if g.Module != "torch._utils" {
		return nil, false, nil
	}
	switch g.Name {
	case "_rebuild_tensor_v2", "_rebuild_tensor":
		// (storage, storage_offset, size, stride[, requires_grad, backward_hooks[, metadata]])
		if len(args) < 4 {
			return nil, false, fmt.Errorf("%d arguments, want at least 4", len(args))
		}
		st, ok := args[0].(*Storage)
		if !ok {
			return nil, false, fmt.Errorf("storage argument is a %s", kind(args[0]))
		}
		off, ok := args[1].(int64)
		if !ok {
			return nil, false, fmt.Errorf("storage offset is a %s", kind(args[1]))
		}
		shape, err1 := intTuple(args[2])
		stride, err2 := intTuple(args[3])
		if err1 != nil || err2 != nil || len(shape) != len(stride) {
			return nil, false, fmt.Errorf("size %v and stride %v do not describe a tensor", args[2], args[3])
		}
		t := &Tensor{Storage: st, Offset: off, Shape: shape, Stride: stride}
		if err := t.check(); err != nil {
			return nil, false, err
		}
		return t, true, nil
	case "_rebuild_parameter", "_rebuild_parameter_with_state":
		// (data, requires_grad, backward_hooks[, state])
		if len(args) < 1 {
			return nil, false, errors.New("no arguments")
		}
		t, ok := args[0].(*Tensor)
		if !ok {
			return nil, false, fmt.Errorf("parameter data is a %s", kind(args[0]))
		}
		return t, true, nil
	}
	return nil, false, fmt.Errorf("unsupported tensor type (%s.%s): only dense tensors are read", g.Module, g.Name)
}

func intTuple(v any) ([]int64, error) {
	t, ok := v.(Tuple)
	if !ok {
		return nil, fmt.Errorf("a %s, not a tuple", kind(v))
	}
	out := make([]int64, len(t))
	for i, e := range t {
		n, ok := e.(int64)
		if !ok {
			return nil, fmt.Errorf("element %d is a %s", i, kind(e))
		}
		out[i] = n
	}
	return out, nil
}

// check verifies that the view lies inside its storage and is no larger than it (expanded
// views, whose data would outgrow the file, are refused).
func (t *Tensor) check() error {
	if len(t.Shape) > 64 {
		return fmt.Errorf("tensor of %d dimensions", len(t.Shape))
	}
	n, last := int64(1), t.Offset
	for i, s := range t.Shape {
		if s < 0 || t.Stride[i] < 0 {
			return fmt.Errorf("negative size or stride (%v, %v)", t.Shape, t.Stride)
		}
		if s == 0 {
			return nil
		}
		if n > math.MaxInt64/s || t.Stride[i] > (math.MaxInt64-last)/s {
			return fmt.Errorf("size %v overflows", t.Shape)
		}
		n *= s
		last += (s - 1) * t.Stride[i]
	}
	if t.Offset < 0 || last >= t.Storage.Numel || n > t.Storage.Numel {
		return fmt.Errorf("a %v view at offset %d (strides %v) does not fit storage %s of %d values",
			t.Shape, t.Offset, t.Stride, t.Storage.Key, t.Storage.Numel)
	}
	return nil
}

// bytes reads the storage's record once.
func (s *Storage) bytes() ([]byte, error) {
	if s.raw == nil {
		b, err := s.archive.readRecord(s.file, uint64(s.Numel)*uint64(s.DType.Size))
		if err != nil {
			return nil, err
		}
		s.raw = b
	}
	return s.raw, nil
}

// index calls f with each element's index into the storage, in row-major order.
func (t *Tensor) index(f func(i, at int64)) {
	n := t.Numel()
	if n == 0 {
		return
	}
	idx := make([]int64, len(t.Shape))
	at := t.Offset
	for i := int64(0); i < n; i++ {
		f(i, at)
		for d := len(idx) - 1; d >= 0; d-- {
			idx[d]++
			at += t.Stride[d]
			if idx[d] < t.Shape[d] {
				break
			}
			at -= t.Stride[d] * t.Shape[d]
			idx[d] = 0
		}
	}
}

// Float32s returns the tensor's values in row-major order as float32 (from float32,
// float64, float16 or bfloat16 storage).
func (t *Tensor) Float32s() ([]float32, error) {
	raw, err := t.Storage.bytes()
	if err != nil {
		return nil, err
	}
	out := make([]float32, t.Numel())
	var get func(at int64) float32
	switch t.Storage.DType.Name {
	case "float32":
		get = func(at int64) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(raw[4*at:])) }
	case "float64":
		get = func(at int64) float32 { return float32(math.Float64frombits(binary.LittleEndian.Uint64(raw[8*at:]))) }
	case "float16":
		get = func(at int64) float32 { return halfToFloat(binary.LittleEndian.Uint16(raw[2*at:])) }
	case "bfloat16":
		get = func(at int64) float32 {
			return math.Float32frombits(uint32(binary.LittleEndian.Uint16(raw[2*at:])) << 16)
		}
	default:
		return nil, fmt.Errorf("a %s tensor, not a floating-point one", t.Storage.DType.Name)
	}
	t.index(func(i, at int64) { out[i] = get(at) })
	return out, nil
}

// Int64s returns the values of an integer tensor in row-major order.
func (t *Tensor) Int64s() ([]int64, error) {
	raw, err := t.Storage.bytes()
	if err != nil {
		return nil, err
	}
	out := make([]int64, t.Numel())
	var get func(at int64) int64
	switch t.Storage.DType.Name {
	case "int64":
		get = func(at int64) int64 { return int64(binary.LittleEndian.Uint64(raw[8*at:])) }
	case "int32":
		get = func(at int64) int64 { return int64(int32(binary.LittleEndian.Uint32(raw[4*at:]))) }
	case "int16":
		get = func(at int64) int64 { return int64(int16(binary.LittleEndian.Uint16(raw[2*at:]))) }
	case "int8":
		get = func(at int64) int64 { return int64(int8(raw[at])) }
	case "uint8", "bool":
		get = func(at int64) int64 { return int64(raw[at]) }
	default:
		return nil, fmt.Errorf("a %s tensor, not an integer one", t.Storage.DType.Name)
	}
	t.index(func(i, at int64) { out[i] = get(at) })
	return out, nil
}

// halfToFloat converts an IEEE 754 half-precision value.
func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	case exp == 0:
		if frac == 0 {
			return math.Float32frombits(sign)
		}
		v := float32(frac) / 1024 / 16384 // 2^-14 · frac/1024
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+112)<<23 | frac<<13)
}
