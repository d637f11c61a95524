package eval

import (
	"bufio"
	"encoding/json"
	"math"

	"xspan/internal/torchrt"
	"xspan/lm"
	"xspan/tokenize"
)

// dumpLine is one line of an evaluation dump.
type dumpLine struct {
	Pos  int64     `json:"pos"`
	ID   uint32    `json:"id"`
	Text string    `json:"text,omitempty"`
	Bits *float64  `json:"bits,omitempty"`
	Span []float32 `json:"span,omitempty"`
	// Unscored marks a token that a scored mask leaves out of the loss.
	Unscored bool `json:"unscored,omitempty"`
}

func b2f(b bool) float32 {
	if b {
		return 1
	}
	return 0
}

// dumpBlock writes the dump lines of one block of batch 1: ids holds T+1 tokens from
// split position pos. Token pos+j (j < T) is an input whose span the block gives; token
// pos+j+1 is a target whose bits it gives. The block's last target waits in pending for
// its span from the next block.
func dumpBlock(w *bufio.Writer, pending **dumpLine, sr *lm.StepResult, ids []int64, mask []float32, t int, pos int64, vocab tokenize.Vocab) error {
	nll := torchrt.Float64s(sr.TokenNLL)
	for j := 0; j <= t; j++ {
		var line *dumpLine
		if j == 0 && *pending != nil && (*pending).Pos == pos {
			line = *pending
		} else {
			line = &dumpLine{Pos: pos + int64(j), ID: uint32(ids[j])}
			if vocab != nil {
				line.Text = string(vocab.Decode([]uint32{line.ID}))
			}
		}
		if j > 0 {
			b := nll[j-1] / math.Ln2
			line.Bits = &b
			line.Unscored = mask != nil && mask[j-1] == 0
		}
		if j == t {
			*pending = line
			break
		}
		for _, sp := range sr.Spans {
			if len(sp) == 0 {
				continue
			}
			n := len(sp) // batch 1: N keys, the block's own last
			line.Span = append(line.Span, sp[n-t+j])
		}
		if err := writeDumpLine(w, line); err != nil {
			return err
		}
	}
	return nil
}

func writeDumpLine(w *bufio.Writer, l *dumpLine) error {
	js, err := json.Marshal(l)
	if err != nil {
		return err
	}
	w.Write(js)
	return w.WriteByte('\n')
}
