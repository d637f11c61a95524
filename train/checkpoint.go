package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/sugarme/gotch"

	"xspan/dataset"
	"xspan/lm"
	"xspan/tokenize"
)

// Checkpoint is an opened checkpoint: its header, config and vocabulary.
type Checkpoint struct {
	Path   string // the checkpoint folder
	Step   int64
	Tokens int64
	Config lm.Config
	// Vocab is the checkpoint's own copy of the vocabulary.
	Vocab  tokenize.Vocab
	Header *Header
}

// OpenCheckpoint reads the header, config and vocabulary of the checkpoint that
// pathOrRun names (see ResolveCheckpoint), without loading weights.
func OpenCheckpoint(pathOrRun string) (*Checkpoint, error) {
	dir, err := ResolveCheckpoint(pathOrRun)
	if err != nil {
		return nil, err
	}
	h, err := ReadHeader(dir)
	if err != nil {
		return nil, err
	}
	cfg, err := lm.ParseConfig(h.Config)
	if err != nil {
		return nil, fmt.Errorf("%s: config: %w", filepath.Join(dir, HeaderName), err)
	}
	if got := cfg.Hash(); got != h.ConfigHash {
		return nil, fmt.Errorf("%s: config hash %s does not match the header's %s (written by another model version?)", filepath.Join(dir, HeaderName), got, h.ConfigHash)
	}
	v, err := ReadVocab(dir)
	if err != nil {
		return nil, err
	}
	if v.Size() != cfg.Vocab {
		return nil, fmt.Errorf("%s: vocabulary of %d ids, config says %d", dir, v.Size(), cfg.Vocab)
	}
	return &Checkpoint{Path: dir, Step: h.Step, Tokens: h.Tokens, Config: cfg, Vocab: v, Header: h}, nil
}

// LoadCheckpoint opens the checkpoint that pathOrRun names (a run folder means its latest
// checkpoint; RUN/best or a checkpoint folder name one) and loads its model on dev.
func LoadCheckpoint(pathOrRun string, dev gotch.Device) (*lm.Model, *Checkpoint, error) {
	ck, err := OpenCheckpoint(pathOrRun)
	if err != nil {
		return nil, nil, err
	}
	m, err := lm.New(ck.Config, dev)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", ck.Path, err)
	}
	if err := m.LoadWeights(filepath.Join(ck.Path, WeightsName)); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", ck.Path, err)
	}
	return m, ck, nil
}

// Version is xspan's version as the build recorded it, for checkpoint headers.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}

// checkpointState is everything a checkpoint saves.
type checkpointState struct {
	header   Header
	model    *lm.Model
	opt      *Adam // nil: weights only
	memories []*lm.Memory
	vocab    tokenize.Vocab
}

// writeCheckpoint writes a checkpoint folder of step into run/checkpoints through a
// temporary folder, and returns its path.
func writeCheckpoint(run string, st *checkpointState) (string, error) {
	dir := filepath.Join(run, CheckpointsDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	final := filepath.Join(dir, StepDirName(st.header.Step))
	tmp := final + ".tmp"
	os.RemoveAll(tmp)
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return "", err
	}
	fail := func(err error) (string, error) {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("write checkpoint %s: %w", final, err)
	}
	cfgJSON, err := json.Marshal(st.model.Cfg)
	if err != nil {
		return fail(err)
	}
	h := st.header
	h.Format = FormatVersion
	h.XspanVersion = Version()
	h.Config = cfgJSON
	h.ConfigHash = st.model.Cfg.Hash()
	h.Memories = len(st.memories)
	h.HasOptim = st.opt != nil
	if err := st.model.SaveWeights(filepath.Join(tmp, WeightsName)); err != nil {
		return fail(err)
	}
	if st.opt != nil {
		if err := st.opt.Save(filepath.Join(tmp, OptimName)); err != nil {
			return fail(err)
		}
	}
	for i, mem := range st.memories {
		if err := mem.Save(filepath.Join(tmp, MemoryName(i))); err != nil {
			return fail(err)
		}
	}
	if err := writeVocab(tmp, st.vocab); err != nil {
		return fail(err)
	}
	if err := writeHeader(tmp, &h); err != nil {
		return fail(err)
	}
	if err := commitDir(tmp, final); err != nil {
		return fail(err)
	}
	return final, nil
}

// CheckVocab reports whether a dataset's vocabulary is the one the checkpoint was
// trained with.
func (ck *Checkpoint) CheckVocab(r *dataset.Reader) error {
	v, err := r.Vocab()
	if err != nil {
		return err
	}
	if vocabRef(v) != vocabRef(ck.Vocab) {
		return fmt.Errorf("dataset %s has a %s vocabulary of %d ids, not the %s vocabulary of %d ids that checkpoint %s was trained with",
			r.Dir(), v.Kind(), v.Size(), ck.Vocab.Kind(), ck.Vocab.Size(), ck.Path)
	}
	return nil
}
