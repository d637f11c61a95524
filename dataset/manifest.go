package dataset

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"xspan/tokenize"
)

// FormatName and Version identify a dataset folder's manifest.json. A reader accepts
// only its own Version. Within a version, fields a reader does not know are ignored, so
// optional information may be added (say, a split's example length); information that a
// reader must not ignore (say, the scored-positions masks of a copy task) is named in
// the manifest's Requires list, and a reader refuses a manifest that requires what it
// does not know.
const (
	FormatName   = "xspan-dataset"
	Version      = 1
	ManifestName = "manifest.json"
)

// FeatureScoredMask is the one feature version 1 may require: every shard has a
// scored-positions mask file ([Shard].Mask), and only the scored tokens count in the
// loss. A reader that ignored it would train and evaluate on unscored tokens.
const FeatureScoredMask = "scored-mask"

// Newline policies.
const (
	NewlinesKeep = "keep"
	NewlinesDrop = "drop"
)

// Manifest describes a dataset folder.
type Manifest struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// Requires lists features a reader must understand to read this dataset; version 1
	// defines one, [FeatureScoredMask].
	Requires []string `json:"requires,omitempty"`
	// Input is "enwik8", "text" or "synthetic" (generated; Task says how).
	Input string        `json:"input"`
	Vocab tokenize.Spec `json:"vocab"`
	// Newlines is "keep" or "drop": whether '\n' bytes were removed before tokenizing.
	Newlines string `json:"newlines"`
	// Encoding is the inputs' encoding when it was not UTF-8 ("latin-1", "cp1252"): the
	// text was turned into UTF-8 first, so source ranges count the inputs' own bytes but
	// the splits' Bytes count UTF-8 bytes.
	Encoding string `json:"encoding,omitempty"`
	// Invalid is what was done with invalid UTF-8 ("replace" with U+FFFD, "skip") when it
	// was not refused, and InvalidCount how many sequences it changed, over all inputs.
	Invalid      string `json:"invalid_utf8,omitempty"`
	InvalidCount int64  `json:"invalid_utf8_count,omitempty"`
	// TokenWidth is the bytes per token id in the shards: 1, 2 or 4, little-endian.
	TokenWidth  int         `json:"token_width"`
	Compression Compression `json:"compression"`
	Splits      []Split     `json:"splits"`
	// Task describes how a synthetic dataset was generated; nil for a corpus.
	Task *Task `json:"task,omitempty"`
}

// Compression records how the shards were compressed.
type Compression struct {
	Codec string `json:"codec"` // "zstd"
	Level int    `json:"level"` // zstd level, 1..22
}

// Split is one split of the dataset: its tokens, the text they came from and the
// shards that hold them.
type Split struct {
	Name   string `json:"name"`
	Tokens int64  `json:"tokens"`
	// Bytes and Chars count the UTF-8 bytes and the Unicode characters of the text that
	// was tokenized (after the newline policy); bits per character is the split's total
	// bits over Chars. Invalid UTF-8 (byte vocabulary only) counts one character a byte.
	Bytes int64 `json:"bytes"`
	Chars int64 `json:"chars"`
	// DroppedNewlines is the number of '\n' bytes removed by the "drop" policy.
	DroppedNewlines int64 `json:"dropped_newlines"`
	// Unk is the number of <unk> tokens (char vocabulary only).
	Unk    int64   `json:"unk"`
	Source Source  `json:"source"`
	Shards []Shard `json:"shards"`
	// ExampleLen, when not 0, says the split is a sequence of examples of ExampleLen
	// tokens each (Tokens is a multiple of it): example k is tokens k*ExampleLen up to
	// (k+1)*ExampleLen. A Batcher then starts its streams at example boundaries.
	ExampleLen int64 `json:"example_len,omitempty"`
	// Scored is the number of tokens whose scored mask is 1 (with FeatureScoredMask).
	Scored int64 `json:"scored,omitempty"`
}

// Source is the input text a split was made from, before the newline policy.
type Source struct {
	Bytes    int64         `json:"bytes"`
	Checksum string        `json:"checksum"`
	Ranges   []SourceRange `json:"ranges"`
}

// SourceRange is a byte range of one input file (decompressed).
type SourceRange struct {
	Path   string `json:"path"`
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
}

// Shard is one shard file of a split.
type Shard struct {
	File   string `json:"file"`
	Tokens int64  `json:"tokens"`
	Bytes  int64  `json:"bytes"` // size of the file
	// Checksum is "xxh64:<16 hex digits>" of the decompressed packed token ids.
	Checksum string `json:"checksum"`
	// Mask is the shard's scored-positions mask; present exactly when the manifest
	// requires FeatureScoredMask.
	Mask *MaskFile `json:"mask,omitempty"`
}

// MaskFile is the scored-positions mask of one shard. Its file has the shard format
// (header and one zstd frame) with 1-byte values, one per token of the shard: 1 if the
// token is scored (counts in the loss when it is a target), 0 if not.
type MaskFile struct {
	File  string `json:"file"`
	Bytes int64  `json:"bytes"` // size of the file
	// Checksum is "xxh64:<16 hex digits>" of the decompressed mask bytes.
	Checksum string `json:"checksum"`
}

// Split returns the named split.
func (m *Manifest) Split(name string) (*Split, error) {
	for i := range m.Splits {
		if m.Splits[i].Name == name {
			return &m.Splits[i], nil
		}
	}
	names := make([]string, len(m.Splits))
	for i, s := range m.Splits {
		names[i] = s.Name
	}
	return nil, fmt.Errorf("no split %q (the dataset has %s)", name, strings.Join(names, ", "))
}

// ParseManifest parses and checks manifest.json bytes.
func ParseManifest(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("not a valid manifest: %w", err)
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Marshal returns the manifest as indented JSON.
func (m *Manifest) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func (m *Manifest) check() error {
	if m.Format != FormatName {
		return fmt.Errorf("not an xspan dataset manifest (format %q, want %q)", m.Format, FormatName)
	}
	if m.Version != Version {
		return fmt.Errorf("manifest version %d is not supported (this xspan reads version %d)", m.Version, Version)
	}
	hasMask := false
	var unknown []string
	for _, f := range m.Requires {
		if f == FeatureScoredMask {
			hasMask = true
		} else {
			unknown = append(unknown, f)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("manifest requires features this xspan does not know: %s", strings.Join(unknown, ", "))
	}
	if len(m.Requires) == 0 {
		m.Requires = nil // "requires": [] means none
	}
	switch m.Vocab.Kind {
	case tokenize.KindByte, tokenize.KindChar, tokenize.KindHF:
	default:
		return fmt.Errorf("manifest: unknown vocabulary kind %q", m.Vocab.Kind)
	}
	if m.Vocab.Size <= 0 {
		return fmt.Errorf("manifest: vocabulary size %d", m.Vocab.Size)
	}
	if m.Vocab.Kind == tokenize.KindHF && !validFileName(m.Vocab.File) {
		return fmt.Errorf("manifest: bad tokenizer file name %q", m.Vocab.File)
	}
	switch m.TokenWidth {
	case 1, 2, 4:
	default:
		return fmt.Errorf("manifest: token width %d (want 1, 2 or 4)", m.TokenWidth)
	}
	if m.TokenWidth < tokenize.Width(m.Vocab.Size) {
		return fmt.Errorf("manifest: %d ids do not fit %d-byte tokens", m.Vocab.Size, m.TokenWidth)
	}
	if m.Newlines != NewlinesKeep && m.Newlines != NewlinesDrop {
		return fmt.Errorf("manifest: newline policy %q (want keep or drop)", m.Newlines)
	}
	if m.Compression.Codec != "zstd" {
		return fmt.Errorf("manifest: compression %q (want zstd)", m.Compression.Codec)
	}
	if len(m.Splits) == 0 {
		return errors.New("manifest: no splits")
	}
	seen := map[string]bool{}
	files := map[string]bool{}
	for _, s := range m.Splits {
		if s.Name == "" || seen[s.Name] {
			return fmt.Errorf("manifest: empty or repeated split name %q", s.Name)
		}
		seen[s.Name] = true
		if s.Tokens < 0 || s.Bytes < 0 || s.Chars < 0 || s.Unk < 0 || s.DroppedNewlines < 0 || s.ExampleLen < 0 || s.Scored < 0 {
			return fmt.Errorf("manifest: split %s: negative count", s.Name)
		}
		if s.ExampleLen > 0 && s.Tokens%s.ExampleLen != 0 {
			return fmt.Errorf("manifest: split %s: %d tokens are not a whole number of examples of %d", s.Name, s.Tokens, s.ExampleLen)
		}
		if s.Scored > s.Tokens {
			return fmt.Errorf("manifest: split %s: %d scored tokens of %d", s.Name, s.Scored, s.Tokens)
		}
		if s.Scored != 0 && !hasMask {
			return fmt.Errorf("manifest: split %s: %d scored tokens, but the manifest does not require %s", s.Name, s.Scored, FeatureScoredMask)
		}
		var sum int64
		for _, sh := range s.Shards {
			if !validFileName(sh.File) || files[sh.File] {
				return fmt.Errorf("manifest: split %s: bad or repeated shard file name %q", s.Name, sh.File)
			}
			files[sh.File] = true
			if sh.Tokens <= 0 || sh.Tokens > maxShardTokens || sh.Bytes < shardHeaderSize {
				return fmt.Errorf("manifest: split %s: shard %s: bad size", s.Name, sh.File)
			}
			if _, err := parseChecksum(sh.Checksum); err != nil {
				return fmt.Errorf("manifest: split %s: shard %s: %w", s.Name, sh.File, err)
			}
			if err := checkMaskFile(sh, hasMask, files); err != nil {
				return fmt.Errorf("manifest: split %s: shard %s: %w", s.Name, sh.File, err)
			}
			sum += sh.Tokens
		}
		if sum != s.Tokens {
			return fmt.Errorf("manifest: split %s: %d tokens, but its shards hold %d", s.Name, s.Tokens, sum)
		}
	}
	return nil
}

// checkMaskFile checks a shard's mask entry against the manifest's Requires and adds
// its file name to files.
func checkMaskFile(sh Shard, required bool, files map[string]bool) error {
	switch {
	case sh.Mask == nil && required:
		return fmt.Errorf("no mask file, but the manifest requires %s", FeatureScoredMask)
	case sh.Mask == nil:
		return nil
	case !required:
		return fmt.Errorf("mask file %s, but the manifest does not require %s", sh.Mask.File, FeatureScoredMask)
	}
	mk := sh.Mask
	if !validFileName(mk.File) || files[mk.File] {
		return fmt.Errorf("bad or repeated mask file name %q", mk.File)
	}
	files[mk.File] = true
	if mk.Bytes < shardHeaderSize {
		return fmt.Errorf("mask %s: bad size", mk.File)
	}
	if _, err := parseChecksum(mk.Checksum); err != nil {
		return fmt.Errorf("mask %s: %w", mk.File, err)
	}
	return nil
}

// validFileName reports whether name is a plain file name inside the dataset folder.
func validFileName(name string) bool {
	return name != "" && name != "." && name != ".." && name != ManifestName &&
		!strings.ContainsAny(name, `/\:`) && filepath.Base(name) == name
}
