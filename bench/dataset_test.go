package bench

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"xspan/dataset"
)

const benchSize = 100 << 20

var benchText = sync.OnceValue(func() []byte { return Text(benchSize) })

// The benchmarks of package dataset, run with `go test -bench . ./bench/`.

// BenchmarkPrep measures prep on 100 MB of text beside plain zstd compression of the
// same bytes at the same level in the same run (the ceiling), and reports both and
// their ratio.
func BenchmarkPrep(b *testing.B) {
	text := benchText()
	dir := b.TempDir()
	in := writeText(b, dir, text)
	for _, vocab := range []string{"char", "byte"} {
		b.Run("vocab="+vocab, func(b *testing.B) {
			var prepS, ceilS float64
			for b.Loop() {
				prep, ceil, err := PrepThroughput(context.Background(), text, in, filepath.Join(dir, "ds"), dataset.WithVocab(vocab))
				if err != nil {
					b.Fatal(err)
				}
				prepS += prep
				ceilS += ceil
			}
			n := float64(b.N)
			b.ReportMetric(prepS/n, "prep-MB/s")
			b.ReportMetric(ceilS/n, "zstd-MB/s")
			b.ReportMetric(100*prepS/ceilS, "%-of-ceiling")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkRead measures reading a whole 100 MB split (decompress, checksum, widen to
// uint32) in tokens/s, and the Batcher on top of it.
func BenchmarkRead(b *testing.B) {
	text := benchText()
	dir := b.TempDir()
	in := writeText(b, dir, text)
	out := filepath.Join(dir, "ds")
	m, err := dataset.Prep(context.Background(), out, []string{in}, dataset.WithSplit(1, 0, 0))
	if err != nil {
		b.Fatal(err)
	}
	tokens := m.Splits[0].Tokens
	b.Run("Tokens", func(b *testing.B) {
		for b.Loop() {
			r, err := dataset.Open(out)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := r.Tokens("train"); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(tokens)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mtokens/s")
	})
	b.Run("All", func(b *testing.B) {
		r, _ := dataset.Open(out)
		for b.Loop() {
			for _, err := range r.All("train") {
				if err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(tokens)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mtokens/s")
	})
	b.Run("Batcher", func(b *testing.B) {
		r, _ := dataset.Open(out)
		r.Tokens("train")
		bt, err := dataset.NewBatcher(r, "train", 16, 512)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for b.Loop() {
			if _, err := bt.Next(); err == io.EOF {
				bt.SetPosition(0)
			}
			n++
		}
		b.ReportMetric(float64(16*513*n)/b.Elapsed().Seconds()/1e6, "Mtokens/s")
	})
}

func writeText(b *testing.B, dir string, text []byte) string {
	path := filepath.Join(dir, "text.txt")
	if err := os.WriteFile(path, text, 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}
