package serve

import (
	"strings"
	"testing"
	"time"

	"xspan/generate/gentest"
)

// Every option out of range is an error naming its flag; none is corrected.
func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	for _, c := range []struct {
		set  func(c *Config)
		want string
	}{
		{func(c *Config) { c.MaxConcurrent = 0 }, "--max-concurrent 0: need at least 1"},
		{func(c *Config) { c.MaxQueue = -1 }, "--max-queue -1: must not be negative"},
		{func(c *Config) { c.MaxBodyBytes = 63 }, "--max-body 63: need at least 64 bytes"},
		{func(c *Config) { c.MaxNewTokens = 0 }, "--max-new-tokens 0: need at least 1"},
		{func(c *Config) { c.MaxNewTokens, c.DefaultNewTokens = 100, 101 }, "--default-new-tokens 101: must lie in [1, --max-new-tokens 100]"},
		{func(c *Config) { c.DefaultNewTokens = -1 }, "--default-new-tokens -1"},
		{func(c *Config) { c.MaxPromptTokens = 0 }, "--max-prompt-tokens 0: need at least 1"},
		{func(c *Config) { c.PromptBlock = -1 }, "prompt block -1"},
		{func(c *Config) { c.Unk = "" }, `--unk "": want error or replace`},
		{func(c *Config) { c.ReadTimeout = 0 }, "--read-timeout 0s: must be positive"},
		{func(c *Config) { c.WriteTimeout = -time.Second }, "--write-timeout -1s: must be positive"},
		{func(c *Config) { c.IdleTimeout = 0 }, "--idle-timeout 0s: must be positive"},
		{func(c *Config) { c.MaxConns = 18 }, "--max-conns 18: must exceed --max-concurrent + --max-queue (18)"},
		{func(c *Config) { c.Grace = -time.Second }, "--grace -1s: must not be negative"},
		{func(c *Config) { c.AllowedOrigins = []string{"https://ok.example", "ftp://x"} }, `--allow-origin "ftp://x": want an origin`},
		{func(c *Config) { c.AllowedOrigins = []string{"https://x.example/path"} }, `--allow-origin "https://x.example/path"`},
	} {
		cfg := DefaultConfig()
		c.set(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate() = %v, want %q", err, c.want)
			continue
		}
		if _, nerr := New(&gentest.Model{}, cfg); nerr == nil || nerr.Error() != err.Error() {
			t.Errorf("New: %v, want Validate's %v", nerr, err)
		}
	}
}

// The documented zero values: DefaultNewTokens 0 is 256, or MaxNewTokens if smaller; an
// empty ModelName is "xspan"; origins are kept as browsers send them.
func TestConfigZeroValues(t *testing.T) {
	for _, c := range []struct{ maxNew, want int }{{4096, 256}, {100, 100}} {
		cfg := DefaultConfig()
		cfg.MaxNewTokens = c.maxNew
		cfg.AllowedOrigins = []string{"HTTPS://Notebook.Example:8443/"}
		s, err := New(&gentest.Model{}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if s.cfg.DefaultNewTokens != c.want || s.cfg.ModelName != "xspan" || s.cfg.AllowedOrigins[0] != "https://notebook.example:8443" {
			t.Errorf("max %d: default new tokens %d (want %d), model name %q, origins %q", c.maxNew, s.cfg.DefaultNewTokens, c.want, s.cfg.ModelName, s.cfg.AllowedOrigins)
		}
	}
}
