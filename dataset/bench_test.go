package dataset

import (
	"context"
	"io"
	"path/filepath"
	"sync"
	"testing"
)

const benchSize = 100 << 20

var benchText = sync.OnceValue(func() []byte { return BenchText(benchSize) })

// BenchmarkPrep measures prep on 100 MB of text beside plain zstd compression of the
// same bytes at the same level in the same run (the ceiling), and reports both and
// their ratio.
func BenchmarkPrep(b *testing.B) {
	text := benchText()
	dir := b.TempDir()
	in := writeFile(b, dir, "text.txt", text)
	for _, vocab := range []string{"char", "byte"} {
		b.Run("vocab="+vocab, func(b *testing.B) {
			var prepS, ceilS float64
			for b.Loop() {
				prep, ceil, err := PrepThroughput(context.Background(), text, in, filepath.Join(dir, "ds"), WithVocab(vocab))
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
	in := writeFile(b, dir, "text.txt", text)
	out := filepath.Join(dir, "ds")
	m, _ := mustPrep(b, out, []string{in}, WithSplit(1, 0, 0))
	tokens := m.Splits[0].Tokens
	b.Run("Tokens", func(b *testing.B) {
		for b.Loop() {
			r, err := Open(out)
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
		r, _ := Open(out)
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
		r, _ := Open(out)
		r.Tokens("train")
		bt, err := NewBatcher(r, "train", 16, 512)
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
