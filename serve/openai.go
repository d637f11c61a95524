package serve

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"xspan/generate"
	"xspan/tokenize"
)

// The OpenAI-compatible endpoints: POST /v1/completions (the completions API, not chat:
// a character model has no chat format) and GET /v1/models. They answer in that API's
// shapes, errors included, and run through the same generation path as /v1/generate.
// Any Authorization header is accepted: the server has no keys.

// completionRequest is the body of POST /v1/completions. Fields of that API that this
// server cannot honour are refused unless they hold their neutral value; fields it does
// not know are ignored, as clients send newer ones. TopK is an extension.
type completionRequest struct {
	Model         string          `json:"model"` // any: the answer names the served model
	Prompt        json.RawMessage `json:"prompt"`
	MaxTokens     *int            `json:"max_tokens"`
	Temperature   *float64        `json:"temperature"`
	TopP          *float64        `json:"top_p"`
	TopK          *int            `json:"top_k"`
	Seed          *int64          `json:"seed"`
	Stop          json.RawMessage `json:"stop"`
	N             *int            `json:"n"`
	BestOf        *int            `json:"best_of"`
	Stream        bool            `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	LogProbs         *int               `json:"logprobs"`
	Echo             bool               `json:"echo"`
	Suffix           *string            `json:"suffix"`
	PresencePenalty  *float64           `json:"presence_penalty"`
	FrequencyPenalty *float64           `json:"frequency_penalty"`
	LogitBias        map[string]float64 `json:"logit_bias"`
}

// defaultMaxTokens is the completions API's default max_tokens.
const defaultMaxTokens = 16

type completion struct {
	ID                string             `json:"id"`
	Object            string             `json:"object"`
	Created           int64              `json:"created"`
	Model             string             `json:"model"`
	SystemFingerprint string             `json:"system_fingerprint"`
	Choices           []completionChoice `json:"choices"`
	Usage             *completionUsage   `json:"usage,omitempty"`
}

type completionChoice struct {
	Text         string          `json:"text"`
	Index        int             `json:"index"`
	Logprobs     *choiceLogprobs `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"` // null until the last chunk of a stream
}

// choiceLogprobs are the API's log-probabilities: TopLogprobs maps the most likely
// tokens, and the drawn one, to theirs; TextOffset is where each token begins in the
// text, in bytes.
type choiceLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float64            `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

type completionUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// openAIError is the API's error body.
type openAIError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func newOpenAIError(e *apiError) openAIError {
	var o openAIError
	o.Error.Message = e.Msg
	o.Error.Type = "invalid_request_error"
	switch {
	case e.Code == http.StatusTooManyRequests:
		o.Error.Type = "rate_limit_error"
		code := "rate_limit_exceeded"
		o.Error.Code = &code
	case e.Code >= 500:
		o.Error.Type = "server_error"
	}
	if e.Param != "" {
		o.Error.Param = &e.Param
	}
	return o
}

// isOpenAIPath reports whether an error on path answers in the OpenAI API's shape:
// every path under /v1/ but the native ones.
func isOpenAIPath(path string) bool {
	return strings.HasPrefix(path, "/v1/") && path != "/v1/generate" && path != "/v1/model" && path != "/v1/score"
}

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) {
	a := &openAIAnswer{id: "cmpl-" + randomHex(12), created: time.Now().Unix(), model: s.cfg.ModelName, vocab: s.model.Vocab()}
	var req completionRequest
	if e := s.decodeBody(w, r, &req, false); e != nil {
		a.fail(w, e)
		return
	}
	p, e := completionParams(req)
	if e != nil {
		a.fail(w, e)
		return
	}
	j, e := s.newJob(p)
	if e != nil {
		a.fail(w, e)
		return
	}
	a.logprobs = j.opts.LogProbs
	a.usage = req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	s.run(w, r, j, a)
}

// completionParams turns a completions request into the server's params.
func completionParams(req completionRequest) (params, *apiError) {
	p := params{maxNew: req.MaxTokens, maxNewName: "max_tokens", defaultNew: defaultMaxTokens, temperature: req.Temperature,
		topK: req.TopK, topP: req.TopP, seed: req.Seed, logprobs: req.LogProbs, stream: req.Stream}
	unsupported := func(param, why string) (params, *apiError) {
		return p, errorf(http.StatusBadRequest, param, "%s: %s", param, why)
	}
	switch {
	case req.N != nil && *req.N != 1:
		return unsupported("n", "this server makes one completion a request")
	case req.BestOf != nil && *req.BestOf != 1:
		return unsupported("best_of", "this server makes one completion a request")
	case req.Echo:
		return unsupported("echo", "not supported")
	case req.Suffix != nil && *req.Suffix != "":
		return unsupported("suffix", "not supported (no insertion)")
	case req.PresencePenalty != nil && *req.PresencePenalty != 0, req.FrequencyPenalty != nil && *req.FrequencyPenalty != 0:
		return unsupported("presence_penalty", "penalties are not supported")
	case len(req.LogitBias) > 0:
		return unsupported("logit_bias", "not supported")
	}
	// The prompt: absent or null (start of a text), a string, or an array of one string.
	var prompts []string
	switch raw := strings.TrimSpace(string(req.Prompt)); {
	case raw == "" || raw == "null":
	case strings.HasPrefix(raw, "["):
		if err := json.Unmarshal(req.Prompt, &prompts); err != nil {
			return unsupported("prompt", "want a string or an array of one string (token arrays are not supported)")
		}
		if len(prompts) > 1 {
			return unsupported("prompt", fmt.Sprintf("%d prompts: this server makes one completion a request", len(prompts)))
		}
	default:
		prompts = make([]string, 1)
		if err := json.Unmarshal(req.Prompt, &prompts[0]); err != nil {
			return unsupported("prompt", "want a string or an array of one string")
		}
	}
	if len(prompts) == 1 {
		p.prompt = prompts[0]
	}
	// stop: null, a string, or an array of strings.
	switch raw := strings.TrimSpace(string(req.Stop)); {
	case raw == "" || raw == "null":
	case strings.HasPrefix(raw, "["):
		if err := json.Unmarshal(req.Stop, &p.stop); err != nil {
			return unsupported("stop", "want a string or an array of strings")
		}
	default:
		p.stop = make([]string, 1)
		if err := json.Unmarshal(req.Stop, &p.stop[0]); err != nil {
			return unsupported("stop", "want a string or an array of strings")
		}
	}
	return p, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// openAIAnswer answers in the completions API's form: a stream is "data:" events, each a
// completion chunk, then "data: [DONE]".
type openAIAnswer struct {
	id, model string
	created   int64
	vocab     tokenize.Vocab
	logprobs  bool
	usage     bool // stream_options.include_usage
	offset    int  // bytes of text so far, for text_offset
}

func (a *openAIAnswer) fail(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.Code, newOpenAIError(e))
}

func (a *openAIAnswer) completion(choices []completionChoice) completion {
	return completion{ID: a.id, Object: "text_completion", Created: a.created, Model: a.model,
		SystemFingerprint: "xspan", Choices: choices}
}

// tokenLogprobs adds the log-probabilities of one token to lp.
func (a *openAIAnswer) tokenLogprobs(lp *choiceLogprobs, id int, logprob float64, top []generate.Alt) {
	tok := generate.TokenText(a.vocab, id)
	m := map[string]float64{tok: logprob}
	for _, alt := range top {
		m[alt.Token] = alt.LogProb
	}
	lp.Tokens = append(lp.Tokens, tok)
	lp.TokenLogprobs = append(lp.TokenLogprobs, logprob)
	lp.TopLogprobs = append(lp.TopLogprobs, m)
	lp.TextOffset = append(lp.TextOffset, a.offset)
	a.offset += len(a.vocab.Decode([]uint32{uint32(id)}))
}

func (a *openAIAnswer) full(w http.ResponseWriter, res generate.Result) {
	choice := completionChoice{Text: res.Text, FinishReason: &res.Stop}
	if a.logprobs {
		choice.Logprobs = &choiceLogprobs{}
		for _, t := range res.LogProbs {
			a.tokenLogprobs(choice.Logprobs, t.ID, t.LogProb, t.Top)
		}
	}
	c := a.completion([]completionChoice{choice})
	c.Usage = usage(res)
	writeJSON(w, http.StatusOK, c)
}

func usage(res generate.Result) *completionUsage {
	return &completionUsage{PromptTokens: res.PromptTokens, CompletionTokens: res.NewTokens, TotalTokens: res.PromptTokens + res.NewTokens}
}

func (a *openAIAnswer) token(sse *sseWriter, t generate.Token) error {
	choice := completionChoice{Text: t.Text}
	if a.logprobs && t.LogProb != nil {
		choice.Logprobs = &choiceLogprobs{}
		a.tokenLogprobs(choice.Logprobs, t.ID, *t.LogProb, t.TopLogProbs)
	} else if t.Text == "" {
		return nil // nothing to say yet
	}
	return sse.sendJSON("", a.completion([]completionChoice{choice}))
}

func (a *openAIAnswer) end(sse *sseWriter, res generate.Result) error {
	if err := sse.sendJSON("", a.completion([]completionChoice{{FinishReason: &res.Stop}})); err != nil {
		return err
	}
	if a.usage {
		c := a.completion([]completionChoice{})
		c.Usage = usage(res)
		if err := sse.sendJSON("", c); err != nil {
			return err
		}
	}
	return sse.send("", []byte("[DONE]"))
}

func (a *openAIAnswer) streamError(sse *sseWriter, e *apiError) {
	_ = sse.sendJSON("", newOpenAIError(e))
}

// modelObject is a model in the API's list.
type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (s *Server) modelObject() modelObject {
	return modelObject{ID: s.cfg.ModelName, Object: "model", Created: s.started.Unix(), OwnedBy: "xspan"}
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []modelObject{s.modelObject()}})
}

func (s *Server) handleModelByID(w http.ResponseWriter, r *http.Request) {
	if id := r.PathValue("id"); id != s.cfg.ModelName {
		o := newOpenAIError(errorf(http.StatusNotFound, "model", "the model %q does not exist; this server serves %q", id, s.cfg.ModelName))
		code := "model_not_found"
		o.Error.Code = &code
		writeJSON(w, http.StatusNotFound, o)
		return
	}
	writeJSON(w, http.StatusOK, s.modelObject())
}
