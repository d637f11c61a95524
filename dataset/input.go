package dataset

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Enwik8 facts: the Hutter Prize file and its standard split.
const (
	Enwik8Size  = 100_000_000
	Enwik8Train = 90_000_000
	Enwik8Valid = 5_000_000
	enwik8Name  = "enwik8"
)

var (
	magicGzip = []byte{0x1f, 0x8b}
	magicZstd = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicZip  = []byte("PK\x03\x04")
)

// isEnwik8Name reports whether a file's name marks it as enwik8 for --format auto.
func isEnwik8Name(path string) bool {
	b := filepath.Base(path)
	return b == enwik8Name || b == enwik8Name+".zip"
}

// expandInputs turns files, folders and glob patterns into a list of files, in the
// order given (a folder's files and a pattern's matches in lexical order; hidden files
// in folders are skipped).
func expandInputs(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		if strings.ContainsAny(a, "*?[") {
			if _, err := os.Lstat(a); err != nil {
				m, err := filepath.Glob(a)
				if err != nil {
					return nil, fmt.Errorf("%s: bad pattern: %w", a, err)
				}
				if len(m) == 0 {
					return nil, fmt.Errorf("%s: matches no file", a)
				}
				files, err := expandInputs(m)
				if err != nil {
					return nil, err
				}
				out = append(out, files...)
				continue
			}
		}
		st, err := os.Stat(a)
		if err != nil {
			return nil, fileError(a, err)
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		var files []string
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p != a && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.Type().IsRegular() {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return nil, fileError(a, err)
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("%s: folder holds no files", a)
		}
		slices.Sort(files)
		out = append(out, files...)
	}
	return out, nil
}

// fileError turns an os error into "path: problem".
func fileError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &pathError{path, "no such file or folder", err}
	case errors.Is(err, fs.ErrPermission):
		return &pathError{path, "permission denied", err}
	}
	return &pathError{path, err.Error(), err}
}

// pathError is a file error said plainly ("PATH: no such file or folder") that still
// answers errors.Is(err, fs.ErrNotExist).
type pathError struct {
	path, msg string
	err       error
}

func (e *pathError) Error() string { return e.path + ": " + e.msg }
func (e *pathError) Unwrap() error { return e.err }

// readInput returns a file's content, decompressed when it starts with a gzip or zstd
// magic number. A zip archive is read only when member is not empty: then the content
// is that member's (itself possibly gzip- or zstd-compressed).
func readInput(path, member string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileError(path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fileError(path, err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s: is a folder", path)
	}
	var head [4]byte
	n, _ := f.ReadAt(head[:], 0)
	if !bytes.HasPrefix(head[:n], magicZip) && !bytes.HasPrefix(head[:n], magicGzip) && !bytes.HasPrefix(head[:n], magicZstd) {
		// Plain text: one read into a buffer of the right size.
		data := make([]byte, st.Size())
		if _, err := io.ReadFull(f, data); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return data, nil
	}
	br := bufio.NewReaderSize(f, 1<<20)
	if bytes.HasPrefix(head[:n], magicZip) {
		if member == "" {
			return nil, fmt.Errorf("%s: a zip archive; only enwik8.zip is read as a zip (use --format enwik8)", path)
		}
		return readZipMember(path, f, st.Size(), member)
	}
	data, err := readMaybeCompressed(br, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, nil
}

// readMaybeCompressed reads all of r, decompressing gzip or zstd by magic number.
// sizeHint is the stored size, used to size the buffer.
func readMaybeCompressed(r *bufio.Reader, sizeHint int64) ([]byte, error) {
	head, _ := r.Peek(4)
	switch {
	case bytes.HasPrefix(head, magicGzip):
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("corrupt gzip data: %w", err)
		}
		data, err := readAllHint(zr, 4*sizeHint)
		if err != nil {
			return nil, fmt.Errorf("truncated or corrupt gzip data: %w", err)
		}
		return data, nil
	case bytes.HasPrefix(head, magicZstd):
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<31))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		data, err := readAllHint(zr, 4*sizeHint)
		if err != nil {
			return nil, fmt.Errorf("truncated or corrupt zstd data: %w", err)
		}
		return data, nil
	}
	return readAllHint(r, sizeHint)
}

func readAllHint(r io.Reader, hint int64) ([]byte, error) {
	if hint < 512 {
		hint = 512
	}
	if hint > 1<<30 {
		hint = 1 << 30
	}
	buf := bytes.NewBuffer(make([]byte, 0, hint+bytes.MinRead))
	_, err := buf.ReadFrom(r)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return buf.Bytes(), err
}

func readZipMember(path string, f *os.File, size int64, member string) ([]byte, error) {
	zr, err := zip.NewReader(f, size)
	if err != nil {
		return nil, fmt.Errorf("%s: truncated or corrupt zip archive: %w", path, err)
	}
	var names []string
	for _, zf := range zr.File {
		if zf.Name != member {
			names = append(names, zf.Name)
			continue
		}
		rc, err := zf.Open()
		if err != nil {
			return nil, fmt.Errorf("%s: member %s: %w", path, member, err)
		}
		defer rc.Close()
		data, err := readMaybeCompressed(bufio.NewReaderSize(rc, 1<<20), int64(zf.UncompressedSize64))
		if err != nil {
			return nil, fmt.Errorf("%s: member %s: truncated or corrupt: %w", path, member, err)
		}
		return data, nil
	}
	if len(names) > 5 {
		names = append(names[:5], "…")
	}
	return nil, fmt.Errorf("%s: zip archive has no member named %s (it has: %s)", path, member, strings.Join(names, ", "))
}

// segment is one input file's place in the concatenated text.
type segment struct {
	path  string
	start int64 // offset in the concatenation
	size  int64
}

// rangesOf returns the file ranges that cover [a, b) of a concatenation.
func rangesOf(segs []segment, a, b int64) []SourceRange {
	var out []SourceRange
	for _, s := range segs {
		lo, hi := max(a, s.start), min(b, s.start+s.size)
		if lo < hi {
			out = append(out, SourceRange{Path: s.path, Offset: lo - s.start, Length: hi - lo})
		}
	}
	return out
}

// locate returns the file and its local offset of concatenation offset off.
func locate(segs []segment, off int64) (string, int64) {
	for _, s := range segs {
		if off < s.start+s.size {
			return s.path, off - s.start
		}
	}
	if len(segs) == 0 {
		return "", off
	}
	last := segs[len(segs)-1]
	return last.path, off - last.start
}
