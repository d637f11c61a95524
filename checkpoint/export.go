package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"xspan/internal/safetensors"
	"xspan/internal/torchrt"
	"xspan/lm"
	"xspan/tokenize"
)

// A model export is one safetensors file: the model's weights (float32, named as
// lm.Model.NamedParameters names them) and, in the header's __metadata__ (strings
// only, as the format wants):
//
//	format          ExportFormat
//	format_version  ExportVersion
//	config          the model's lm.Config as JSON (model and training recipe)
//	config_hash     the model config's hash, checked on reading
//	vocab           the vocabulary's tokenize.Spec as JSON
//	tokenizer       for a HuggingFace vocabulary, its tokenizer.json
//	step, tokens    the checkpoint's updates and training tokens, in decimal
//	start_id        the checkpoint's start id (Header.StartID), in decimal; absent if
//	                it records none
//	xspan_version   the program that wrote it
//	xxh64           the checksum of the data section (checked on reading)
//
// Any safetensors reader opens it (Python's safetensors, or numpy from the layout).
const (
	ExportFormat  = "xspan-model"
	ExportVersion = "1"
)

// Export is a model export's description, from its metadata.
type Export struct {
	Path   string
	Config lm.Config
	Vocab  tokenize.Vocab
	Step   int64
	Tokens int64
	// StartID is the start id of the checkpoint exported (Header.StartID); nil: none.
	StartID *int64
	Meta    map[string]string // the whole __metadata__
}

// WriteExport writes the weights of m with ck's config, vocabulary, step, tokens and
// start id to path as one safetensors file (a temporary file renamed into place, synced).
func WriteExport(path string, m *lm.Model, ck *Checkpoint) error {
	cfg, err := json.Marshal(ck.Config)
	if err != nil {
		return err
	}
	spec := ck.Vocab.Spec()
	meta := map[string]string{
		"format": ExportFormat, "format_version": ExportVersion,
		"config": string(cfg), "config_hash": ck.Config.Hash(),
		"step": strconv.FormatInt(ck.Step, 10), "tokens": strconv.FormatInt(ck.Tokens, 10),
		"xspan_version": torchrt.Version(),
	}
	if id, ok := ck.StartID(); ok {
		meta["start_id"] = strconv.FormatInt(id, 10)
	}
	if hf, ok := ck.Vocab.(*tokenize.HF); ok {
		meta["tokenizer"] = string(hf.JSON())
		spec.File = TokenizerName
	}
	vs, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	meta["vocab"] = string(vs)
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp.Close()
	// SaveTensors creates the file again, with the mode of any new file (0666 less the
	// umask): an export is meant to be shared, not kept to its owner as CreateTemp's
	// 0600 would.
	os.Remove(tmp.Name())
	if _, err := SaveTensors(tmp.Name(), m.NamedParameters(), meta); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	syncDir(filepath.Dir(path))
	return nil
}

// IsExport reports whether path is a model export: a safetensors file whose metadata
// says ExportFormat. It reads the header only.
func IsExport(path string) bool {
	meta, err := readSafetensorsMeta(path)
	return err == nil && meta["format"] == ExportFormat
}

// ReadExport reads a model export and loads its model on dev: the file is checked whole
// (layout, checksum, config hash, vocabulary), and the weights must match the config's
// model exactly. The caller holds its OS thread.
func ReadExport(path string, dev gotch.Device) (*lm.Model, *Export, error) {
	data, err := readChecked(path, nil)
	if err != nil {
		return nil, nil, err
	}
	f, err := safetensors.Decode(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	ex, err := exportMeta(path, f.Metadata)
	if err != nil {
		return nil, nil, err
	}
	m, err := lm.New(ex.Config, dev)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	var named []ts.NamedTensor
	defer func() { dropNamed(named) }()
	for _, t := range f.Tensors {
		x, err := torchrt.FromRaw(t.DType, t.Shape, t.Data, dev)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: tensor %s: %w", path, t.Name, err)
		}
		named = append(named, ts.NamedTensor{Name: t.Name, Tensor: x})
	}
	if err := m.SetWeights(named); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, ex, nil
}

// exportMeta checks and reads a model export's metadata.
func exportMeta(path string, meta map[string]string) (*Export, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%s: %s", path, fmt.Sprintf(format, a...))
	}
	if meta["format"] != ExportFormat {
		return nil, bad("not an xspan model export (its metadata has no format %q)", ExportFormat)
	}
	if v := meta["format_version"]; v != ExportVersion {
		return nil, bad("export format version %q: this xspan reads version %s", v, ExportVersion)
	}
	cfg, err := lm.ParseConfig([]byte(meta["config"]))
	if err != nil {
		return nil, bad("config: %v", err)
	}
	if got := cfg.Hash(); got != meta["config_hash"] {
		return nil, bad("config hash %s does not match the recorded %s", got, meta["config_hash"])
	}
	var spec tokenize.Spec
	if err := json.Unmarshal([]byte(meta["vocab"]), &spec); err != nil {
		return nil, bad("vocab: %v", err)
	}
	var v tokenize.Vocab
	if spec.Kind == tokenize.KindHF {
		tok, ok := meta["tokenizer"]
		if !ok {
			return nil, bad("a tokenizer vocabulary without its tokenizer.json")
		}
		dir, err := os.MkdirTemp("", "xspan-import-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		if err := os.WriteFile(filepath.Join(dir, TokenizerName), []byte(tok), 0o644); err != nil {
			return nil, err
		}
		spec.File = TokenizerName
		v, err = tokenize.FromSpec(spec, dir)
		if err != nil {
			return nil, bad("vocab: %v", err)
		}
	} else if v, err = tokenize.FromSpec(spec, ""); err != nil {
		return nil, bad("vocab: %v", err)
	}
	if v.Size() != cfg.Vocab {
		return nil, bad("vocabulary of %d ids, config says %d", v.Size(), cfg.Vocab)
	}
	ex := &Export{Path: path, Config: cfg, Vocab: v, Meta: meta}
	for key, p := range map[string]*int64{"step": &ex.Step, "tokens": &ex.Tokens} {
		if *p, err = strconv.ParseInt(meta[key], 10, 64); err != nil || *p < 0 {
			return nil, bad("%s %q: want a count", key, meta[key])
		}
	}
	if s, ok := meta["start_id"]; ok {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil || id < 0 || id >= int64(v.Size()) {
			return nil, bad("start_id %q: want an id of the vocabulary of %d", s, v.Size())
		}
		ex.StartID = &id
	}
	return ex, nil
}

// readSafetensorsMeta reads the __metadata__ of a safetensors file from its header.
func readSafetensorsMeta(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var n [8]byte
	if _, err := f.ReadAt(n[:], 0); err != nil {
		return nil, err
	}
	size := uint64(n[0]) | uint64(n[1])<<8 | uint64(n[2])<<16 | uint64(n[3])<<24 | uint64(n[4])<<32 | uint64(n[5])<<40 | uint64(n[6])<<48 | uint64(n[7])<<56
	if size > safetensors.MaxHeader {
		return nil, errors.New("safetensors header too large")
	}
	head := make([]byte, size)
	if _, err := f.ReadAt(head, 8); err != nil {
		return nil, err
	}
	var h struct {
		Meta map[string]string `json:"__metadata__"`
	}
	if err := json.Unmarshal(head, &h); err != nil {
		return nil, err
	}
	return h.Meta, nil
}
