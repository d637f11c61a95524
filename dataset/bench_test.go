package dataset

import (
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

const benchSize = 100 << 20

var benchText = sync.OnceValue(func() []byte {
	// Word-like ASCII text with some Unicode: about as compressible as English prose.
	rng := rand.New(rand.NewPCG(42, 42))
	var words []string
	for range 5000 {
		n := 1 + rng.IntN(9)
		var b strings.Builder
		for range n {
			b.WriteByte(byte('a' + rng.IntN(26)))
		}
		words = append(words, b.String())
	}
	words = append(words, "é", "naïve", "日本", "—")
	out := make([]byte, 0, benchSize+64)
	for len(out) < benchSize {
		w := words[int(float64(len(words))*rng.Float64()*rng.Float64())] // skewed, Zipf-like
		out = append(out, w...)
		switch rng.IntN(12) {
		case 0:
			out = append(out, '.', '\n')
		case 1:
			out = append(out, ',', ' ')
		default:
			out = append(out, ' ')
		}
	}
	return out[:benchSize]
})

// zstdCeiling returns the MB/s of plain zstd compression of text at level on all
// cores: the better of the streaming encoder and parallel EncodeAll over 4 MB blocks.
func zstdCeiling(b *testing.B, text []byte, level int) float64 {
	lvl := zstd.EncoderLevelFromZstd(level)
	start := time.Now()
	w, _ := zstd.NewWriter(io.Discard, zstd.WithEncoderLevel(lvl), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)))
	w.Write(text)
	w.Close()
	stream := float64(len(text)) / 1e6 / time.Since(start).Seconds()

	start = time.Now()
	var wg sync.WaitGroup
	next := make(chan []byte)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(lvl), zstd.WithEncoderConcurrency(1))
			var dst []byte
			for blk := range next {
				dst = enc.EncodeAll(blk, dst[:0])
			}
		}()
	}
	for t := text; len(t) > 0; {
		n := min(len(t), DefaultShardTokens)
		next <- t[:n]
		t = t[n:]
	}
	close(next)
	wg.Wait()
	return max(stream, float64(len(text))/1e6/time.Since(start).Seconds())
}

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
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				ceil := zstdCeiling(b, text, DefaultLevel)
				runtime.GC()
				out := filepath.Join(dir, "ds")
				os.RemoveAll(out)
				b.StartTimer()
				start := time.Now()
				if _, err := Prep(context.Background(), out, []string{in}, WithVocab(vocab)); err != nil {
					b.Fatal(err)
				}
				prepS += float64(len(text)) / 1e6 / time.Since(start).Seconds()
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
