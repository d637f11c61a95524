package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"xspan/dataset"
)

// PrepResult is prep throughput beside its ceiling.
type PrepResult struct {
	Bytes   int
	PrepMBs float64 // prep, char vocabulary, all cores
	ZstdMBs float64 // plain zstd of the same bytes at the same level: the ceiling
}

func (r PrepResult) String() string {
	return fmt.Sprintf("prep: %.1f MB/s (char vocabulary, %d MB of text), zstd ceiling %.1f MB/s (level %d, same run): %.0f%% of the ceiling",
		r.PrepMBs, r.Bytes>>20, r.ZstdMBs, dataset.DefaultLevel, 100*r.PrepMBs/r.ZstdMBs)
}

// Prep measures PrepThroughput on size bytes of Text in a temporary
// folder.
func Prep(ctx context.Context, size int) (PrepResult, error) {
	dir, err := os.MkdirTemp("", "xspan-bench-prep-")
	if err != nil {
		return PrepResult{}, err
	}
	defer os.RemoveAll(dir)
	text := Text(size)
	in := filepath.Join(dir, "text.txt")
	if err := os.WriteFile(in, text, 0o644); err != nil {
		return PrepResult{}, err
	}
	p, c, err := PrepThroughput(ctx, text, in, filepath.Join(dir, "ds"), dataset.WithVocab("char"))
	return PrepResult{Bytes: size, PrepMBs: p, ZstdMBs: c}, err
}

// TextDataset prepares size bytes of Text as a char dataset (90/5/5) in
// dir/data and returns its folder.
func TextDataset(ctx context.Context, dir string, size int) (string, error) {
	in := filepath.Join(dir, "text.txt")
	if err := os.WriteFile(in, Text(size), 0o644); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "data")
	_, err := dataset.Prep(ctx, out, []string{in}, dataset.WithVocab("char"), dataset.WithSplit(0.9, 0.05, 0.05))
	return out, err
}
