package main

import (
	"fmt"
	"log"
	"path/filepath"

	"xspan/generate"
	"xspan/internal/torchrt"
	"xspan/serve"
)

func init() {
	register(command{name: "serve", summary: "serve a checkpoint over HTTP: JSON or streamed (SSE) generation, and a page at /", run: runServe})
}

const serveDescription = `
Serves the model over HTTP (standard library):

  POST /v1/generate  {"prompt", "max_new_tokens", "temperature", "top_k", "top_p", "seed",
                      "stop", "logprobs", "stream"}: a JSON answer, or Server-Sent Events
                      ("token" events, then "done" or "error") when stream is true
  POST /v1/completions  OpenAI-compatible completions ("prompt", "max_tokens", "temperature",
                      "top_p", "seed", "stop", "n": 1, "logprobs", "stream"); answers and
                      errors in that API's shapes, streams ending in "data: [DONE]"
  GET  /v1/models    OpenAI-compatible: the one model served (its id: --model-name)
  GET  /healthz      status and request counters
  POST /v1/score     {"text"}: per token its text, bits and span per layer and whether each
                      layer still holds it after the text; the text's bpc; the live memory
                      per layer after every token (texts bounded by --max-prompt-tokens)
  GET  /v1/model     config, vocabulary, checkpoint step and the server's limits
  GET  /             a page to type a prompt and watch the tokens stream, then see what the
                      model remembers of the text (colours from /v1/score)

Each request has its own memory. Up to --max-concurrent requests generate at once, up to
--max-queue more wait, and the rest get 429. A client that disconnects stops its
generation. Bad JSON or values get 400 with a message; bodies over --max-body get 413.
Prompts over --max-prompt-tokens get 400; temperatures below 1e-6 are greedy.

Slow clients: a request's header, and then its body, must arrive within --read-timeout
(else 408), each write of an answer must be taken within --write-timeout, and a kept-alive
connection closes after --idle-timeout without a request. At most --max-conns connections
stay open: a new one closes the oldest that is idle or still sending its request.

Perimeter: the Host header must name the address the request came to (or localhost on a
loopback address) or a host given with --allow-host, against DNS rebinding; POSTs must be
application/json, requests from other origins get 403, and there are no CORS headers,
unless --allow-origin names an origin: its pages may then call the API (with CORS headers
and preflights answered).

SIGINT or SIGTERM shuts down: no new connections, running requests get --grace to finish,
then they are cancelled: a stream gets a final "error" event, and they count as
interrupted.`

func runServe(e *env, args []string) error {
	fs := newFlagSet("serve", "(--ckpt PATH_OR_RUN | --preset NAME --random) [--addr HOST:PORT] [flags]", serveDescription)
	var mf modelFlags
	mf.register(fs)
	def := serve.DefaultConfig()
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on")
	maxConc := fs.Int("max-concurrent", def.MaxConcurrent, "generations running at once")
	maxQueue := fs.Int("max-queue", def.MaxQueue, "requests waiting for a slot; beyond them: 429")
	maxBody := fs.Int64("max-body", def.MaxBodyBytes, "request body limit in bytes")
	maxNew := fs.Int("max-new-tokens", def.MaxNewTokens, "the most tokens a request may ask for")
	defNew := fs.Int("default-new-tokens", def.DefaultNewTokens, "tokens generated when a request does not say (0: 256 or --max-new-tokens if smaller)")
	maxPrompt := fs.Int("max-prompt-tokens", def.MaxPromptTokens, "the most prompt tokens a request may send")
	readTO := fs.Duration("read-timeout", def.ReadTimeout, "time for a client to send a request's header, and again its body")
	writeTO := fs.Duration("write-timeout", def.WriteTimeout, "time for a client to take each write of an answer (each event of a stream)")
	idleTO := fs.Duration("idle-timeout", def.IdleTimeout, "close a kept-alive connection without a request after this")
	maxConns := fs.Int("max-conns", def.MaxConns, "open connections; beyond them a new one closes the oldest idle or slow one")
	var hosts []string
	fs.Func("allow-host", "a host name clients may use besides the listening address (repeatable; * allows any)", func(v string) error {
		hosts = append(hosts, v)
		return nil
	})
	var origins []string
	fs.Func("allow-origin", "a web origin (https://host[:port]) whose pages may call the API: CORS for it (repeatable; default none)", func(v string) error {
		origins = append(origins, v)
		return nil
	})
	modelName := fs.String("model-name", "", "the model's id in the OpenAI-compatible API (default: xspan-RUN or xspan-PRESET-random)")
	unk := fs.String("unk", "error", "prompt characters outside a char vocabulary: error (400) or replace (with <unk>)")
	grace := fs.Duration("grace", def.Grace, "on shutdown, how long running requests may finish")
	quiet := fs.Bool("quiet", false, "do not log each request")
	pos, err := fs.parse(e, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("unexpected arguments %q", pos)
	}
	if err := mf.check(); err != nil {
		return err
	}
	policy, err := generate.ParseUnkPolicy(*unk)
	if err != nil {
		return usageErrorf("--unk: %v", err)
	}
	cfg := serve.Config{
		MaxConcurrent: *maxConc, MaxQueue: *maxQueue, MaxBodyBytes: *maxBody,
		MaxNewTokens: *maxNew, DefaultNewTokens: *defNew, MaxPromptTokens: *maxPrompt, Unk: policy,
		ReadTimeout: *readTO, WriteTimeout: *writeTO, IdleTimeout: *idleTO, MaxConns: *maxConns, Grace: *grace,
		AllowedHosts: hosts, AllowedOrigins: origins, ModelName: *modelName,
	}
	if err := cfg.Validate(); err != nil {
		return usageErrorf("%v", err)
	}

	logger := log.New(e.stderr, "serve: ", log.LstdFlags)
	model, err := func() (*lmModel, error) {
		defer torchrt.Lock()()
		return mf.load(func(f string, a ...any) { logger.Printf(f, a...) })
	}()
	if err != nil {
		return err
	}
	cfg.PromptBlock = model.m.Cfg.Block
	if cfg.ModelName == "" {
		cfg.ModelName = defaultModelName(model.info)
	}
	if !*quiet {
		cfg.Logf = logger.Printf
	}
	srv, err := serve.New(model, cfg)
	if err != nil {
		return err
	}
	ctx, stop := e.interruptible()
	defer stop()
	err = srv.ListenAndServe(ctx, *addr, func(a string) {
		logger.Printf("listening on http://%s (up to %d generations at once, %d queued)", a, *maxConc, *maxQueue)
	})
	if err != nil {
		return fmt.Errorf("%s: %w", *addr, err)
	}
	c := srv.Counters()
	logger.Printf("shut down: %d completed, %d cancelled, %d refused (429), %d failed, %d timed out, %d interrupted", c.Completed, c.Cancelled, c.Rejected, c.Failed, c.TimedOut, c.Interrupted)
	return nil
}

// defaultModelName names the model in the OpenAI-compatible API: xspan-RUN for a
// checkpoint of RUN/checkpoints, else after the checkpoint's folder; xspan-PRESET-random
// for random weights.
func defaultModelName(info map[string]any) string {
	if p, ok := info["preset"].(string); ok {
		return "xspan-" + p + "-random"
	}
	ck, _ := info["checkpoint"].(string)
	dir := filepath.Dir(filepath.Clean(ck))
	if filepath.Base(dir) == "checkpoints" {
		return "xspan-" + filepath.Base(filepath.Dir(dir))
	}
	return "xspan-" + filepath.Base(ck)
}
