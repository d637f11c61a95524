package checkpoint

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

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
	v, err := readVocab(dir, h)
	if err != nil {
		return nil, err
	}
	if v.Size() != cfg.Vocab {
		return nil, fmt.Errorf("%s: vocabulary of %d ids, config says %d", dir, v.Size(), cfg.Vocab)
	}
	if h.StartID != nil && *h.StartID >= int64(v.Size()) {
		return nil, fmt.Errorf("%s: start id %d outside the vocabulary of %d ids", filepath.Join(dir, HeaderName), *h.StartID, v.Size())
	}
	return &Checkpoint{Path: dir, Step: h.Step, Tokens: h.Tokens, Config: cfg, Vocab: v, Header: h}, nil
}

// StartID returns the start id the header records (Header.StartID: the training split's
// first token), and whether it records one.
func (ck *Checkpoint) StartID() (id int64, ok bool) {
	if ck.Header == nil || ck.Header.StartID == nil {
		return 0, false
	}
	return *ck.Header.StartID, true
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
	path, named, err := ck.load("weights", m.Device())
	if err != nil {
		return err
	}
	defer dropNamed(named)
	if err := m.SetWeights(named); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// OptimState is an optimizer whose state a checkpoint keeps: State gives it as named
// tensors (free drops those made for it), SetState takes back what State gave.
type OptimState interface {
	State() (named []ts.NamedTensor, free func())
	SetState(named []ts.NamedTensor) error
}

// LoadOptim loads the checkpoint's optimizer state into o, whose parameters live on dev.
func (ck *Checkpoint) LoadOptim(o OptimState, dev gotch.Device) error {
	if !ck.Header.HasOptim {
		return fmt.Errorf("%s: a weights-only checkpoint (no optimizer state)", ck.Path)
	}
	path, named, err := ck.load("optim", dev)
	if err != nil {
		return err
	}
	if err := o.SetState(named); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// LoadMemory loads the carried memory of stream group i for m.
func (ck *Checkpoint) LoadMemory(m *lm.Model, i int) (*lm.Memory, error) {
	if i < 0 || i >= ck.Header.Memories {
		return nil, fmt.Errorf("%s: holds %d memories, no memory %d", ck.Path, ck.Header.Memories, i)
	}
	path, named, err := ck.load(memoryKind(i), m.Device())
	if err != nil {
		return nil, err
	}
	mem, err := m.MemoryFrom(named)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return mem, nil
}

// load reads the tensor file of kind, checked against the header in format 2.
func (ck *Checkpoint) load(kind string, dev gotch.Device) (string, []ts.NamedTensor, error) {
	name := tensorFile(ck.Header.Format, kind)
	path := ck.file(name)
	if ck.Header.Format >= 2 && ck.Header.sum(name) == nil {
		return path, nil, fmt.Errorf("%s: not listed in the HEADER", path)
	}
	named, err := LoadTensors(path, dev, ck.Header.sum(name))
	return path, named, err
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

// State is everything a checkpoint saves. Write fills the header's format, version,
// config, config hash, memory count, optimizer flag and file list itself.
type State struct {
	Header   Header
	Model    *lm.Model
	Optim    OptimState // nil: weights only
	Memories []*lm.Memory
	Vocab    tokenize.Vocab
}

// Write writes st as the checkpoint of st.Header.Step into RUN/checkpoints through a
// temporary folder, and returns its path. A checkpoint of the same step is replaced. On
// any error (a full disk, say) the temporary folder is removed and every checkpoint
// written before stays as it was.
func Write(run string, st *State) (string, error) {
	final := StepDir(run, st.Header.Step)
	fail := func(err error) (string, error) {
		return "", fmt.Errorf("write checkpoint %s: %w", final, err)
	}
	if err := os.MkdirAll(filepath.Join(run, Dir), 0o755); err != nil {
		return fail(err)
	}
	tmp := final + ".tmp"
	os.RemoveAll(tmp)
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return fail(err)
	}
	failTmp := func(err error) (string, error) {
		os.RemoveAll(tmp)
		return fail(err)
	}
	cfgJSON, err := json.Marshal(st.Model.Cfg)
	if err != nil {
		return failTmp(err)
	}
	h := st.Header
	h.Format = FormatVersion
	h.XspanVersion = torchrt.Version()
	h.Config = cfgJSON
	h.ConfigHash = st.Model.Cfg.Hash()
	h.Memories = len(st.Memories)
	h.HasOptim = st.Optim != nil
	h.Files = map[string]FileSum{}
	save := func(kind string, named []ts.NamedTensor) error {
		name := tensorFile(FormatVersion, kind)
		sum, err := SaveTensors(filepath.Join(tmp, name), named, map[string]string{
			"format": "pt", "xspan": kind, "xspan_checkpoint_format": strconv.Itoa(FormatVersion)})
		h.Files[name] = sum
		return err
	}
	if err := save("weights", st.Model.NamedParameters()); err != nil {
		return failTmp(err)
	}
	if st.Optim != nil {
		named, free := st.Optim.State()
		err := save("optim", named)
		free()
		if err != nil {
			return failTmp(err)
		}
	}
	for i, mem := range st.Memories {
		named, free := mem.Tensors()
		err := save(memoryKind(i), named)
		free()
		if err != nil {
			return failTmp(err)
		}
	}
	if err := writeVocab(tmp, st.Vocab, h.Files); err != nil {
		return failTmp(err)
	}
	if err := writeHeader(tmp, &h); err != nil {
		return failTmp(err)
	}
	if err := commitDir(tmp, final); err != nil {
		return failTmp(err)
	}
	return final, nil
}

// Verify checks the checkpoint folder dir without loading it: its HEADER, and every
// file the HEADER lists against its size and checksum (format 2; a format-1 checkpoint
// has only its HEADER and vocabulary checked).
func Verify(dir string) error {
	h, err := ReadHeader(dir)
	if err != nil {
		return err
	}
	for name, sum := range h.Files {
		if _, err := readChecked(filepath.Join(dir, name), &sum); err != nil {
			return err
		}
	}
	_, err = readVocab(dir, h)
	return err
}
