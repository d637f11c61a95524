package checkpoint

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sugarme/gotch"

	"xspan/dataset"
	"xspan/internal/torchrt"
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

// Open reads the header, config and vocabulary of the checkpoint that pathOrRun names
// (see Resolve), without loading weights.
func Open(pathOrRun string) (*Checkpoint, error) {
	dir, err := Resolve(pathOrRun)
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

// Load opens the checkpoint that pathOrRun names (a run folder means its latest
// checkpoint; RUN/best or a checkpoint folder name one) and loads its model on dev.
func Load(pathOrRun string, dev gotch.Device) (*lm.Model, *Checkpoint, error) {
	ck, err := Open(pathOrRun)
	if err != nil {
		return nil, nil, err
	}
	m, err := lm.New(ck.Config, dev)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", ck.Path, err)
	}
	if err := ck.LoadWeights(m); err != nil {
		return nil, nil, err
	}
	return m, ck, nil
}

// LoadWeights loads the checkpoint's weights into m, a model of the same shape.
func (ck *Checkpoint) LoadWeights(m *lm.Model) error {
	if err := m.LoadWeights(filepath.Join(ck.Path, WeightsName)); err != nil {
		return fmt.Errorf("%s: %w", ck.Path, err)
	}
	return nil
}

// CheckVocab reports whether a dataset's vocabulary is the one the checkpoint was
// trained with.
func (ck *Checkpoint) CheckVocab(r *dataset.Reader) error {
	v, err := r.Vocab()
	if err != nil {
		return err
	}
	if diff := v.Spec().Diff(ck.Vocab.Spec()); diff != "" {
		return fmt.Errorf("dataset %s has a %s vocabulary of %d ids that is not the one checkpoint %s was trained with (%s, %d ids): %s",
			r.Dir(), v.Kind(), v.Size(), ck.Path, ck.Vocab.Kind(), ck.Vocab.Size(), diff)
	}
	return nil
}

// Saver is an optimizer whose state a checkpoint keeps.
type Saver interface {
	Save(path string) error
}

// State is everything a checkpoint saves. Write fills the header's format, version,
// config, config hash, memory count and optimizer flag itself.
type State struct {
	Header   Header
	Model    *lm.Model
	Optim    Saver // nil: weights only
	Memories []*lm.Memory
	Vocab    tokenize.Vocab
}

// Write writes st as the checkpoint of st.Header.Step into RUN/checkpoints through a
// temporary folder, and returns its path. A checkpoint of the same step is replaced.
func Write(run string, st *State) (string, error) {
	if err := os.MkdirAll(filepath.Join(run, Dir), 0o755); err != nil {
		return "", err
	}
	final := StepDir(run, st.Header.Step)
	tmp := final + ".tmp"
	os.RemoveAll(tmp)
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return "", err
	}
	fail := func(err error) (string, error) {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("write checkpoint %s: %w", final, err)
	}
	cfgJSON, err := json.Marshal(st.Model.Cfg)
	if err != nil {
		return fail(err)
	}
	h := st.Header
	h.Format = FormatVersion
	h.XspanVersion = torchrt.Version()
	h.Config = cfgJSON
	h.ConfigHash = st.Model.Cfg.Hash()
	h.Memories = len(st.Memories)
	h.HasOptim = st.Optim != nil
	if err := st.Model.SaveWeights(filepath.Join(tmp, WeightsName)); err != nil {
		return fail(err)
	}
	if st.Optim != nil {
		if err := st.Optim.Save(filepath.Join(tmp, OptimName)); err != nil {
			return fail(err)
		}
	}
	for i, mem := range st.Memories {
		if err := mem.Save(filepath.Join(tmp, MemoryName(i))); err != nil {
			return fail(err)
		}
	}
	if err := writeVocab(tmp, st.Vocab); err != nil {
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
