package serve

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"xspan/generate"
)

// Config holds a Server's options. Start from DefaultConfig: Validate refuses a value out
// of range (it is never corrected), naming the option as xspan serve's flag.
type Config struct {
	MaxConcurrent int   // generations running at once (≥ 1)
	MaxQueue      int   // requests waiting for a slot; beyond them: 429 (0: no queue)
	MaxBodyBytes  int64 // request body limit; beyond it: 413 (≥ 64)
	MaxNewTokens  int   // the most tokens one request may ask for; beyond it: 400 (≥ 1)
	// DefaultNewTokens is what a request that does not say gets, in [1, MaxNewTokens];
	// 0 means 256, or MaxNewTokens if smaller.
	DefaultNewTokens int
	MaxPromptTokens  int                // the most prompt tokens one request may send; beyond it: 400 (≥ 1)
	PromptBlock      int                // feed prompts in pieces of this many tokens (0: at once)
	Unk              generate.UnkPolicy // prompt characters outside a char vocabulary

	// ReadTimeout bounds the time a client takes to send a request's header, and again
	// to send its body (beyond it: 408 and the connection closes). WriteTimeout bounds
	// each write of an answer, every event of a stream: a client that stops reading is
	// dropped and its generation stopped. IdleTimeout closes a kept-alive connection
	// that sends no next request. All three are positive.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	// MaxConns caps the open connections. A new connection beyond it closes the oldest
	// one without a generation (idle, or still sending its request), so slow clients
	// cannot lock others out; it must exceed MaxConcurrent+MaxQueue.
	MaxConns int
	// Grace is how long ListenAndServe lets running requests finish on shutdown (≥ 0).
	Grace time.Duration
	// AllowedHosts are the host names that requests may name in their Host header
	// besides the address they came to (and localhost on a loopback address); "*"
	// allows any. Checking Host defeats DNS rebinding.
	AllowedHosts []string
	// AllowedOrigins are web origins ("https://example.org": scheme, host and optional
	// port, nothing else) whose pages may call the API: their requests pass the Origin
	// check and get CORS headers (preflights included). None by default: CORS stays off.
	AllowedOrigins []string
	// ModelName is the model's id in the OpenAI-compatible API ("xspan" when empty).
	ModelName string

	Logf func(format string, a ...any) // the request log (none when nil)
}

// defaultNewTokens is the new tokens of a request that does not say, unless MaxNewTokens
// is smaller.
const defaultNewTokens = 256

// DefaultConfig returns the defaults: 2 concurrent generations, 16 queued, 1 MiB
// bodies, at most 4096 new tokens (256 when unspecified) and 8192 prompt tokens, unknown
// characters refused, 15 s to send a header and a body, 30 s for each write, 60 s idle,
// 256 connections, 10 s of grace on shutdown.
func DefaultConfig() Config {
	return Config{MaxConcurrent: 2, MaxQueue: 16, MaxBodyBytes: 1 << 20, MaxNewTokens: 4096,
		MaxPromptTokens: 8192, Unk: generate.UnkError, ReadTimeout: 15 * time.Second, WriteTimeout: 30 * time.Second,
		IdleTimeout: 60 * time.Second, MaxConns: 256, Grace: 10 * time.Second}
}

// Validate reports the first option out of range, as xspan serve's flag and value.
func (c Config) Validate() error {
	switch {
	case c.MaxConcurrent < 1:
		return fmt.Errorf("--max-concurrent %d: need at least 1", c.MaxConcurrent)
	case c.MaxQueue < 0:
		return fmt.Errorf("--max-queue %d: must not be negative", c.MaxQueue)
	case c.MaxBodyBytes < 64:
		return fmt.Errorf("--max-body %d: need at least 64 bytes", c.MaxBodyBytes)
	case c.MaxNewTokens < 1:
		return fmt.Errorf("--max-new-tokens %d: need at least 1", c.MaxNewTokens)
	case c.DefaultNewTokens < 0 || c.DefaultNewTokens > c.MaxNewTokens:
		return fmt.Errorf("--default-new-tokens %d: must lie in [1, --max-new-tokens %d] (0: the default)", c.DefaultNewTokens, c.MaxNewTokens)
	case c.MaxPromptTokens < 1:
		return fmt.Errorf("--max-prompt-tokens %d: need at least 1", c.MaxPromptTokens)
	case c.PromptBlock < 0:
		return fmt.Errorf("prompt block %d: must not be negative", c.PromptBlock)
	case c.Unk != generate.UnkError && c.Unk != generate.UnkReplace:
		return fmt.Errorf("--unk %q: want %s or %s", c.Unk, generate.UnkError, generate.UnkReplace)
	case c.ReadTimeout <= 0:
		return fmt.Errorf("--read-timeout %v: must be positive", c.ReadTimeout)
	case c.WriteTimeout <= 0:
		return fmt.Errorf("--write-timeout %v: must be positive", c.WriteTimeout)
	case c.IdleTimeout <= 0:
		return fmt.Errorf("--idle-timeout %v: must be positive", c.IdleTimeout)
	case c.MaxConns <= c.MaxConcurrent+c.MaxQueue:
		return fmt.Errorf("--max-conns %d: must exceed --max-concurrent + --max-queue (%d)", c.MaxConns, c.MaxConcurrent+c.MaxQueue)
	case c.Grace < 0:
		return fmt.Errorf("--grace %v: must not be negative", c.Grace)
	}
	for _, o := range c.AllowedOrigins {
		if _, err := ParseOrigin(o); err != nil {
			return fmt.Errorf("--allow-origin %v", err)
		}
	}
	return nil
}

// resolved is c with its documented zero values spelled out.
func (c Config) resolved() Config {
	if c.DefaultNewTokens == 0 {
		c.DefaultNewTokens = min(defaultNewTokens, c.MaxNewTokens)
	}
	if c.ModelName == "" {
		c.ModelName = "xspan"
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	origins := make([]string, len(c.AllowedOrigins))
	for i, o := range c.AllowedOrigins {
		origins[i], _ = ParseOrigin(o)
	}
	c.AllowedOrigins = origins
	return c
}

// ParseOrigin checks a web origin: scheme http or https, a host, an optional port,
// nothing else; it returns it as browsers send it.
func ParseOrigin(v string) (string, error) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("%q: want an origin such as https://example.org or http://localhost:3000", v)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}
