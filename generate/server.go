package generate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"xspan/internal/torchrt"
)

// ServerConfig holds a Server's limits. Zero fields take the defaults of DefaultServerConfig,
// except MaxQueue: 0 means no queue (every request beyond MaxConcurrent gets 429).
type ServerConfig struct {
	MaxConcurrent    int       // generations running at once
	MaxQueue         int       // requests waiting for a slot; beyond them: 429
	MaxBodyBytes     int64     // request body limit; beyond it: 413
	MaxNewTokens     int       // the most tokens one request may ask for; beyond it: 400
	DefaultNewTokens int       // when a request does not say
	PromptBlock      int       // feed prompts in pieces of this many tokens (0: at once)
	Unk              UnkPolicy // prompt characters outside a char vocabulary
	Logf             func(format string, a ...any)
}

// DefaultServerConfig returns the defaults: 2 concurrent generations, 16 queued, 1 MiB
// bodies, at most 4096 new tokens (256 when unspecified), unknown characters refused.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{MaxConcurrent: 2, MaxQueue: 16, MaxBodyBytes: 1 << 20, MaxNewTokens: 4096, DefaultNewTokens: 256, Unk: UnkError}
}

func (c ServerConfig) withDefaults() ServerConfig {
	d := DefaultServerConfig()
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = d.MaxConcurrent
	}
	if c.MaxQueue < 0 {
		c.MaxQueue = 0
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	if c.MaxNewTokens <= 0 {
		c.MaxNewTokens = d.MaxNewTokens
	}
	if c.DefaultNewTokens <= 0 {
		c.DefaultNewTokens = min(d.DefaultNewTokens, c.MaxNewTokens)
	}
	if c.Unk == "" {
		c.Unk = UnkError
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return c
}

// Request is the JSON body of POST /v1/generate. Absent fields take the defaults:
// DefaultNewTokens, temperature 1, top_k 0 (all), top_p 1 (all), a random seed (which the
// answer reports), stream false.
type Request struct {
	Prompt       string   `json:"prompt"`
	MaxNewTokens *int     `json:"max_new_tokens"`
	Temperature  *float64 `json:"temperature"`
	TopK         *int     `json:"top_k"`
	TopP         *float64 `json:"top_p"`
	Seed         *int64   `json:"seed"`
	Stream       bool     `json:"stream"`
}

// Response is the JSON answer of POST /v1/generate, and the data of the final "done"
// event of a stream (whose Text is then empty: the tokens carried it).
type Response struct {
	Result
	TokensPerSec float64 `json:"tokens_per_second"`
	PromptMillis float64 `json:"prompt_ms"`
	GenMillis    float64 `json:"generation_ms"`
}

// Counters count a Server's requests.
type Counters struct {
	Running   int   `json:"running"`
	Queued    int   `json:"queued"`
	Completed int64 `json:"completed"`
	Cancelled int64 `json:"cancelled"`
	Rejected  int64 `json:"rejected"` // refused with 429
	Failed    int64 `json:"failed"`
}

// A Server answers generation requests over HTTP; each request gets its own Stepper.
type Server struct {
	model Model
	cfg   ServerConfig
	mux   *http.ServeMux
	slots chan struct{}

	mu sync.Mutex
	c  Counters
}

// NewServer returns a Server for model.
func NewServer(model Model, cfg ServerConfig) *Server {
	s := &Server{model: model, cfg: cfg.withDefaults(), mux: http.NewServeMux()}
	s.slots = make(chan struct{}, s.cfg.MaxConcurrent)
	s.mux.HandleFunc("POST /v1/generate", s.handleGenerate)
	s.mux.HandleFunc("GET /healthz", s.handleHealth)
	s.mux.HandleFunc("GET /v1/model", s.handleModel)
	s.mux.HandleFunc("GET /{$}", s.handlePage)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Counters returns a snapshot of the request counters.
func (s *Server) Counters() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c
}

func (s *Server) count(f func(c *Counters)) {
	s.mu.Lock()
	f(&s.c)
	s.mu.Unlock()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, format string, a ...any) {
	writeJSON(w, code, map[string]string{"error": fmt.Sprintf(format, a...)})
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Status string `json:"status"`
		Counters
	}{"ok", s.Counters()})
}

func (s *Server) handleModel(w http.ResponseWriter, r *http.Request) {
	v := s.model.Vocab()
	writeJSON(w, http.StatusOK, map[string]any{
		"model": s.model.Info(),
		"vocab": map[string]any{"kind": v.Kind(), "size": v.Size()},
		"limits": map[string]any{
			"max_new_tokens": s.cfg.MaxNewTokens, "default_new_tokens": s.cfg.DefaultNewTokens,
			"max_concurrent": s.cfg.MaxConcurrent, "max_queue": s.cfg.MaxQueue,
			"max_body_bytes": s.cfg.MaxBodyBytes, "unknown_chars": s.cfg.Unk,
		},
	})
}

func (s *Server) handlePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	io.WriteString(w, indexHTML)
}

// parseRequest decodes and checks a request; its error message is meant for the client.
func (s *Server) parseRequest(w http.ResponseWriter, r *http.Request) (req Request, prompt []int64, opts Options, code int, err error) {
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return req, nil, opts, http.StatusRequestEntityTooLarge, fmt.Errorf("request body over %d bytes", s.cfg.MaxBodyBytes)
		}
		return req, nil, opts, http.StatusBadRequest, fmt.Errorf("bad JSON: %v", err)
	}
	if dec.More() {
		return req, nil, opts, http.StatusBadRequest, errors.New("bad JSON: more than one value in the body")
	}
	opts = Options{MaxNewTokens: s.cfg.DefaultNewTokens, Sampler: DefaultSampler(), PromptBlock: s.cfg.PromptBlock}
	opts.Sampler.Seed = rand.Int64N(1 << 53) // exact in JavaScript numbers
	if req.MaxNewTokens != nil {
		opts.MaxNewTokens = *req.MaxNewTokens
	}
	if opts.MaxNewTokens < 1 || opts.MaxNewTokens > s.cfg.MaxNewTokens {
		return req, nil, opts, http.StatusBadRequest, fmt.Errorf("max_new_tokens = %d: must lie in [1, %d]", opts.MaxNewTokens, s.cfg.MaxNewTokens)
	}
	if req.Temperature != nil {
		opts.Sampler.Temperature = *req.Temperature
	}
	if req.TopK != nil {
		opts.Sampler.TopK = *req.TopK
	}
	if req.TopP != nil {
		opts.Sampler.TopP = *req.TopP
	}
	if req.Seed != nil {
		opts.Sampler.Seed = *req.Seed
	}
	if err := opts.Sampler.Validate(); err != nil {
		return req, nil, opts, http.StatusBadRequest, err
	}
	prompt, _, err = EncodePrompt(s.model.Vocab(), []byte(req.Prompt), s.cfg.Unk)
	if err != nil {
		return req, nil, opts, http.StatusBadRequest, err
	}
	return req, prompt, opts, http.StatusOK, nil
}

// admit reserves a place among the running and queued requests; false means the queue
// is full. A true admit must be followed by release.
func (s *Server) admit() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c.Running+s.c.Queued >= s.cfg.MaxConcurrent+s.cfg.MaxQueue {
		s.c.Rejected++
		return false
	}
	s.c.Queued++
	return true
}

func (s *Server) handleGenerate(w http.ResponseWriter, r *http.Request) {
	req, prompt, opts, code, err := s.parseRequest(w, r)
	if err != nil {
		writeError(w, code, "%v", err)
		return
	}
	if !s.admit() {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "busy: %d generations running and %d waiting; try again later", s.cfg.MaxConcurrent, s.cfg.MaxQueue)
		return
	}
	ctx := r.Context()
	select {
	case s.slots <- struct{}{}:
		s.count(func(c *Counters) { c.Queued--; c.Running++ })
	case <-ctx.Done():
		s.count(func(c *Counters) { c.Queued--; c.Cancelled++ })
		return
	}
	defer func() {
		<-s.slots
		s.count(func(c *Counters) { c.Running-- })
	}()

	// net/http's goroutines do not hold their threads; libtorch needs it.
	defer torchrt.Lock()()
	st, err := s.model.NewStepper()
	if err != nil {
		s.count(func(c *Counters) { c.Failed++ })
		writeError(w, http.StatusInternalServerError, "model: %v", err)
		return
	}
	defer closeStepper(st)

	var res Result
	if req.Stream {
		res, err = s.stream(ctx, w, st, prompt, opts)
	} else {
		res, err = Generate(ctx, st, s.model.Vocab(), prompt, opts, nil)
		if err == nil {
			writeJSON(w, http.StatusOK, newResponse(res))
		}
	}
	switch {
	case res.Stop == StopCancelled || ctx.Err() != nil:
		s.count(func(c *Counters) { c.Cancelled++ })
		s.cfg.Logf("generate: cancelled after %d of %d tokens", res.NewTokens, opts.MaxNewTokens)
	case err != nil:
		s.count(func(c *Counters) { c.Failed++ })
		s.cfg.Logf("generate: %v", err)
		if !req.Stream {
			writeError(w, http.StatusInternalServerError, "generation failed: %v", err)
		}
	default:
		s.count(func(c *Counters) { c.Completed++ })
		s.cfg.Logf("generate: %d prompt + %d new tokens, %.1f tok/s, live %v", res.PromptTokens, res.NewTokens, res.TokensPerSec(), res.Live)
	}
}

func newResponse(res Result) Response {
	return Response{Result: res, TokensPerSec: res.TokensPerSec(),
		PromptMillis: float64(res.PromptTime.Microseconds()) / 1000, GenMillis: float64(res.GenTime.Microseconds()) / 1000}
}

// stream answers with Server-Sent Events: "token" events carrying Token, then one "done"
// event carrying Response, or an "error" event.
func (s *Server) stream(ctx context.Context, w http.ResponseWriter, st Stepper, prompt []int64, opts Options) (Result, error) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(event string, v any) error {
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := rc.Flush(); err != nil {
		return Result{}, err
	}
	res, err := Generate(ctx, st, s.model.Vocab(), prompt, opts, func(t Token) error { return send("token", t) })
	switch {
	case err == nil:
		done := newResponse(res)
		done.Text = ""
		err = send("done", done)
	case ctx.Err() == nil:
		_ = send("error", map[string]string{"error": err.Error()})
	}
	return res, err
}

// ListenAndServe serves h on addr until ctx ends, then shuts down gracefully: it stops
// accepting connections and waits up to grace for running requests; after that it
// cancels their contexts (which stops their generations) and closes the connections.
// ready, when not nil, receives the address listened on.
func ListenAndServe(ctx context.Context, addr string, h http.Handler, grace time.Duration, ready func(addr string)) error {
	base, cancelBase := context.WithCancel(context.Background())
	defer cancelBase()
	srv := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err = srv.Shutdown(sctx)
	if err != nil {
		cancelBase()
		err = srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}
