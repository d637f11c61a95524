package dataset

import (
	"sync"

	"github.com/klauspost/compress/zstd"
)

// parallel runs task(i) for every i in [0, n) on at most workers goroutines. Each
// goroutine gets its own task from newWorker (so that it can keep buffers or an encoder
// across items) and calls done, if not nil, when it has no more items.
func parallel(n, workers int, newWorker func() (task func(i int), done func())) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			task, done := newWorker()
			if done != nil {
				defer done()
			}
			for i := range next {
				task(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// parallelEncode is parallel for shard writers: each goroutine gets its own zstd encoder
// at the given level (single-threaded: the parallelism is across shards).
func parallelEncode(n, workers, level int, newWorker func(enc *zstd.Encoder) func(i int)) {
	zlevel := zstd.EncoderLevelFromZstd(level)
	parallel(n, workers, func() (func(int), func()) {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zlevel), zstd.WithEncoderConcurrency(1))
		if err != nil {
			panic(err) // only bad options fail
		}
		return newWorker(enc), func() { enc.Close() }
	})
}
