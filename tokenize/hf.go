package tokenize

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sync"
	"unicode/utf8"

	"github.com/sugarme/tokenizer"
	"github.com/sugarme/tokenizer/pretrained"
)

// HF is a HuggingFace tokenizer.json vocabulary. It is loaded from a local file only:
// nothing is fetched, no cache folder is made and the working directory is left alone.
//
// Encoding runs in parallel chunks of text (see [HF.EncodeWorkers]), each on its own
// copy of the tokenizer, since the underlying tokenizer is slow (about 0.3 MB/s a core)
// and not documented as safe for concurrent use.
type HF struct {
	path string
	raw  []byte
	sum  string
	size int
	// pieces, when not 0, is the longest piece of text encoded at once: a tokenizer with
	// no pre-tokenizer sees its whole input as one word, which BPE merges in time that
	// grows with the square of its length (10 minutes for 300 KB), so such text is
	// encoded a line at a time, lines longer than pieces cut (see HF.Pieces).
	pieces int
	pool   sync.Pool // of *tokenizer.Tokenizer built from raw
}

// MaxPiece is the longest piece of text encoded at once by a tokenizer without a
// pre-tokenizer.
const MaxPiece = 1024

// hfChunk is the text size above which Encode splits its input into parallel chunks
// (a variable for tests).
var hfChunk = 256 << 10

// LoadHF loads a tokenizer.json file.
func LoadHF(path string) (*HF, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	tk, err := parseHF(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: not a usable tokenizer.json: %v", path, err)
	}
	sum := sha256.Sum256(raw)
	h := &HF{path: path, raw: raw, sum: hex.EncodeToString(sum[:]), size: tk.GetVocabSize(true)}
	if !hasPreTokenizer(raw) {
		h.pieces = MaxPiece
	}
	if h.size <= 0 {
		return nil, fmt.Errorf("%s: tokenizer.json has an empty vocabulary", path)
	}
	h.pool.Put(tk)
	return h, nil
}

// hasPreTokenizer reports whether a tokenizer.json names a pre-tokenizer.
func hasPreTokenizer(raw []byte) bool {
	var v struct {
		Pre json.RawMessage `json:"pre_tokenizer"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return true // it parsed as a tokenizer: let it be
	}
	p := bytes.TrimSpace(v.Pre)
	return len(p) > 0 && !bytes.Equal(p, []byte("null"))
}

// Pieces is 0 for a tokenizer with a pre-tokenizer, else the longest piece of text it
// encodes at once: a line, or a part of a longer line cut after a space (or at a
// character boundary) within Pieces bytes. Prompts are encoded the same way.
func (h *HF) Pieces() int { return h.pieces }

// parseHF builds a tokenizer from tokenizer.json bytes; the library panics on some
// malformed files, which is turned into an error here.
func parseHF(raw []byte) (tk *tokenizer.Tokenizer, err error) {
	defer func() {
		if p := recover(); p != nil {
			tk, err = nil, fmt.Errorf("%v", p)
		}
	}()
	return pretrained.FromReader(bytes.NewReader(raw))
}

func (h *HF) Kind() string { return KindHF }
func (h *HF) Size() int    { return h.size }

// Path is the file the tokenizer was loaded from.
func (h *HF) Path() string { return h.path }

// JSON returns the tokenizer.json bytes.
func (h *HF) JSON() []byte { return h.raw }

// SHA256 is the hex digest of the tokenizer.json bytes.
func (h *HF) SHA256() string { return h.sum }

// Spec records the file by its base name; a dataset copies the file in beside its
// manifest.
func (h *HF) Spec() Spec {
	return Spec{Kind: KindHF, Size: h.size, File: "tokenizer.json", SHA256: h.sum, Pieces: h.pieces}
}

func (h *HF) get() *tokenizer.Tokenizer {
	if tk, ok := h.pool.Get().(*tokenizer.Tokenizer); ok {
		return tk
	}
	tk, err := parseHF(h.raw)
	if err != nil { // it parsed when loaded
		panic(err)
	}
	return tk
}

// Encode encodes text with as many workers as GOMAXPROCS.
func (h *HF) Encode(text []byte) ([]uint32, error) {
	return h.EncodeWorkers(text, runtime.GOMAXPROCS(0))
}

// EncodeWorkers encodes text without special tokens. Text longer than a few hundred
// KB is cut into chunks, each ending at a newline that a non-space character follows,
// and the chunks are encoded by up to workers goroutines. For pre-tokenizers that split
// at whitespace (ByteLevel, Whitespace, BERT) this gives the ids of one pass over the
// whole text; a Metaspace pre-tokenizer that adds a prefix space sees one at each chunk.
func (h *HF) EncodeWorkers(text []byte, workers int) ([]uint32, error) {
	return h.EncodeProgress(text, workers, nil)
}

// EncodeProgress is EncodeWorkers that calls done (when not nil) with the bytes of each
// chunk as it is encoded, from the encoding goroutines, so that a long text shows
// progress as it goes (the tokenizer runs at well under 1 MB/s).
func (h *HF) EncodeProgress(text []byte, workers int, done func(bytes int)) ([]uint32, error) {
	if err := CheckUTF8(text); err != nil {
		return nil, err
	}
	chunks := SplitText(text, hfChunk)
	if workers < 1 {
		workers = 1
	}
	out := make([][]uint32, len(chunks))
	errs := make([]error, len(chunks))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(workers, len(chunks)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk := h.get()
			defer h.pool.Put(tk)
			for i := range next {
				out[i], errs[i] = h.encodeOne(tk, chunks[i])
				if done != nil {
					done(len(chunks[i]))
				}
			}
		}()
	}
	for i := range chunks {
		next <- i
	}
	close(next)
	wg.Wait()
	total := 0
	for i, err := range errs {
		if err != nil {
			return nil, err
		}
		total += len(out[i])
	}
	ids := make([]uint32, 0, total)
	for _, o := range out {
		ids = append(ids, o...)
	}
	return ids, nil
}

func (h *HF) encodeOne(tk *tokenizer.Tokenizer, text []byte) (ids []uint32, err error) {
	if len(text) == 0 {
		return nil, nil
	}
	if h.pieces > 0 {
		for _, p := range splitPieces(text, h.pieces) {
			part, err := h.encodeText(tk, p)
			if err != nil {
				return nil, err
			}
			ids = append(ids, part...)
		}
		return ids, nil
	}
	return h.encodeText(tk, text)
}

// splitPieces cuts text after every newline and cuts lines longer than max after their
// last space within max bytes, else at the last character boundary within them.
func splitPieces(text []byte, max int) [][]byte {
	var out [][]byte
	for len(text) > 0 {
		n := bytes.IndexByte(text, '\n') + 1
		if n == 0 {
			n = len(text)
		}
		if n > max {
			n = max
			if sp := bytes.LastIndexByte(text[:max], ' '); sp > 0 {
				n = sp + 1
			} else {
				for n > 1 && !utf8.RuneStart(text[n]) {
					n--
				}
			}
		}
		out = append(out, text[:n])
		text = text[n:]
	}
	return out
}

func (h *HF) encodeText(tk *tokenizer.Tokenizer, text []byte) (ids []uint32, err error) {
	defer func() {
		if p := recover(); p != nil {
			ids, err = nil, fmt.Errorf("%s: tokenizer failed: %v", h.path, p)
		}
	}()
	enc, err := tk.EncodeSingle(string(text), false)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", h.path, err)
	}
	ids = make([]uint32, len(enc.Ids))
	for i, id := range enc.Ids {
		if id < 0 || id >= h.size {
			return nil, fmt.Errorf("%s: tokenizer produced id %d outside its %d ids", h.path, id, h.size)
		}
		ids[i] = uint32(id)
	}
	return ids, nil
}

// SplitText cuts text into pieces of at least size bytes (but the last), each cut just
// after a newline that a non-whitespace byte follows; text without such newlines stays
// whole. These are the cuts [HF.EncodeWorkers] encodes in parallel.
func SplitText(text []byte, size int) [][]byte {
	var chunks [][]byte
	for len(text) > size {
		cut := -1
		for i := size; i < len(text)-1; {
			j := bytes.IndexByte(text[i:len(text)-1], '\n')
			if j < 0 {
				break
			}
			i += j
			if c := text[i+1]; c != ' ' && c != '\t' && c != '\n' && c != '\r' {
				cut = i + 1
				break
			}
			i++
		}
		if cut < 0 {
			break
		}
		chunks = append(chunks, text[:cut])
		text = text[cut:]
	}
	return append(chunks, text)
}

// Decode returns the tokenizer's decoding of ids (which need not give back the encoded
// text byte for byte: that depends on the tokenizer's normalizer and decoder).
func (h *HF) Decode(ids []uint32) []byte {
	tk := h.get()
	defer h.pool.Put(tk)
	in := make([]int, len(ids))
	for i, id := range ids {
		in[i] = int(id)
	}
	return []byte(tk.Decode(in, false))
}
