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
// A checkpoint is a folder RUN/checkpoints/step-NNNNNNNNN. Format 2 (written since
// issue 17) holds
//
//	HEADER               "XSPAN-CHECKPOINT 2 xxh64:<checksum of the rest>", then the
//	                     Header as JSON, whose "files" lists every other file's size and
//	                     xxh64 checksum
//	weights.safetensors  the model's weights (lm.Model.NamedParameters), safetensors
//	optim.safetensors    the optimizer's state, absent in a weights-only checkpoint
//	memory-<i>.safetensors the carried memory of stream group i (lm.Memory.Tensors)
//	vocab.json           the vocabulary's tokenize.Spec, and tokenizer.json beside it for
//	                     an HF vocabulary, so that a checkpoint is usable without its dataset
//
// The tensor files are written from Go, never by libtorch, and every write is checked and
// synced; each also carries the xxh64 checksum of its data in its safetensors metadata,
// so a file taken out of its checkpoint still verifies. Every file is checked against the
// HEADER when it is read: a damaged one is an error naming it. Format 1 (the same layout
// with libtorch .ot files, no checksums) still loads; its .ot files are checked as zip
// archives (CRC-32 per entry) before libtorch reads them.
//
// A checkpoint is written under step-NNNNNNNNN.tmp and renamed once complete, so a folder
// without a suffix is always whole; pruning renames a folder to step-NNNNNNNNN.del before
// removing it, and Clean removes what a killed run left (.tmp, .del, .old). RUN/best names
// the best checkpoint's folder relative to RUN.
//
// Functions that load tensors must run on a goroutine that holds its OS thread
// (torchrt.Lock).
package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"

	"xspan/tokenize"
)

// The checkpoint format: its magic, version and file names.
const (
	// Magic starts every checkpoint's HEADER file.
	Magic = "XSPAN-CHECKPOINT"
	// FormatVersion is the checkpoint format this package writes; it reads it and every
	// older one (MinFormat on).
	FormatVersion = 2
	MinFormat     = 1

	HeaderName    = "HEADER"
	WeightsName   = "weights.safetensors"
	OptimName     = "optim.safetensors"
	VocabName     = "vocab.json"
	TokenizerName = "tokenizer.json"

	// maxHeader bounds the HEADER a reader accepts.
	maxHeader = 16 << 20
)

// MemoryName is the file of the memory of stream group i.
func MemoryName(i int) string { return fmt.Sprintf("memory-%d.safetensors", i) }

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
	// Memories is the number of memory-<i> files (0: none saved): one per group of
	// Data.Streams/Memories consecutive streams, in stream order.
	Memories int `json:"memories"`
	// World is the number of ranks of a distributed run that wrote the checkpoint (0 or 1:
	// one process); each rank held Memories/World of the memories.
	World int `json:"world,omitempty"`
	// HasOptim says whether the optimizer's state is present.
	HasOptim bool `json:"has_optim"`
	// StartID is the start id: the first token of the training split (the dataset's
	// Data.Dir, split "train"), the token the training texts begin with. Generation from
	// an empty prompt starts from it where the vocabulary has no single-token newline
	// (generate.StartToken). nil: none recorded, as in checkpoints written before it was,
	// which still load (an optional field: the format is the same).
	StartID *int64 `json:"start_id,omitempty"`
	// Files lists every file of the checkpoint but the HEADER, with its size and
	// checksum (format 2; empty in format 1).
	Files map[string]FileSum `json:"files,omitempty"`
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

// writeHeader writes dir/HEADER: the magic line with the format and the checksum of
// what follows it, then h as JSON.
func writeHeader(dir string, h *Header) error {
	js, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return err
	}
	js = append(js, '\n')
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%s %d xxh64:%016x\n", Magic, h.Format, xxhash.Sum64(js))
	buf.Write(js)
	_, err = writeFileSum(filepath.Join(dir, HeaderName), buf.Bytes())
	return err
}

// ReadHeader reads the HEADER of the checkpoint folder dir, of any format from MinFormat
// to FormatVersion. A format-2 HEADER must match its checksum and list every file that
// the checkpoint should hold.
func ReadHeader(dir string) (*Header, error) {
	path := filepath.Join(dir, HeaderName)
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: not a checkpoint (no %s)", dir, HeaderName)
		}
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxHeader+1))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxHeader {
		return nil, fmt.Errorf("%s: larger than %d bytes: not a checkpoint header", path, maxHeader)
	}
	line, rest, _ := bytes.Cut(data, []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) < 2 || fields[0] != Magic {
		return nil, fmt.Errorf("%s: not an xspan checkpoint header (no %s magic)", path, Magic)
	}
	v, err := strconv.Atoi(fields[1])
	if err != nil {
		return nil, fmt.Errorf("%s: bad format version %q", path, fields[1])
	}
	if v < MinFormat || v > FormatVersion {
		return nil, fmt.Errorf("%s: checkpoint format version %d; this xspan reads versions %d to %d", path, v, MinFormat, FormatVersion)
	}
	if v >= 2 {
		if len(fields) != 3 || !strings.HasPrefix(fields[2], "xxh64:") {
			return nil, fmt.Errorf("%s: the magic line has no xxh64 checksum", path)
		}
		if got := fmt.Sprintf("xxh64:%016x", xxhash.Sum64(rest)); got != fields[2] {
			return nil, fmt.Errorf("%s: checksum %s does not match the magic line's %s: the header is damaged", path, got, fields[2])
		}
	}
	var h Header
	dec := json.NewDecoder(bytes.NewReader(rest))
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if h.Format != v {
		return nil, fmt.Errorf("%s: header says format %d, magic line says %d", path, h.Format, v)
	}
	if h.Memories < 0 || h.Memories > 1<<16 {
		return nil, fmt.Errorf("%s: bad memory count %d", path, h.Memories)
	}
	if h.StartID != nil && *h.StartID < 0 {
		return nil, fmt.Errorf("%s: bad start id %d", path, *h.StartID)
	}
	if v >= 2 {
		need := []string{tensorFile(v, "weights"), VocabName}
		if h.HasOptim {
			need = append(need, tensorFile(v, "optim"))
		}
		for i := 0; i < h.Memories; i++ {
			need = append(need, tensorFile(v, memoryKind(i)))
		}
		for _, name := range need {
			if _, ok := h.Files[name]; !ok {
				return nil, fmt.Errorf("%s: lists no %s", path, name)
			}
		}
		for name, sum := range h.Files {
			if name != filepath.Base(name) || name == HeaderName || sum.Size < 0 || len(sum.XXH64) != 16 {
				return nil, fmt.Errorf("%s: bad file entry %q", path, name)
			}
			st, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				return nil, fmt.Errorf("%s: missing from the checkpoint (the HEADER lists it)", filepath.Join(dir, name))
			}
			if st.Size() != sum.Size {
				return nil, fmt.Errorf("%s: %d bytes, the HEADER says %d: the file is truncated or damaged", filepath.Join(dir, name), st.Size(), sum.Size)
			}
		}
	}
	return &h, nil
}

// memoryKind is the base name of the memory file of stream group i.
func memoryKind(i int) string { return fmt.Sprintf("memory-%d", i) }

// writeVocab writes the checkpoint's own copy of the vocabulary into dir.
// writeVocab writes the checkpoint's own copy of the vocabulary into dir, recording
// each file's size and checksum in files.
func writeVocab(dir string, v tokenize.Vocab, files map[string]FileSum) error {
	spec := v.Spec()
	if hf, ok := v.(*tokenize.HF); ok {
		sum, err := writeFileSum(filepath.Join(dir, TokenizerName), hf.JSON())
		if err != nil {
			return err
		}
		files[TokenizerName] = sum
		spec.File = TokenizerName
	}
	js, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	sum, err := writeFileSum(filepath.Join(dir, VocabName), append(js, '\n'))
	files[VocabName] = sum
	return err
}

// ReadVocab loads the vocabulary copy stored in the checkpoint folder dir, checking it
// against the HEADER's checksums.
func ReadVocab(dir string) (tokenize.Vocab, error) {
	h, err := ReadHeader(dir)
	if err != nil {
		return nil, err
	}
	return readVocab(dir, h)
}

func readVocab(dir string, h *Header) (tokenize.Vocab, error) {
	path := filepath.Join(dir, VocabName)
	data, err := readChecked(path, h.sum(VocabName))
	if err != nil {
		return nil, err
	}
	if sum := h.sum(TokenizerName); sum != nil {
		if _, err := readChecked(filepath.Join(dir, TokenizerName), sum); err != nil {
			return nil, err
		}
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

// sum returns the size and checksum the header lists for the file name, or nil (format 1).
func (h *Header) sum(name string) *FileSum {
	if s, ok := h.Files[name]; ok {
		return &s
	}
	return nil
}
