package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"xspan/tokenize"
)

// A checkpoint is a folder RUN/checkpoints/step-NNNNNNNNN holding
//
//	HEADER          the magic line "XSPAN-CHECKPOINT <format>" then the Header as JSON
//	weights.ot      the model's weights (lm.Model.SaveWeights)
//	optim.ot        the Adam state (Adam.Save), absent in a weights-only checkpoint
//	memory-<i>.ot   the carried memory of each group of streams (lm.Memory.Save)
//	vocab.json      the vocabulary's tokenize.Spec, and tokenizer.json beside it for an
//	                HF vocabulary, so that a checkpoint is usable without its dataset
//
// It is written under step-NNNNNNNNN.tmp and renamed once complete, so a folder without
// the .tmp suffix is always whole. RUN/best is a one-line file naming the best
// checkpoint's folder relative to RUN.

const (
	// Magic starts every checkpoint's HEADER file.
	Magic = "XSPAN-CHECKPOINT"
	// FormatVersion is the checkpoint format this package writes and reads.
	FormatVersion = 1

	HeaderName    = "HEADER"
	WeightsName   = "weights.ot"
	OptimName     = "optim.ot"
	VocabName     = "vocab.json"
	TokenizerName = "tokenizer.json"
	// CheckpointsDir is the run folder's sub-folder of checkpoints.
	CheckpointsDir = "checkpoints"
	// BestName is the run folder's pointer to its best checkpoint.
	BestName = "best"
	// ConfigName is the resolved config a run writes at its start.
	ConfigName = "config.json"
	// MetricsName is the run's log of metrics, one JSON object a line.
	MetricsName = "metrics.jsonl"
)

// MemoryName is the file of the memory of stream group i.
func MemoryName(i int) string { return fmt.Sprintf("memory-%d.ot", i) }

// Header is the metadata of a checkpoint.
type Header struct {
	Format       int             `json:"format"`
	XspanVersion string          `json:"xspan_version"`
	Config       json.RawMessage `json:"config"`
	ConfigHash   string          `json:"config_hash"`
	Step         int64           `json:"step"`   // updates taken
	Tokens       int64           `json:"tokens"` // training tokens seen (targets)
	Data         DataState       `json:"data"`
	RNG          RNGState        `json:"rng"`
	// Vocab is where the vocabulary came from; the checkpoint's own copy is VocabName.
	Vocab VocabRef `json:"vocab"`
	// Memories is the number of memory-<i>.ot files (0: none saved).
	Memories int `json:"memories"`
	// HasOptim says whether optim.ot is present.
	HasOptim bool `json:"has_optim"`
	// Valid is the validation result at this step, if one was measured.
	Valid *EvalSummary `json:"valid,omitempty"`
	// BestValid is the best validation bpc of the run up to this step (0: none yet), and
	// BestStep its step.
	BestValid float64 `json:"best_valid,omitempty"`
	BestStep  int64   `json:"best_step,omitempty"`
	Threads   int     `json:"threads"`
	Device    string  `json:"device"`
	Time      string  `json:"time"`
}

// DataState is where training stands in its data: every stream of the batcher is at
// block Position (all streams advance together).
type DataState struct {
	Dir       string `json:"dir"`
	Split     string `json:"split"`
	Streams   int    `json:"streams"`
	Block     int    `json:"block"`
	Position  int64  `json:"position"`
	StreamLen int64  `json:"stream_len"`
	Epoch     int64  `json:"epoch"`
}

// RNGState records how random numbers are drawn, so that a resumed run draws the same.
// Both libtorch's generator and the Go generator are re-seeded at every step from Seed
// and the step number, so no generator state needs saving.
type RNGState struct {
	Seed   int64  `json:"seed"`
	Scheme string `json:"scheme"`
}

// VocabRef names the vocabulary a model was trained with.
type VocabRef struct {
	Kind    string `json:"kind"`
	Size    int    `json:"size"`
	Dataset string `json:"dataset"` // the dataset folder it came from
	SHA256  string `json:"sha256,omitempty"`
}

// EvalSummary is the part of an evaluation a checkpoint and the metrics log keep.
type EvalSummary struct {
	Split        string  `json:"split"`
	Loss         float64 `json:"loss"`
	BitsPerToken float64 `json:"bits_per_token"`
	BPC          float64 `json:"bpc"`
	Unit         string  `json:"unit"`
	Tokens       int64   `json:"tokens"`
}

// StepDirName is the folder name of the checkpoint after step updates.
func StepDirName(step int64) string { return fmt.Sprintf("step-%09d", step) }

var stepDirRE = regexp.MustCompile(`^step-([0-9]+)$`)

// writeHeader writes dir/HEADER.
func writeHeader(dir string, h *Header) error {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%s %d\n", Magic, FormatVersion)
	js, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return err
	}
	buf.Write(js)
	buf.WriteByte('\n')
	return writeFileSync(filepath.Join(dir, HeaderName), buf.Bytes())
}

// ReadHeader reads the HEADER of the checkpoint folder dir.
func ReadHeader(dir string) (*Header, error) {
	path := filepath.Join(dir, HeaderName)
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: not a checkpoint (no %s)", dir, HeaderName)
		}
		return nil, err
	}
	line, rest, _ := bytes.Cut(data, []byte("\n"))
	magic, ver, ok := strings.Cut(string(line), " ")
	if !ok || magic != Magic {
		return nil, fmt.Errorf("%s: not an xspan checkpoint header (no %s magic)", path, Magic)
	}
	v, err := strconv.Atoi(strings.TrimSpace(ver))
	if err != nil {
		return nil, fmt.Errorf("%s: bad format version %q", path, ver)
	}
	if v != FormatVersion {
		return nil, fmt.Errorf("%s: checkpoint format version %d; this xspan reads version %d", path, v, FormatVersion)
	}
	var h Header
	dec := json.NewDecoder(bytes.NewReader(rest))
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if h.Format != FormatVersion {
		return nil, fmt.Errorf("%s: header says format %d, magic line says %d", path, h.Format, v)
	}
	return &h, nil
}

// writeVocab writes the checkpoint's own copy of the vocabulary into dir.
func writeVocab(dir string, v tokenize.Vocab) error {
	spec := v.Spec()
	if hf, ok := v.(*tokenize.HF); ok {
		if err := writeFileSync(filepath.Join(dir, TokenizerName), hf.JSON()); err != nil {
			return err
		}
		spec.File = TokenizerName
	}
	js, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	return writeFileSync(filepath.Join(dir, VocabName), append(js, '\n'))
}

// ReadVocab loads the vocabulary copy stored in the checkpoint folder dir.
func ReadVocab(dir string) (tokenize.Vocab, error) {
	path := filepath.Join(dir, VocabName)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var spec tokenize.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	v, err := tokenize.FromSpec(spec, dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// writeFileSync writes data to path and syncs it to disk.
func writeFileSync(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeFileAtomic writes data to path through a temporary file beside it and a rename.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := writeFileSync(tmp, data); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// commitDir syncs the files of the finished temporary folder tmp and renames it to
// final, replacing a folder of that name (a checkpoint of the same step written before).
func commitDir(tmp, final string) error {
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range ents {
		f, err := os.Open(filepath.Join(tmp, e.Name()))
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	if _, err := os.Stat(final); err == nil {
		old := final + ".old"
		os.RemoveAll(old)
		if err := os.Rename(final, old); err != nil {
			return err
		}
		if err := os.Rename(tmp, final); err != nil {
			return err
		}
		return os.RemoveAll(old)
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(final)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// listSteps returns the steps of the complete checkpoints in run/checkpoints, ascending.
func listSteps(run string) ([]int64, error) {
	ents, err := os.ReadDir(filepath.Join(run, CheckpointsDir))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var steps []int64
	for _, e := range ents {
		m := stepDirRE.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(run, CheckpointsDir, e.Name(), HeaderName)); err != nil {
			continue
		}
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err == nil {
			steps = append(steps, n)
		}
	}
	slices.Sort(steps)
	return steps, nil
}

// Latest returns the folder of the run's latest complete checkpoint, or "" if it has none.
func Latest(run string) (string, error) {
	steps, err := listSteps(run)
	if err != nil || len(steps) == 0 {
		return "", err
	}
	return filepath.Join(run, CheckpointsDir, StepDirName(steps[len(steps)-1])), nil
}

// Best returns the folder that run/best names, or "" if the run has no best yet.
func Best(run string) (string, error) {
	p := filepath.Join(run, BestName)
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	return readPointer(p)
}

// readPointer reads a pointer file: one line naming a folder relative to the file's
// folder (or absolute).
func readPointer(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return "", fmt.Errorf("%s: empty pointer file", path)
	}
	target := strings.TrimSpace(sc.Text())
	if target == "" {
		return "", fmt.Errorf("%s: empty pointer file", path)
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(path), target)
	}
	return target, nil
}

// setBest points run/best at the checkpoint of step.
func setBest(run string, step int64) error {
	rel := filepath.Join(CheckpointsDir, StepDirName(step))
	return writeFileAtomic(filepath.Join(run, BestName), []byte(rel+"\n"))
}

// prune removes all but the newest keep checkpoints of run, sparing the best one, and
// any temporary folders that a killed run left.
func prune(run string, keep int) error {
	dir := filepath.Join(run, CheckpointsDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") || strings.HasSuffix(e.Name(), ".old") {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
	if keep <= 0 {
		return nil
	}
	steps, err := listSteps(run)
	if err != nil {
		return err
	}
	best, _ := Best(run)
	for i := 0; i < len(steps)-keep; i++ {
		p := filepath.Join(dir, StepDirName(steps[i]))
		if best != "" && filepath.Clean(best) == filepath.Clean(p) {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
}

// ResolveCheckpoint turns what a user names with --ckpt into a checkpoint folder: a
// checkpoint folder itself, a pointer file such as RUN/best, or a run folder (its latest
// checkpoint).
func ResolveCheckpoint(pathOrRun string) (string, error) {
	st, err := os.Stat(pathOrRun)
	if err != nil {
		return "", fmt.Errorf("checkpoint %s: %w", pathOrRun, errors.Unwrap(err))
	}
	if !st.IsDir() {
		target, err := readPointer(pathOrRun)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(filepath.Join(target, HeaderName)); err != nil {
			return "", fmt.Errorf("%s names %s, which is not a checkpoint (was it pruned?)", pathOrRun, target)
		}
		return target, nil
	}
	if _, err := os.Stat(filepath.Join(pathOrRun, HeaderName)); err == nil {
		return pathOrRun, nil
	}
	if _, err := os.Stat(filepath.Join(pathOrRun, CheckpointsDir)); err == nil {
		latest, err := Latest(pathOrRun)
		if err != nil {
			return "", err
		}
		if latest == "" {
			return "", fmt.Errorf("run %s has no complete checkpoint yet", pathOrRun)
		}
		return latest, nil
	}
	return "", fmt.Errorf("%s: neither a checkpoint folder, a run folder nor a pointer file like RUN/best", pathOrRun)
}
