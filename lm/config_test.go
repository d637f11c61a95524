package lm

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestConfigSet(t *testing.T) {
	c, err := Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key, value string
		check      func(Config) bool
		err        string // "" when the value must be taken
	}{
		{"lr", "0.001", func(c Config) bool { return c.LR == 0.001 }, ""},
		{"noisy", "false", func(c Config) bool { return !c.Noisy }, ""},
		{"layers", "3", func(c Config) bool { return c.Layers == 3 }, ""},
		{"seed", "7", func(c Config) bool { return c.Seed == 7 }, ""},
		{"schedule", "cosine", func(c Config) bool { return c.Schedule == ScheduleCosine }, ""},
		{"nope", "1", nil, "unknown config key"},
		{"layers", "x", nil, "not an integer"},
		{"lr", "fast", nil, "not a number"},
		{"expire", "maybe", nil, "not true or false"},
	} {
		err := c.Set(tc.key, tc.value)
		switch {
		case tc.err == "" && (err != nil || !tc.check(c)):
			t.Errorf("Set(%s, %s): %v, config %+v", tc.key, tc.value, err, c)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("Set(%s, %s) = %v, want an error mentioning %q", tc.key, tc.value, err, tc.err)
		}
	}
	// Every key of config.json can be set, and no other.
	js, _ := json.Marshal(c)
	var m map[string]any
	json.Unmarshal(js, &m)
	keys := Keys()
	for k := range m {
		if !slices.Contains(keys, k) {
			t.Errorf("config.json key %q missing from Keys()", k)
		}
	}
	for _, k := range keys {
		if _, ok := m[k]; !ok && k != "tokenizer" {
			t.Errorf("Keys() has %q, config.json does not", k)
		}
	}
	if _, err := Preset("huge"); err == nil {
		t.Fatal("unknown preset accepted")
	}
}

// TestConfigValidate breaks each rule of Validate once, from a valid config, and wants an
// error naming the key.
func TestConfigValidate(t *testing.T) {
	valid, _ := Preset("tiny")
	valid.Vocab = 74
	if err := valid.Validate(); err != nil {
		t.Fatalf("tiny preset: %v", err)
	}
	for _, tc := range []struct {
		key  string // the key the error must name
		edit func(*Config)
	}{
		{"vocab", func(c *Config) { c.Vocab = 1 }},
		{"layers", func(c *Config) { c.Layers = 0 }},
		{"dim", func(c *Config) { c.Dim = 130 }},
		{"heads", func(c *Config) { c.Heads = 0 }},
		{"ffn", func(c *Config) { c.FFN = 0 }},
		{"block", func(c *Config) { c.Block = 0 }},
		{"pos_window", func(c *Config) { c.PosWindow = -1 }},
		{"init_cache", func(c *Config) { c.InitCache = -2 }},
		{"max_span", func(c *Config) { c.MaxSpan = 0 }},
		{"ramp", func(c *Config) { c.Ramp = 0 }},
		{"init_frac", func(c *Config) { c.InitFrac = 1 }},
		{"pre_div", func(c *Config) { c.PreDiv = 0 }},
		{"alpha", func(c *Config) { c.Alpha = -1 }},
		{"dropout", func(c *Config) { c.Dropout = 1 }},
		{"baseline", func(c *Config) { c.Expire, c.Baseline = false, "xl" }},
		{"baseline", func(c *Config) { c.Baseline = BaselineTransformerXL }}, // with expiry
		{"batch", func(c *Config) { c.Batch = 0 }},
		{"steps", func(c *Config) { c.Steps = -1 }},
		{"lr", func(c *Config) { c.LR = 0 }},
		{"warmup", func(c *Config) { c.Warmup = -1 }},
		{"schedule", func(c *Config) { c.Schedule = "linear" }},
		{"steps (10) must exceed warmup", func(c *Config) { c.Schedule, c.Steps, c.Warmup = ScheduleCosine, 10, 10 }},
		{"decay_at", func(c *Config) { c.Schedule, c.DecayAt = ScheduleStep, 0 }},
		{"decay_lr", func(c *Config) { c.DecayLR = -1 }},
		{"clip", func(c *Config) { c.Clip = -1 }},
		{"weight_decay", func(c *Config) { c.WeightDecay = -1 }},
		{"accumulate", func(c *Config) { c.Accumulate = -1 }},
		{"multiple of accumulate", func(c *Config) { c.Batch, c.Accumulate = 6, 4 }},
		{"eval_every", func(c *Config) { c.EvalEvery = -1 }},
		{"ckpt_every", func(c *Config) { c.CkptEvery = -1 }},
		{"seed", func(c *Config) { c.Seed = -1 }},
	} {
		c := valid
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: Validate() = %v, want an error naming it", tc.key, err)
		}
	}
	// No float key takes NaN or an infinity: config.json could not hold it (issue 17).
	floats := 0
	for _, key := range Keys() {
		c := valid
		if f, _ := field(reflect.ValueOf(&c).Elem(), key); f.Kind() != reflect.Float64 {
			continue
		}
		floats++
		for _, bad := range []string{"NaN", "Inf", "-Inf", "+Infinity"} {
			if err := c.Set(key, bad); err == nil || !strings.Contains(err.Error(), "finite") {
				t.Errorf("Set(%s, %s) = %v, want a refusal", key, bad, err)
			}
			f, _ := field(reflect.ValueOf(&c).Elem(), key)
			for _, x := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
				f.SetFloat(x)
				if err := c.Validate(); err == nil || !strings.Contains(err.Error(), key+" = ") || !strings.Contains(err.Error(), "finite") {
					t.Errorf("%s = %v: Validate() = %v, want an error naming it", key, x, err)
				}
			}
		}
	}
	if floats < 8 {
		t.Errorf("only %d float keys found", floats)
	}
	// Settings that only the baseline ignores.
	c := valid
	c.Expire, c.Ramp, c.InitFrac, c.PreDiv = false, 0, 0, 0
	if err := c.Validate(); err != nil {
		t.Errorf("baseline without span settings: %v", err)
	}
}

// oldHash is Hash as the first checkpoints computed it (a map of the shape keys through
// JSON): checkpoints record it, so it must not change.
func oldHash(c Config) string {
	b, _ := json.Marshal(c)
	var all map[string]any
	json.Unmarshal(b, &all)
	shape := map[string]any{}
	for _, k := range []string{"vocab", "layers", "dim", "heads", "ffn", "pre_norm", "pos_window", "expire"} {
		shape[k] = all[k]
	}
	shape["pos_window"] = c.EffectivePosWindow()
	b, _ = json.Marshal(shape)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func TestHashAndSameShape(t *testing.T) {
	for _, name := range PresetNames() {
		c, _ := Preset(name)
		for _, edit := range []func(*Config){
			func(*Config) {},
			func(c *Config) { c.Vocab = 74 },
			func(c *Config) { c.PosWindow = 7 },
			func(c *Config) { c.PreNorm, c.Expire = true, false },
			func(c *Config) { c.Expire, c.Baseline = false, BaselineLastL }, // named as it always was
		} {
			e := c
			edit(&e)
			if got, want := e.Hash(), oldHash(e); got != want {
				t.Errorf("%s: Hash %s, the first checkpoints' %s", name, got, want)
			}
		}
	}
	a, _ := Preset("tiny")
	b := a
	b.Block, b.PosWindow = 64, 128 // the same effective P
	b.MaxSpan, b.Alpha, b.Steps, b.LR = 99, 1, 3, 1
	if err := a.SameShape(b.ModelConfig); err != nil || a.Hash() != b.Hash() {
		t.Errorf("same shape, other block and recipe: %v", err)
	}
	// The Transformer-XL baseline is another model than last-L at the same P.
	x, y := a, a
	x.Expire, y.Expire, x.PosWindow, y.PosWindow = false, false, 64, 64
	y.Baseline = BaselineTransformerXL
	if err := x.SameShape(y.ModelConfig); err == nil || x.Hash() == y.Hash() || !strings.Contains(err.Error(), "baseline") {
		t.Errorf("last-L against Transformer-XL: hashes %s, %s, %v", x.Hash(), y.Hash(), err)
	}
	b.Dim, b.Layers = 64, 3
	err := a.SameShape(b.ModelConfig)
	if err == nil || !strings.Contains(err.Error(), "dim 128 vs 64") || !strings.Contains(err.Error(), "layers 2 vs 3") {
		t.Errorf("another shape: %v", err)
	}
}

// Old configs, flat JSON objects, still load into the embedded structs.
func TestParseFlatConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`{"vocab": 74, "layers": 2, "dim": 32, "batch": 4, "lr": 0.003, "recompute": true}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Vocab != 74 || c.Dim != 32 || c.Batch != 4 || c.LR != 0.003 || !c.Recompute {
		t.Fatalf("parsed %+v", c)
	}
	if _, err := ParseConfig([]byte(`{"vocab": 74, "nope": 1}`)); err == nil {
		t.Fatal("unknown key accepted")
	}
	js, _ := json.Marshal(c)
	if !strings.HasPrefix(string(js), `{"vocab":74,"layers":2,"dim":32,`) || !strings.Contains(string(js), `"batch":4,`) {
		t.Fatalf("config.json not flat: %s", js)
	}
}

// No float key takes NaN or an infinity: Set refuses the text, and Validate the value
// however it got there.
func TestConfigRejectsNonFiniteFloats(t *testing.T) {
	floats := 0
	for _, key := range Keys() {
		c, _ := Preset("tiny")
		if f, _ := field(reflect.ValueOf(&c).Elem(), key); f.Kind() != reflect.Float64 {
			continue
		}
		floats++
		for _, v := range []string{"NaN", "nan", "Inf", "+Inf", "-Inf", "infinity", "1e999"} {
			c, _ := Preset("tiny")
			before := c
			err := c.Set(key, v)
			if err == nil || !strings.Contains(err.Error(), key) {
				t.Errorf("Set(%q, %q): %v, want an error naming the key", key, v, err)
			}
			if c != before {
				t.Errorf("Set(%q, %q) changed the config", key, v)
			}
		}
		for _, x := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
			c, _ := Preset("tiny")
			c.Vocab = 10
			f, _ := field(reflect.ValueOf(&c).Elem(), key)
			f.SetFloat(x)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), key+" = ") {
				t.Errorf("%s = %g: Validate says %v", key, x, err)
			}
		}
	}
	if floats < 8 {
		t.Errorf("only %d float keys", floats)
	}
}
