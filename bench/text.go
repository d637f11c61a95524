package bench

import (
	"context"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"xspan/dataset"
)

// Text returns size bytes of word-like ASCII text with some Unicode, about as
// compressible as English prose, the same on every call: the input of the prep benchmark.
func Text(size int) []byte {
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
	out := make([]byte, 0, size+64)
	for len(out) < size {
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
	return out[:size]
}

// ZstdCeiling returns the MB/s of plain zstd compression of text at level on all cores:
// the better of the streaming encoder and parallel EncodeAll over shard-sized blocks.
// It is the ceiling that prep's throughput is measured against.
func ZstdCeiling(text []byte, level int) float64 {
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
		n := min(len(t), dataset.DefaultShardTokens)
		next <- t[:n]
		t = t[n:]
	}
	close(next)
	wg.Wait()
	return max(stream, float64(len(text))/1e6/time.Since(start).Seconds())
}

// PrepThroughput measures one prep of the file in (holding text) into out, removed
// first, beside ZstdCeiling of text at the default level, measured just before. It
// returns both in MB/s of input.
func PrepThroughput(ctx context.Context, text []byte, in, out string, opts ...dataset.Option) (prepMBs, ceilMBs float64, err error) {
	ceilMBs = ZstdCeiling(text, dataset.DefaultLevel)
	runtime.GC()
	if err := os.RemoveAll(out); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	if _, err := dataset.Prep(ctx, out, []string{in}, opts...); err != nil {
		return 0, 0, err
	}
	return float64(len(text)) / 1e6 / time.Since(start).Seconds(), ceilMBs, nil
}
