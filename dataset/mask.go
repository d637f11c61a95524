package dataset

import (
	"fmt"
	"os"
	"path/filepath"
)

// HasMask reports whether the dataset has scored-positions masks: its manifest
// requires FeatureScoredMask and every shard has a mask file.
func (r *Reader) HasMask() bool {
	for _, f := range r.m.Requires {
		if f == FeatureScoredMask {
			return true
		}
	}
	return false
}

// ScoredShard returns the scored mask of shard i of a split: one bool per token, true
// where the token is scored. The mask file is checked against the manifest (size,
// checksum, values 0 or 1).
func (r *Reader) ScoredShard(split string, i int) ([]bool, error) {
	s, err := r.m.Split(split)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.dir, err)
	}
	if i < 0 || i >= len(s.Shards) {
		return nil, fmt.Errorf("%s: split %s has no shard %d", r.dir, split, i)
	}
	sh := s.Shards[i]
	if sh.Mask == nil {
		return nil, fmt.Errorf("%s: split %s has no scored mask (the dataset does not require %s)", r.dir, split, FeatureScoredMask)
	}
	path := filepath.Join(r.dir, sh.Mask.File)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fileError(path, err)
	}
	width, packed, err := decodeShard(data, sh.Tokens, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if width != 1 || int64(len(packed)) != sh.Tokens {
		return nil, fmt.Errorf("%s: holds %d mask values of %d bytes, want %d of 1 byte (one per token of %s)", path, len(packed)/width, width, sh.Tokens, sh.File)
	}
	if sum := checksum(packed); sum != sh.Mask.Checksum {
		return nil, fmt.Errorf("%s: checksum mismatch: mask hashes to %s, manifest says %s", path, sum, sh.Mask.Checksum)
	}
	out := make([]bool, len(packed))
	for k, v := range packed {
		if v > 1 {
			return nil, fmt.Errorf("%s: mask value %d at position %d (want 0 or 1)", path, v, k)
		}
		out[k] = v == 1
	}
	return out, nil
}

// Scored returns a whole split's scored mask, one bool per token (true: scored), kept
// for later calls; callers must not change it. It is an error for a dataset without
// masks (see HasMask), or when the mask's count of scored tokens differs from the
// manifest's Split.Scored.
func (r *Reader) Scored(split string) ([]bool, error) {
	return loadSplit(r, split, &r.masks, func() func(i int, dst []bool) error {
		return func(i int, dst []bool) error {
			part, err := r.ScoredShard(split, i)
			copy(dst, part)
			return err
		}
	}, func(mask []bool) error {
		var n int64
		for _, v := range mask {
			if v {
				n++
			}
		}
		s, _ := r.m.Split(split)
		if n != s.Scored {
			return fmt.Errorf("%s: split %s: masks score %d tokens, manifest says %d", filepath.Join(r.dir, ManifestName), split, n, s.Scored)
		}
		return nil
	})
}
