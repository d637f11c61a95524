// Package checkpoint is the boundary between training and its users: the checkpoint
// format, the run folder's layout, and opening, loading and finding checkpoints (a run's
// latest, its best), written atomically. Training writes checkpoints through it;
// evaluation, generation and the server read them through it, without the trainer.
//
// A run folder holds
//
//	RUN/config.json        the resolved config (lm.Config)
//	RUN/metrics.jsonl      one Row per logged step and per validation
//	RUN/checkpoints/step-N checkpoints (see Header for what each holds)
//	RUN/best               a one-line file naming the best checkpoint on validation
//
// A checkpoint is a folder RUN/checkpoints/step-NNNNNNNNN holding
//
//	HEADER          the magic line "XSPAN-CHECKPOINT <format>" then the Header as JSON
//	weights.ot      the model's weights (lm.Model.SaveWeights)
//	optim.ot        the optimizer's state, absent in a weights-only checkpoint
//	memory-<i>.ot   the carried memory of each group of streams (lm.Memory.Save)
//	vocab.json      the vocabulary's tokenize.Spec, and tokenizer.json beside it for an
//	                HF vocabulary, so that a checkpoint is usable without its dataset
//
// It is written under step-NNNNNNNNN.tmp and renamed once complete, so a folder without
// the .tmp suffix is always whole. RUN/best names the best checkpoint's folder relative
// to RUN.
//
// Functions that load tensors must run on a goroutine that holds its OS thread
// (torchrt.Lock).
package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"xspan/tokenize"
)

// The checkpoint format: its magic, version and file names.
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
	// Vocab records where the vocabulary came from, for people reading the header; the
	// checkpoint's own copy is VocabName, and its identity is that copy's Spec().Ref().
	Vocab VocabRef `json:"vocab"`
	// Memories is the number of memory-<i>.ot files (0: none saved): one per group of
	// Data.Streams/Memories consecutive streams, in stream order.
	Memories int `json:"memories"`
	// World is the number of ranks of a distributed run that wrote the checkpoint (0 or 1:
	// one process); each rank held Memories/World of the memories.
	World int `json:"world,omitempty"`
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

// VocabRef describes the vocabulary a model was trained with and the dataset it came
// from.
type VocabRef struct {
	Kind    string `json:"kind"`
	Size    int    `json:"size"`
	Dataset string `json:"dataset"` // the dataset folder it came from
	SHA256  string `json:"sha256,omitempty"`
}

// NewVocabRef describes v, taken from the dataset folder dataset.
func NewVocabRef(v tokenize.Vocab, dataset string) VocabRef {
	s := v.Spec()
	return VocabRef{Kind: s.Kind, Size: s.Size, Dataset: dataset, SHA256: s.SHA256}
}

// EvalSummary is the part of an evaluation that a checkpoint and the metrics log keep.
type EvalSummary struct {
	Split        string  `json:"split"`
	Loss         float64 `json:"loss"`
	BitsPerToken float64 `json:"bits_per_token"`
	BPC          float64 `json:"bpc"`
	Unit         string  `json:"unit"`
	Tokens       int64   `json:"tokens"`
}

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
