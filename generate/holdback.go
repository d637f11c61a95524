package generate

// holdback keeps new tokens back from emit until their text is known to be in the
// result: a token whose text could begin a stop sequence waits, and one whose text lies
// in the stop sequence (or after it) is never emitted, counted or given log-probs, so
// that the tokens, their log-probabilities and the usage match the text returned.
//
// Positions count bytes of the text as TextStream writes it, before stop sequences cut
// it: a token starts where the stream stood when it was pushed (a character split over
// byte tokens starts its tokens at the same place).
type holdback struct {
	queue    []heldToken
	released int // bytes of text released (known to come before any stop sequence)
	streamed int // bytes of text the stream wrote
	last     int // Index of the last token emitted (-1: none)
}

type heldToken struct {
	tok   Token
	lp    *TokenLogProb
	start int
}

func newHoldback() *holdback { return &holdback{last: -1} }

// push adds a token drawn, whose stream text (before stop sequences) is streamed bytes.
func (h *holdback) push(tok Token, lp *TokenLogProb, streamed int) {
	h.queue = append(h.queue, heldToken{tok: tok, lp: lp, start: h.streamed})
	h.streamed += streamed
}

// release takes the text now known to come before any stop sequence and returns the
// tokens it decides, each with its part of the text, in order. The first token carries
// the text before its own that earlier tokens held back; text that no new token starts
// in comes out on a token of ID -1. final releases every token still held (the stream
// ended without a stop sequence); at a stop sequence, the tokens still held are dropped.
func (h *holdback) release(text string, final bool) []heldToken {
	from := h.released
	h.released += len(text)
	n := 0
	for n < len(h.queue) && (final || h.queue[n].start < h.released) {
		n++
	}
	out := h.queue[:n:n]
	h.queue = h.queue[n:]
	if n == 0 {
		if text == "" {
			return nil
		}
		return []heldToken{{tok: Token{Index: max(h.last, 0), ID: -1, Text: text}}}
	}
	for i := range out {
		lo, hi := out[i].start, h.released
		if i == 0 {
			lo = from
		}
		if i+1 < len(out) {
			hi = out[i+1].start
		}
		lo, hi = min(max(lo-from, 0), len(text)), min(max(hi-from, 0), len(text))
		out[i].tok.Text = text[lo:hi]
	}
	h.last = out[n-1].tok.Index
	return out
}
