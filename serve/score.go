package serve

import (
	"context"
	"errors"
	"net/http"

	"xspan/generate"
	"xspan/internal/torchrt"
	"xspan/spanview"
)

// A Scorer is a Model that can run a whole text through itself: per token the bits to
// predict it and the span each layer gives it, which memories remain after the text, and
// the live memory after every token. POST /v1/score needs one.
type Scorer interface {
	// Score runs ids as one stream from the model's initial memory. The caller holds its
	// OS thread.
	Score(ctx context.Context, ids []int64) (*spanview.Score, error)
}

// ScoreRequest is the JSON body of POST /v1/score.
type ScoreRequest struct {
	Text string `json:"text"`
}

// handleScore answers POST /v1/score {"text"} with a spanview.Score: per token its text,
// bits, spans and whether each layer still holds it after the text; the text's bpc; the
// live memory per layer after every token. Texts are bounded like prompts
// (MaxPromptTokens) and take a generation slot.
func (s *Server) handleScore(w http.ResponseWriter, r *http.Request) {
	sc, ok := s.model.(Scorer)
	if !ok {
		s.fail(w, r, errorf(http.StatusNotFound, "", "this model cannot score texts"))
		return
	}
	var req ScoreRequest
	if e := s.decodeBody(w, r, &req, true); e != nil {
		s.fail(w, r, e)
		return
	}
	ids, _, err := generate.EncodePrompt(s.model.Vocab(), []byte(req.Text), s.cfg.Unk)
	switch {
	case errors.Is(err, generate.ErrEmptyPrompt):
		s.fail(w, r, errorf(http.StatusBadRequest, "text", "text is empty: nothing to score"))
		return
	case err != nil:
		s.fail(w, r, errorf(http.StatusBadRequest, "text", "%v", err))
		return
	case len(ids) > s.cfg.MaxPromptTokens:
		s.fail(w, r, errorf(http.StatusBadRequest, "text", "text of %d tokens: over the limit of %d", len(ids), s.cfg.MaxPromptTokens))
		return
	}
	release, ok := s.enter(r.Context(), w, func(w http.ResponseWriter, e *apiError) { s.fail(w, r, e) }, "requests")
	if !ok {
		return
	}
	defer release()
	ctx := r.Context()
	res, err := func() (res *spanview.Score, err error) {
		defer torchrt.Lock()()
		defer torchrt.Recover(&err)
		return sc.Score(ctx, ids)
	}()
	switch {
	case ctx.Err() != nil && context.Cause(ctx) == errShutdown:
		s.count(func(c *Counters) { c.Interrupted++ })
		s.fail(w, r, errorf(http.StatusServiceUnavailable, "", "%v", errShutdown))
	case ctx.Err() != nil:
		s.count(func(c *Counters) { c.Cancelled++ })
	case err != nil:
		s.count(func(c *Counters) { c.Failed++ })
		s.cfg.Logf("score: %v", err)
		s.fail(w, r, errorf(http.StatusInternalServerError, "", "scoring failed: %v", err))
	default:
		s.count(func(c *Counters) { c.Completed++ })
		s.cfg.Logf("score: %d tokens, %.3f bits", len(res.Tokens), res.Bits)
		writeJSON(w, http.StatusOK, res)
	}
}
