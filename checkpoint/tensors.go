package checkpoint

import (
	"archive/zip"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/cespare/xxhash/v2"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"xspan/internal/safetensors"
	"xspan/internal/torchrt"
)

// Tensor files. Format 2 writes safetensors from Go (never libtorch's writer, which
// aborts the process when a write fails); format 1's .ot files (libtorch archives, which
// are zip files) are still read, after archive/zip has checked every entry's CRC-32, so
// that a damaged file is an error naming it rather than a crash inside libtorch.

// FileSum is the size and checksum of a checkpoint file, as the HEADER lists it.
type FileSum struct {
	Size  int64  `json:"size"`
	XXH64 string `json:"xxh64"` // 16 hex digits
}

func sumOf(data []byte) FileSum {
	return FileSum{Size: int64(len(data)), XXH64: fmt.Sprintf("%016x", xxhash.Sum64(data))}
}

// FaultHook, when not nil, is asked for each file this package writes how many of its
// bytes the disk takes (negative: all of them); writes beyond fail with ENOSPC, as on a
// full disk. Tests set it to inject a full disk; it must not change while a checkpoint is
// being written.
var FaultHook func(path string) (room int64)

// file is a file being written: its size and checksum so far, and the room FaultHook
// leaves it.
type file struct {
	f       *os.File
	path    string
	written int64
	sum     *xxhash.Digest
	room    int64
}

func (w *file) Write(p []byte) (int, error) {
	if w.room >= 0 && w.written+int64(len(p)) > w.room {
		n, _ := w.f.Write(p[:w.room-w.written])
		w.written += int64(n)
		w.sum.Write(p[:n])
		return n, &os.PathError{Op: "write", Path: w.path, Err: syscall.ENOSPC}
	}
	n, err := w.f.Write(p)
	w.written += int64(n)
	w.sum.Write(p[:n])
	return n, err
}

// writeFileWith creates path, lets fill write its contents through a buffer, syncs and
// closes it, and returns its size and checksum. On error the file is removed.
func writeFileWith(path string, fill func(io.Writer) error) (FileSum, error) {
	f, err := os.Create(path)
	if err != nil {
		return FileSum{}, err
	}
	w := &file{f: f, path: path, sum: xxhash.New(), room: -1}
	if FaultHook != nil {
		w.room = FaultHook(path)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	err = fill(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return FileSum{}, err
	}
	return FileSum{Size: w.written, XXH64: fmt.Sprintf("%016x", w.sum.Sum64())}, nil
}

// writeFileSum writes data to path, synced, and returns its size and checksum.
func writeFileSum(path string, data []byte) (FileSum, error) {
	return writeFileWith(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// SaveTensors writes named tensors to path as a safetensors file (the metadata meta,
// plus the data's checksum), synced, and returns the file's size and checksum. Tensors
// are copied to Go first; float32, float64 and int64 tensors are supported.
func SaveTensors(path string, named []ts.NamedTensor, meta map[string]string) (FileSum, error) {
	tensors := make([]safetensors.Tensor, 0, len(named))
	for _, n := range named {
		dtype, shape, data, err := torchrt.Raw(n.Tensor)
		if err != nil {
			return FileSum{}, fmt.Errorf("%s: tensor %s: %w", path, n.Name, err)
		}
		tensors = append(tensors, safetensors.Tensor{Name: n.Name, DType: dtype, Shape: shape, Data: data})
	}
	sum, err := writeFileWith(path, func(w io.Writer) error { return safetensors.Encode(w, tensors, meta) })
	if err != nil {
		return FileSum{}, err
	}
	return sum, nil
}

// LoadTensors reads the tensor file at path onto dev: a safetensors file (format 2) or a
// libtorch .ot file (format 1). With want set, the file must have that size and checksum.
// Every error names the file and says what is wrong in one line; the caller owns the
// tensors returned.
func LoadTensors(path string, dev gotch.Device, want *FileSum) ([]ts.NamedTensor, error) {
	data, err := readChecked(path, want)
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(path, ".ot") {
		return loadOT(path, data, dev)
	}
	f, err := safetensors.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []ts.NamedTensor
	for _, t := range f.Tensors {
		x, err := torchrt.FromRaw(t.DType, t.Shape, t.Data, dev)
		if err != nil {
			dropNamed(out)
			return nil, fmt.Errorf("%s: tensor %s: %w", path, t.Name, err)
		}
		out = append(out, ts.NamedTensor{Name: t.Name, Tensor: x})
	}
	return out, nil
}

// readChecked reads a whole checkpoint file, checking its size and checksum against
// want when given (and reading no more than want.Size bytes).
func readChecked(path string, want *FileSum) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: missing from the checkpoint", path)
		}
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if want != nil && st.Size() != want.Size {
		return nil, fmt.Errorf("%s: %d bytes, the HEADER says %d: the file is truncated or damaged", path, st.Size(), want.Size)
	}
	data := make([]byte, st.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if want != nil {
		if got := sumOf(data); got.XXH64 != want.XXH64 {
			return nil, fmt.Errorf("%s: checksum %s does not match the HEADER's %s: the file is damaged", path, got.XXH64, want.XXH64)
		}
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%s: empty file", path)
	}
	return data, nil
}

// loadOT checks a format-1 .ot file (a zip archive) entry by entry, CRC-32 included,
// and only then lets libtorch read it.
func loadOT(path string, data []byte, dev gotch.Device) ([]ts.NamedTensor, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("%s: not a readable tensor archive (truncated or damaged): %v", path, err)
	}
	if len(zr.File) == 0 {
		return nil, fmt.Errorf("%s: a tensor archive with no entries", path)
	}
	for _, e := range zr.File {
		r, err := e.Open()
		if err == nil {
			_, err = io.Copy(io.Discard, r)
			r.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("%s: entry %s is damaged: %v", path, e.Name, err)
		}
	}
	named, err := ts.LoadMultiWithDevice(path, dev)
	if err != nil {
		first, _, _ := strings.Cut(err.Error(), "\n")
		return nil, fmt.Errorf("%s: libtorch cannot read it: %s", path, first)
	}
	return named, nil
}

func dropNamed(named []ts.NamedTensor) {
	for _, n := range named {
		n.Tensor.MustDrop()
	}
}

// tensorFile is the name of a checkpoint's tensor file of kind (weights, optim,
// memory-<i>) in a checkpoint of format.
func tensorFile(format int, kind string) string {
	if format == 1 {
		return kind + ".ot"
	}
	return kind + ".safetensors"
}

// path of a file of the checkpoint.
func (ck *Checkpoint) file(name string) string { return filepath.Join(ck.Path, name) }
