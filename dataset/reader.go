package dataset

import (
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"xspan/tokenize"
)

// Reader reads a dataset folder. Its methods are safe for concurrent use. Every shard
// read is checked against the manifest's token count and checksum.
type Reader struct {
	dir string
	m   *Manifest

	mu     sync.Mutex
	vocab  tokenize.Vocab
	splits map[string][]uint32 // whole splits loaded by Tokens
	masks  map[string][]bool   // whole split masks loaded by Scored
	last   struct {            // the last shard ReadAt decoded
		split string
		idx   int
		ids   []uint32
	}
}

// Open reads and checks dir/manifest.json.
func Open(dir string) (*Reader, error) {
	path := filepath.Join(dir, ManifestName)
	data, err := os.ReadFile(path)
	if err != nil {
		st, serr := os.Stat(dir)
		if serr == nil && st.IsDir() {
			return nil, fmt.Errorf("%s: not a dataset folder (no %s)", dir, ManifestName)
		}
		return nil, fileError(dir, err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Reader{dir: dir, m: m, splits: map[string][]uint32{}, last: struct {
		split string
		idx   int
		ids   []uint32
	}{idx: -1}}, nil
}

// Dir is the dataset folder.
func (r *Reader) Dir() string { return r.dir }

// Manifest returns the dataset's manifest; callers must not change it.
func (r *Reader) Manifest() *Manifest { return r.m }

// Vocab returns the dataset's vocabulary.
func (r *Reader) Vocab() (tokenize.Vocab, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.vocab == nil {
		v, err := tokenize.FromSpec(r.m.Vocab, r.dir)
		if err != nil {
			return nil, fmt.Errorf("%s: vocabulary: %w", filepath.Join(r.dir, ManifestName), err)
		}
		r.vocab = v
	}
	return r.vocab, nil
}

// SplitLen returns the number of tokens in a split.
func (r *Reader) SplitLen(split string) (int64, error) {
	s, err := r.m.Split(split)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", r.dir, err)
	}
	return s.Tokens, nil
}

// ShardPacked decodes shard i of a split and returns its packed little-endian ids (of the
// manifest's TokenWidth bytes each), checked against the manifest. dst is reused when
// large enough.
func (r *Reader) ShardPacked(split string, i int, dst []byte) ([]byte, error) {
	s, err := r.m.Split(split)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.dir, err)
	}
	if i < 0 || i >= len(s.Shards) {
		return nil, fmt.Errorf("%s: split %s has no shard %d", r.dir, split, i)
	}
	sh := s.Shards[i]
	path := filepath.Join(r.dir, sh.File)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fileError(path, err)
	}
	width, packed, err := decodeShard(data, sh.Tokens, dst)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if width != r.m.TokenWidth || int64(len(packed)/width) != sh.Tokens {
		return nil, fmt.Errorf("%s: holds %d tokens of %d bytes, manifest says %d of %d", path, len(packed)/width, width, sh.Tokens, r.m.TokenWidth)
	}
	if sum := checksum(packed); sum != sh.Checksum {
		return nil, fmt.Errorf("%s: checksum mismatch: tokens hash to %s, manifest says %s", path, sum, sh.Checksum)
	}
	return packed, nil
}

// Shard returns the ids of shard i of a split.
func (r *Reader) Shard(split string, i int) ([]uint32, error) {
	packed, err := r.ShardPacked(split, i, nil)
	if err != nil {
		return nil, err
	}
	ids := make([]uint32, len(packed)/r.m.TokenWidth)
	unpack(ids, packed, r.m.TokenWidth)
	return ids, nil
}

// All iterates over a split shard by shard, yielding each shard's ids (a buffer reused
// for the next shard) or the error that ends the iteration.
func (r *Reader) All(split string) iter.Seq2[[]uint32, error] {
	return func(yield func([]uint32, error) bool) {
		s, err := r.m.Split(split)
		if err != nil {
			yield(nil, fmt.Errorf("%s: %w", r.dir, err))
			return
		}
		var packed []byte
		var ids []uint32
		for i := range s.Shards {
			packed, err = r.ShardPacked(split, i, packed)
			if err != nil {
				yield(nil, err)
				return
			}
			n := len(packed) / r.m.TokenWidth
			if cap(ids) < n {
				ids = make([]uint32, n)
			}
			ids = ids[:n]
			unpack(ids, packed, r.m.TokenWidth)
			if !yield(ids, nil) {
				return
			}
		}
	}
}

// Tokens returns a whole split, decoded in parallel and kept for later calls (and for
// ReadAt). Callers must not change the returned slice.
func (r *Reader) Tokens(split string) ([]uint32, error) {
	return loadSplit(r, split, &r.splits, func() func(i int, dst []uint32) error {
		var packed []byte
		return func(i int, dst []uint32) (err error) {
			if packed, err = r.ShardPacked(split, i, packed); err == nil {
				unpack(dst, packed, r.m.TokenWidth)
			}
			return err
		}
	}, nil)
}

// loadSplit reads a whole split, a value per token, with one decode call per shard on
// a pool of workers (newWorker gives each worker its decode function, which fills dst,
// the shard's part of the split), then check, if given. It keeps the result in
// (*cache)[split] for later calls and returns what the cache holds if it is there.
func loadSplit[T any](r *Reader, split string, cache *map[string][]T, newWorker func() func(i int, dst []T) error, check func([]T) error) ([]T, error) {
	r.mu.Lock()
	all, ok := (*cache)[split]
	r.mu.Unlock()
	if ok {
		return all, nil
	}
	s, err := r.m.Split(split)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.dir, err)
	}
	all = make([]T, s.Tokens)
	offs := shardOffsets(s)
	errs := make([]error, len(s.Shards))
	parallel(len(s.Shards), workers(), func() (func(int), func()) {
		decode := newWorker()
		return func(i int) {
			errs[i] = decode(i, all[offs[i]:offs[i]+s.Shards[i].Tokens])
		}, nil
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if check != nil {
		if err := check(all); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	if *cache == nil {
		*cache = map[string][]T{}
	}
	(*cache)[split] = all
	r.mu.Unlock()
	return all, nil
}

// shardOffsets returns the split offset of each shard's first token.
func shardOffsets(s *Split) []int64 {
	offs := make([]int64, len(s.Shards))
	var off int64
	for i, sh := range s.Shards {
		offs[i] = off
		off += sh.Tokens
	}
	return offs
}

// ReadAt copies the split's tokens from offset off into dst, like io.ReaderAt: it
// returns io.EOF when fewer than len(dst) tokens are left. It decodes only the shards
// it needs (unless Tokens has loaded the split).
func (r *Reader) ReadAt(split string, off int64, dst []uint32) (int, error) {
	s, err := r.m.Split(split)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", r.dir, err)
	}
	if off < 0 {
		return 0, fmt.Errorf("%s: split %s: negative offset %d", r.dir, split, off)
	}
	r.mu.Lock()
	all, ok := r.splits[split]
	r.mu.Unlock()
	if ok {
		if off >= int64(len(all)) {
			return 0, io.EOF
		}
		n := copy(dst, all[off:])
		if n < len(dst) {
			return n, io.EOF
		}
		return n, nil
	}
	starts := make([]int64, len(s.Shards)+1)
	for i, sh := range s.Shards {
		starts[i+1] = starts[i] + sh.Tokens
	}
	n := 0
	for n < len(dst) {
		pos := off + int64(n)
		if pos >= s.Tokens {
			return n, io.EOF
		}
		i := sort.Search(len(s.Shards), func(i int) bool { return starts[i+1] > pos })
		ids, err := r.cachedShard(split, i)
		if err != nil {
			return n, err
		}
		n += copy(dst[n:], ids[pos-starts[i]:])
	}
	return n, nil
}

func (r *Reader) cachedShard(split string, i int) ([]uint32, error) {
	r.mu.Lock()
	if r.last.split == split && r.last.idx == i {
		ids := r.last.ids
		r.mu.Unlock()
		return ids, nil
	}
	r.mu.Unlock()
	ids, err := r.Shard(split, i)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.last.split, r.last.idx, r.last.ids = split, i, ids
	r.mu.Unlock()
	return ids, nil
}
