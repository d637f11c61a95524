// Package serve serves a generate.Model over HTTP: POST /v1/generate (JSON or
// Server-Sent Events), POST /v1/score, GET /v1/model, GET /healthz and a small HTML page
// (page.go), and the OpenAI-compatible POST /v1/completions and GET /v1/models
// (openai.go), all answered through one generation path, with a concurrency limit, a
// bounded queue, timeouts for slow clients, a cap on connections (conns.go) and checks of
// Host, Origin and Content-Type against cross-site use. Each request gets its own
// Stepper, run on a goroutine that holds its OS thread.
package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"xspan/generate"
	"xspan/internal/torchrt"
)

// Request is the JSON body of POST /v1/generate. Absent fields take the defaults:
// DefaultNewTokens, temperature 1, top_k 0 (all), top_p 1 (all), a random seed (which the
// answer reports), stream false, no stop sequences, no log-probabilities. An empty prompt
// starts from StartToken. Stop takes up to MaxStops sequences; LogProbs N in [0,
// MaxTopLogProbs] adds each token's log-probability and the N most likely at its step.
type Request struct {
	Prompt       string   `json:"prompt"`
	MaxNewTokens *int     `json:"max_new_tokens"`
	Temperature  *float64 `json:"temperature"`
	TopK         *int     `json:"top_k"`
	TopP         *float64 `json:"top_p"`
	Seed         *int64   `json:"seed"`
	Stop         []string `json:"stop"`
	LogProbs     *int     `json:"logprobs"`
	Stream       bool     `json:"stream"`
}

// Limits of a request's stop sequences and log-probabilities (those of the OpenAI API).
const (
	MaxStops       = 4
	MaxStopBytes   = 256
	MaxTopLogProbs = 5
)

// Response is the JSON answer of POST /v1/generate, and the data of the final "done"
// event of a stream (whose Text is then empty: the tokens carried it).
type Response struct {
	generate.Result
	TokensPerSec float64 `json:"tokens_per_second"`
	PromptMillis float64 `json:"prompt_ms"`
	GenMillis    float64 `json:"generation_ms"`
}

// Counters count a Server's requests and connections.
type Counters struct {
	Running     int   `json:"running"`
	Queued      int   `json:"queued"`
	Completed   int64 `json:"completed"`
	Cancelled   int64 `json:"cancelled"`   // the client went away
	Rejected    int64 `json:"rejected"`    // refused with 429
	Failed      int64 `json:"failed"`      // the model failed
	TimedOut    int64 `json:"timed_out"`   // the client sent its body, or read the answer, too slowly
	Interrupted int64 `json:"interrupted"` // cut off at shutdown, after the grace period
	// Connections are open now (0 unless served by ListenAndServe); Evicted were closed
	// to make room for new ones, and ConnsRefused were closed at once because every
	// open one was generating.
	Connections  int   `json:"connections"`
	Evicted      int64 `json:"evicted"`
	ConnsRefused int64 `json:"conns_refused"`
}

// A Server answers generation requests over HTTP; each request gets its own Stepper.
type Server struct {
	model   generate.Model
	cfg     Config
	mux     *http.ServeMux
	slots   chan struct{}
	started time.Time

	mu    sync.Mutex
	c     Counters
	conns *connLimiter // while ListenAndServe runs
}

// New returns a Server for model, or cfg's Validate error.
func New(model generate.Model, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{model: model, cfg: cfg.resolved(), mux: http.NewServeMux(), started: time.Now()}
	s.slots = make(chan struct{}, s.cfg.MaxConcurrent)
	s.route("POST /v1/generate", s.handleGenerate)
	s.route("GET /v1/model", s.handleModel)
	s.route("POST /v1/score", s.handleScore)
	s.route("POST /v1/completions", s.handleCompletions)
	s.route("GET /v1/models", s.handleModels)
	s.route("GET /v1/models/{id}", s.handleModelByID)
	s.mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/chat/completions" {
			s.fail(w, r, errorf(http.StatusNotFound, "", "no chat completions: the model is a character-level language model without a chat format; use POST /v1/completions"))
			return
		}
		s.fail(w, r, errorf(http.StatusNotFound, "", "no endpoint %s %s", r.Method, r.URL.Path))
	})
	s.mux.HandleFunc("GET /healthz", s.handleHealth)
	s.mux.HandleFunc("GET /{$}", s.handlePage)
	return s, nil
}

// route registers h for pattern ("METHOD /path"), and a JSON 405 for the path's other
// methods (the mux's own is plain text).
func (s *Server) route(pattern string, h http.HandlerFunc) {
	method, path, _ := strings.Cut(pattern, " ")
	s.mux.HandleFunc(pattern, h)
	allow := method
	if method == http.MethodGet {
		allow += ", HEAD"
	}
	s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		s.fail(w, r, errorf(http.StatusMethodNotAllowed, "", "%s %s: method not allowed (allowed: %s)", r.Method, r.URL.Path, allow))
	})
}

// ServeHTTP implements http.Handler. Before routing it refuses requests from outside:
// a Host that does not name this server (DNS rebinding), an Origin of another site, and
// POSTs that are not JSON, which browsers would otherwise send cross-site without asking
// (a "simple" request; JSON needs a CORS preflight, which this server grants only to
// AllowedOrigins).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case !s.hostAllowed(r):
		s.fail(w, r, errorf(http.StatusForbidden, "", "host %q is not this server's address; start the server with --allow-host to accept it", r.Host))
		return
	case r.Header.Get("Origin") != "" && !s.originAllowed(r.Header.Get("Origin"), r.Host):
		s.fail(w, r, errorf(http.StatusForbidden, "", "cross-origin request from %q refused", r.Header.Get("Origin")))
		return
	case r.Method == http.MethodPost && !isJSON(r.Header.Get("Content-Type")):
		s.fail(w, r, errorf(http.StatusUnsupportedMediaType, "", "Content-Type %q: send application/json", r.Header.Get("Content-Type")))
		return
	}
	if o := r.Header.Get("Origin"); o != "" && s.corsOrigin(o) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", o)
		h.Add("Vary", "Origin")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, POST")
			h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}

// hostAllowed reports whether r's Host names this server: the address its connection
// came to, localhost when that is a loopback address, or an allowed host. The port is
// not compared (a proxy or port mapping may change it; rebinding keeps it anyway).
func (s *Server) hostAllowed(r *http.Request) bool {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" {
		return false
	}
	if s.hostListed(host) {
		return true
	}
	var local netip.Addr
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		local = a.AddrPort().Addr().Unmap()
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return local.IsValid() && ip.Unmap().WithZone("") == local.WithZone("")
	}
	return (host == "localhost" || strings.HasSuffix(host, ".localhost")) && local.IsLoopback()
}

func (s *Server) hostListed(host string) bool {
	for _, a := range s.cfg.AllowedHosts {
		if a == "*" || strings.EqualFold(strings.TrimSuffix(a, "."), host) {
			return true
		}
	}
	return false
}

// originAllowed reports whether a browser's Origin header names this server's own pages
// (the same host and port as the request's Host) or an allowed host.
func (s *Server) originAllowed(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false // includes "null", sent by sandboxed pages and file: URLs
	}
	return strings.EqualFold(u.Host, host) || s.hostListed(strings.ToLower(u.Hostname())) || s.corsOrigin(origin)
}

// corsOrigin reports whether origin is one of AllowedOrigins, whose pages get CORS
// headers.
func (s *Server) corsOrigin(origin string) bool {
	for _, o := range s.cfg.AllowedOrigins {
		if strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	return false
}

// Counters returns a snapshot of the request and connection counters.
func (s *Server) Counters() Counters {
	s.mu.Lock()
	c, l := s.c, s.conns
	s.mu.Unlock()
	if l != nil {
		c.Connections, c.Evicted, c.ConnsRefused = l.stats()
	}
	return c
}

func (s *Server) count(f func(c *Counters)) {
	s.mu.Lock()
	f(&s.c)
	s.mu.Unlock()
}

// apiError is an error answered with an HTTP status. Its message is meant for the
// client; Param names the request field at fault, when one is.
type apiError struct {
	Code  int
	Msg   string
	Param string
}

func (e *apiError) Error() string { return e.Msg }

func errorf(code int, param, format string, a ...any) *apiError {
	return &apiError{Code: code, Msg: fmt.Sprintf(format, a...), Param: param}
}

// fail answers e in the shape of the API that r's path belongs to.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, e *apiError) {
	if isOpenAIPath(r.URL.Path) {
		writeJSON(w, e.Code, newOpenAIError(e))
		return
	}
	nativeAnswer{}.fail(w, e)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Status string `json:"status"`
		Counters
	}{"ok", s.Counters()})
}

func (s *Server) handleModel(w http.ResponseWriter, r *http.Request) {
	v := s.model.Vocab()
	_, scores := s.model.(Scorer)
	writeJSON(w, http.StatusOK, map[string]any{
		"id":    s.cfg.ModelName,
		"score": scores,
		"model": s.model.Info(),
		"vocab": map[string]any{"kind": v.Kind(), "size": v.Size()},
		"limits": map[string]any{
			"max_new_tokens": s.cfg.MaxNewTokens, "default_new_tokens": s.cfg.DefaultNewTokens,
			"max_prompt_tokens": s.cfg.MaxPromptTokens,
			"max_concurrent":    s.cfg.MaxConcurrent, "max_queue": s.cfg.MaxQueue,
			"max_body_bytes": s.cfg.MaxBodyBytes, "unknown_chars": s.cfg.Unk,
		},
	})
}

func (s *Server) handlePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	io.WriteString(w, indexHTML)
}

// decodeBody reads r's JSON body into v within ReadTimeout and MaxBodyBytes; strict
// refuses unknown fields.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any, strict bool) *apiError {
	// The deadline is lifted once the body is in, since the connection's reads also
	// watch for the client leaving during the generation. After an error it stays: what
	// is left of the body is read (and dropped) after the answer, within it too.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(s.cfg.ReadTimeout))
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if strict {
		dec.DisallowUnknownFields()
	}
	err := dec.Decode(v)
	if err == nil && dec.More() {
		return errorf(http.StatusBadRequest, "", "bad JSON: more than one value in the body")
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		_ = rc.SetReadDeadline(time.Time{})
		return nil
	case errors.As(err, &tooBig):
		return errorf(http.StatusRequestEntityTooLarge, "", "request body over %d bytes", s.cfg.MaxBodyBytes)
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.count(func(c *Counters) { c.TimedOut++ })
		w.Header().Set("Connection", "close")
		return errorf(http.StatusRequestTimeout, "", "request body not received within %v", s.cfg.ReadTimeout)
	}
	return errorf(http.StatusBadRequest, "", "bad JSON: %v", err)
}

// params are a request's generation settings, whichever API they came in; nil is absent.
type params struct {
	prompt      string
	maxNew      *int
	maxNewName  string // the field's name in the request's API
	defaultNew  int
	temperature *float64
	topK        *int
	topP        *float64
	seed        *int64
	stop        []string
	logprobs    *int
	stream      bool
}

// job is a checked generation request.
type job struct {
	prompt []int64
	opts   generate.Options
	stream bool
}

// newJob checks p against the server's limits and encodes the prompt.
func (s *Server) newJob(p params) (job, *apiError) {
	opts := generate.Options{MaxNewTokens: p.defaultNew, Sampler: generate.DefaultSampler(), PromptBlock: s.cfg.PromptBlock}
	opts.Sampler.Seed = rand.Int64N(1 << 53) // exact in JavaScript numbers
	if p.maxNew != nil {
		opts.MaxNewTokens = *p.maxNew
	}
	if opts.MaxNewTokens < 1 || opts.MaxNewTokens > s.cfg.MaxNewTokens {
		return job{}, errorf(http.StatusBadRequest, p.maxNewName, "%s = %d: must lie in [1, %d]", p.maxNewName, opts.MaxNewTokens, s.cfg.MaxNewTokens)
	}
	if p.temperature != nil {
		opts.Sampler.Temperature = *p.temperature
	}
	if p.topK != nil {
		opts.Sampler.TopK = *p.topK
	}
	if p.topP != nil {
		opts.Sampler.TopP = *p.topP
	}
	if p.seed != nil {
		opts.Sampler.Seed = *p.seed
	}
	if err := opts.Sampler.Validate(); err != nil {
		param, _, _ := strings.Cut(err.Error(), " ")
		return job{}, errorf(http.StatusBadRequest, param, "%v", err)
	}
	if len(p.stop) > MaxStops {
		return job{}, errorf(http.StatusBadRequest, "stop", "%d stop sequences: at most %d", len(p.stop), MaxStops)
	}
	for _, q := range p.stop {
		if q == "" || len(q) > MaxStopBytes {
			return job{}, errorf(http.StatusBadRequest, "stop", "stop sequence %q: want 1 to %d bytes", q, MaxStopBytes)
		}
	}
	opts.Stop = p.stop
	if p.logprobs != nil {
		if *p.logprobs < 0 || *p.logprobs > MaxTopLogProbs {
			return job{}, errorf(http.StatusBadRequest, "logprobs", "logprobs = %d: must lie in [0, %d]", *p.logprobs, MaxTopLogProbs)
		}
		opts.LogProbs, opts.TopLogProbs = true, *p.logprobs
	}
	prompt, _, err := generate.PromptTokens(s.model, []byte(p.prompt), s.cfg.Unk)
	if err != nil {
		return job{}, errorf(http.StatusBadRequest, "prompt", "%v", err)
	}
	if len(prompt) > s.cfg.MaxPromptTokens {
		return job{}, errorf(http.StatusBadRequest, "prompt", "prompt of %d tokens: over the limit of %d", len(prompt), s.cfg.MaxPromptTokens)
	}
	return job{prompt: prompt, opts: opts, stream: p.stream}, nil
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
	var req Request
	if e := s.decodeBody(w, r, &req, true); e != nil {
		s.fail(w, r, e)
		return
	}
	j, e := s.newJob(params{prompt: req.Prompt, maxNew: req.MaxNewTokens, maxNewName: "max_new_tokens", defaultNew: s.cfg.DefaultNewTokens,
		temperature: req.Temperature, topK: req.TopK, topP: req.TopP, seed: req.Seed, stop: req.Stop, logprobs: req.LogProbs, stream: req.Stream})
	if e != nil {
		s.fail(w, r, e)
		return
	}
	s.run(w, r, j, nativeAnswer{})
}

// An answer writes a generation's outcome in the form of one API.
// enter takes a generation slot for a request: it answers 429 when the queue is full
// and 503 when the server shuts down while the request waits, and counts either. With ok
// the caller holds a slot and its connection is marked busy until it calls release;
// without, the request is answered (or was cancelled) and there is nothing to release.
// what names the work in the 429's message.
func (s *Server) enter(ctx context.Context, w http.ResponseWriter, fail func(http.ResponseWriter, *apiError), what string) (release func(), ok bool) {
	if !s.admit() {
		w.Header().Set("Retry-After", "1")
		fail(w, errorf(http.StatusTooManyRequests, "", "busy: %d %s running and %d waiting; try again later", s.cfg.MaxConcurrent, what, s.cfg.MaxQueue))
		return nil, false
	}
	idle := markBusy(ctx)
	select {
	case s.slots <- struct{}{}:
		s.count(func(c *Counters) { c.Queued--; c.Running++ })
	case <-ctx.Done():
		idle()
		if context.Cause(ctx) == errShutdown {
			s.count(func(c *Counters) { c.Queued--; c.Interrupted++ })
			fail(w, errorf(http.StatusServiceUnavailable, "", "%v", errShutdown))
			return nil, false
		}
		s.count(func(c *Counters) { c.Queued--; c.Cancelled++ })
		return nil, false
	}
	return func() {
		<-s.slots
		s.count(func(c *Counters) { c.Running-- })
		idle()
	}, true
}

type answer interface {
	// fail answers an error before anything else was written.
	fail(w http.ResponseWriter, e *apiError)
	// full answers a generation that was not streamed.
	full(w http.ResponseWriter, res generate.Result)
	// A streamed answer: token sends a token as it comes, end closes a generation that
	// finished, streamError one that did not.
	token(sse *sseWriter, t generate.Token) error
	end(sse *sseWriter, res generate.Result) error
	streamError(sse *sseWriter, e *apiError)
}

// errShutdown cancels the generations still running when the grace period ends.
var errShutdown = errors.New("server shutting down")

// writeError marks a failed write to the client.
type writeError struct{ err error }

func (e writeError) Error() string { return "writing to the client: " + e.err.Error() }
func (e writeError) Unwrap() error { return e.err }

// run queues j, generates, and answers through a. It is the one generation path of
// every API.
func (s *Server) run(w http.ResponseWriter, r *http.Request, j job, a answer) {
	// Holding a slot, the connection is busy: making room for new ones must not close it.
	release, ok := s.enter(r.Context(), w, a.fail, "generations")
	if !ok {
		return
	}
	defer release()
	ctx := r.Context()

	// Deadlines set on the connection outlive the request: lift them for the next one.
	defer http.NewResponseController(w).SetWriteDeadline(time.Time{})
	// net/http's goroutines do not hold their threads; libtorch needs it.
	defer torchrt.Lock()()
	st, err := s.model.NewStepper()
	if err != nil {
		s.count(func(c *Counters) { c.Failed++ })
		a.fail(w, errorf(http.StatusInternalServerError, "", "model: %v", err))
		return
	}
	defer generate.CloseStepper(st)

	var sse *sseWriter
	var emit func(generate.Token) error
	if j.stream {
		if sse, err = newSSE(w, s.cfg.WriteTimeout); err != nil {
			s.count(func(c *Counters) { c.Cancelled++ })
			return
		}
		emit = func(t generate.Token) error { return a.token(sse, t) }
	}
	res, err := generate.Generate(ctx, st, s.model.Vocab(), j.prompt, j.opts, emit)
	var werr writeError
	switch {
	case ctx.Err() != nil && context.Cause(ctx) == errShutdown:
		s.count(func(c *Counters) { c.Interrupted++ })
		s.cfg.Logf("generate: cut off by shutdown after %d of %d tokens", res.NewTokens, j.opts.MaxNewTokens)
		e := errorf(http.StatusServiceUnavailable, "", "%v: stopped after %d tokens", errShutdown, res.NewTokens)
		if sse != nil {
			a.streamError(sse, e)
		} else {
			a.fail(w, e)
		}
	case errors.As(err, &werr): // before the next case: a failed write cancels ctx too
		if errors.Is(err, os.ErrDeadlineExceeded) {
			s.count(func(c *Counters) { c.TimedOut++ })
		} else {
			s.count(func(c *Counters) { c.Cancelled++ })
		}
		s.cfg.Logf("generate: stopped after %d of %d tokens: %v", res.NewTokens, j.opts.MaxNewTokens, err)
	case res.Stop == generate.StopCancelled || ctx.Err() != nil:
		s.count(func(c *Counters) { c.Cancelled++ })
		s.cfg.Logf("generate: cancelled after %d of %d tokens", res.NewTokens, j.opts.MaxNewTokens)
	case err != nil:
		s.count(func(c *Counters) { c.Failed++ })
		s.cfg.Logf("generate: %v", err)
		e := errorf(http.StatusInternalServerError, "", "generation failed: %v", err)
		if sse != nil {
			a.streamError(sse, e)
		} else {
			a.fail(w, e)
		}
	default:
		s.count(func(c *Counters) { c.Completed++ })
		s.cfg.Logf("generate: %d prompt + %d new tokens, %.1f tok/s, live %v", res.PromptTokens, res.NewTokens, res.TokensPerSec(), res.Live)
		if sse != nil {
			_ = a.end(sse, res)
		} else {
			_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
			a.full(w, res)
		}
	}
}

// sseWriter writes Server-Sent Events, each within the write timeout.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

// newSSE starts a stream of events: its header goes out at once.
func newSSE(w http.ResponseWriter, timeout time.Duration) (*sseWriter, error) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sseWriter{w: w, rc: http.NewResponseController(w), timeout: timeout}
	return s, s.flush()
}

func (s *sseWriter) flush() error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	if err := s.rc.Flush(); err != nil {
		return writeError{err}
	}
	return nil
}

// send writes one event; an empty name leaves the "event:" line out.
func (s *sseWriter) send(event string, data []byte) error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	var err error
	if event != "" {
		_, err = fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", event, data)
	} else {
		_, err = fmt.Fprintf(s.w, "data: %s\n\n", data)
	}
	if err != nil {
		return writeError{err}
	}
	return s.flush()
}

// sendJSON writes one event carrying v as JSON.
func (s *sseWriter) sendJSON(event string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.send(event, data)
}

// nativeAnswer answers in the form of POST /v1/generate: errors are {"error": message},
// and a stream is "token" events, then "done" or "error".
type nativeAnswer struct{}

func (nativeAnswer) fail(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.Code, map[string]string{"error": e.Msg})
}

func (nativeAnswer) full(w http.ResponseWriter, res generate.Result) {
	writeJSON(w, http.StatusOK, newResponse(res))
}

func (nativeAnswer) token(sse *sseWriter, t generate.Token) error { return sse.sendJSON("token", t) }

func (nativeAnswer) end(sse *sseWriter, res generate.Result) error {
	done := newResponse(res)
	done.Text, done.LogProbs = "", nil // the tokens carried them
	return sse.sendJSON("done", done)
}

func (nativeAnswer) streamError(sse *sseWriter, e *apiError) {
	_ = sse.sendJSON("error", map[string]string{"error": e.Msg})
}

func newResponse(res generate.Result) Response {
	return Response{Result: res, TokensPerSec: res.TokensPerSec(),
		PromptMillis: float64(res.PromptTime.Microseconds()) / 1000, GenMillis: float64(res.GenTime.Microseconds()) / 1000}
}

// ListenAndServe serves s on addr until ctx ends, then shuts down gracefully: it stops
// accepting connections and waits up to the config's Grace for running requests. After that it
// cancels their generations, which answer 503 (or a final "error" event) and are counted
// as interrupted, and closes the connections. ready, when not nil, receives the address
// listened on.
func (s *Server) ListenAndServe(ctx context.Context, addr string, ready func(addr string)) error {
	base, cancelBase := context.WithCancelCause(context.Background())
	defer cancelBase(nil)
	srv := &http.Server{
		Addr:              addr,
		Handler:           s,
		ReadHeaderTimeout: s.cfg.ReadTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		BaseContext:       func(net.Listener) context.Context { return base },
		ConnContext:       withConn,
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	cl := newConnLimiter(ln, s.cfg.MaxConns)
	s.mu.Lock()
	s.conns = cl
	s.mu.Unlock()
	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(cl) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.Grace)
	defer cancel()
	err = srv.Shutdown(sctx)
	if err != nil {
		// Past the grace period: stop the generations, give their handlers a moment to
		// send their last words, then close whatever is left.
		cancelBase(errShutdown)
		lctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(lctx)
		err = srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}
