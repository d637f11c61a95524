package lm

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// Config holds every hyperparameter of a run: the model's shape, Expire-Span's settings
// and the training recipe, in one flat JSON object (nanoGPT style). Field names are the
// keys of `xspan train --set key=value`.
type Config struct {
	// The vocabulary.
	Vocab     int    `json:"vocab"`               // number of token ids
	Tokenizer string `json:"tokenizer,omitempty"` // vocabulary reference (kind and hash), set from the dataset

	// The Transformer.
	Layers  int     `json:"layers"`   // N
	Dim     int     `json:"dim"`      // d
	Heads   int     `json:"heads"`    // K
	FFN     int     `json:"ffn"`      // inner width of the feed-forward block
	Dropout float64 `json:"dropout"`  // on attention weights and inside the feed-forward block
	PreNorm bool    `json:"pre_norm"` // layer norm before attention and FFN (else after, the enwik8 default)

	// Blocks and memory.
	Block     int `json:"block"`      // M: tokens per step
	PosWindow int `json:"pos_window"` // P: distances with a learned position term (0: Block)
	InitCache int `json:"init_cache"` // zero memories at the start of a stream (0: Block; -1: none)

	// Expire-Span.
	Expire   bool    `json:"expire"`    // learned spans; false: the baseline keeps the last MaxSpan keys
	MaxSpan  int     `json:"max_span"`  // L: the longest span (attn_lim)
	Ramp     int     `json:"ramp"`      // R: length of the soft mask's ramp
	Alpha    float64 `json:"alpha"`     // α: span-loss coefficient
	PreDiv   float64 `json:"pre_div"`   // span predictor input divisor
	InitFrac float64 `json:"init_frac"` // p0: initial span as a fraction of MaxSpan
	Noisy    bool    `json:"noisy"`     // random span shortening in training

	// Training.
	Batch       int     `json:"batch"`        // streams per step
	Steps       int     `json:"steps"`        // optimizer steps
	LR          float64 `json:"lr"`           // peak learning rate
	Warmup      int     `json:"warmup"`       // linear warm-up steps
	Schedule    string  `json:"schedule"`     // constant | cosine | step
	DecayAt     int     `json:"decay_at"`     // step schedule: step at which the rate drops
	DecayLR     float64 `json:"decay_lr"`     // step schedule: the rate after DecayAt; cosine: the final rate
	Clip        float64 `json:"clip"`         // global gradient-norm clip (0: none)
	WeightDecay float64 `json:"weight_decay"` // decoupled weight decay (0: plain Adam)
	Accumulate  int     `json:"accumulate"`   // micro-batches per step
	EvalEvery   int     `json:"eval_every"`   // steps between validations (0: only at the end)
	CkptEvery   int     `json:"ckpt_every"`   // steps between checkpoints (0: only at the end)
	Seed        int64   `json:"seed"`
	Recompute   bool    `json:"recompute"` // keep one layer's activations at a time, recomputing in backward (less memory, ~1.3× the time)
}

// presets match the reference configurations of shared/expire-span.md and the CPU-sized
// ones of shared/reference-cpu.md.
var presets = map[string]Config{
	"tiny": {
		Layers: 2, Dim: 128, Heads: 4, FFN: 512, Block: 128,
		Expire: true, MaxSpan: 1024, Ramp: 128, Alpha: 1e-6, PreDiv: 1, InitFrac: 0.1, Noisy: true,
		Batch: 16, Steps: 200, LR: 7e-4, Warmup: 50, Schedule: "constant", Clip: 0.3, Accumulate: 1,
		EvalEvery: 100, CkptEvery: 100, Seed: 1,
	},
	"small": {
		Layers: 4, Dim: 256, Heads: 4, FFN: 1024, Block: 256,
		Expire: true, MaxSpan: 4096, Ramp: 64, Alpha: 1e-6, PreDiv: 64, InitFrac: 0.1,
		Batch: 16, Steps: 1000, LR: 3e-4, Warmup: 100, Schedule: "constant", Clip: 0.3, Accumulate: 1,
		EvalEvery: 250, CkptEvery: 250, Seed: 1,
	},
	"enwik8-small": {
		Vocab: 256, Layers: 8, Dim: 256, Heads: 4, FFN: 1024, Block: 256,
		Expire: true, MaxSpan: 4096, Ramp: 64, Alpha: 1e-6, PreDiv: 64, InitFrac: 0.1,
		Batch: 64, Steps: 100000, LR: 3e-4, Warmup: 8000, Schedule: "constant", Clip: 0.3, Accumulate: 1,
		EvalEvery: 1000, CkptEvery: 1000, Seed: 1,
	},
	"enwik8-12l": {
		Vocab: 256, Layers: 12, Dim: 512, Heads: 8, FFN: 2048, Block: 512, Dropout: 0.3,
		Expire: true, MaxSpan: 16384, Ramp: 128, Alpha: 1e-6, PreDiv: 1, InitFrac: 0.1, Noisy: true,
		Batch: 512, Steps: 110000, LR: 7e-4, Warmup: 8000, Schedule: "step", DecayAt: 100000, DecayLR: 7e-5,
		Clip: 0.3, Accumulate: 1, EvalEvery: 1000, CkptEvery: 1000, Seed: 1,
	},
}

// PresetNames lists the presets.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Preset returns a named configuration. Its Vocab is 0 unless the preset fixes it (enwik8);
// training sets it from the dataset.
func Preset(name string) (Config, error) {
	c, ok := presets[name]
	if !ok {
		return Config{}, fmt.Errorf("unknown preset %q (have %s)", name, strings.Join(PresetNames(), ", "))
	}
	return c, nil
}

// EffectivePosWindow is P with its default applied.
func (c Config) EffectivePosWindow() int {
	if c.PosWindow > 0 {
		return c.PosWindow
	}
	return c.Block
}

// EffectiveInitCache is the initial cache length with its default applied.
func (c Config) EffectiveInitCache() int {
	switch {
	case c.InitCache < 0:
		return 0
	case c.InitCache == 0:
		return c.Block
	}
	return c.InitCache
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	type check struct {
		bad bool
		msg string
	}
	for _, ch := range []check{
		{c.Vocab < 2, fmt.Sprintf("vocab = %d: need at least 2 token ids", c.Vocab)},
		{c.Layers < 1, fmt.Sprintf("layers = %d: need at least 1", c.Layers)},
		{c.Dim < 1 || c.Heads < 1 || c.Dim%c.Heads != 0, fmt.Sprintf("dim = %d, heads = %d: dim must be a positive multiple of heads", c.Dim, c.Heads)},
		{c.FFN < 1, fmt.Sprintf("ffn = %d: need at least 1", c.FFN)},
		{c.Block < 1, fmt.Sprintf("block = %d: need at least 1", c.Block)},
		{c.PosWindow < 0, fmt.Sprintf("pos_window = %d: must not be negative", c.PosWindow)},
		{c.InitCache < -1, fmt.Sprintf("init_cache = %d: -1 (none), 0 (block) or a length", c.InitCache)},
		{c.MaxSpan < 1, fmt.Sprintf("max_span = %d: need at least 1", c.MaxSpan)},
		{c.Expire && c.Ramp < 1, fmt.Sprintf("ramp = %d: need at least 1", c.Ramp)},
		{c.Expire && (c.InitFrac <= 0 || c.InitFrac >= 1), fmt.Sprintf("init_frac = %g: must lie in (0, 1)", c.InitFrac)},
		{c.Expire && c.PreDiv <= 0, fmt.Sprintf("pre_div = %g: must be positive", c.PreDiv)},
		{c.Alpha < 0, fmt.Sprintf("alpha = %g: must not be negative", c.Alpha)},
		{c.Dropout < 0 || c.Dropout >= 1, fmt.Sprintf("dropout = %g: must lie in [0, 1)", c.Dropout)},
		{c.Batch < 1, fmt.Sprintf("batch = %d: need at least 1", c.Batch)},
		{c.Steps < 0, fmt.Sprintf("steps = %d: must not be negative", c.Steps)},
		{c.LR <= 0, fmt.Sprintf("lr = %g: must be positive", c.LR)},
		{c.Warmup < 0, fmt.Sprintf("warmup = %d: must not be negative", c.Warmup)},
		{c.Schedule != "" && c.Schedule != "constant" && c.Schedule != "cosine" && c.Schedule != "step", fmt.Sprintf("schedule = %q: constant, cosine or step", c.Schedule)},
		{c.Clip < 0, fmt.Sprintf("clip = %g: must not be negative", c.Clip)},
		{c.WeightDecay < 0, fmt.Sprintf("weight_decay = %g: must not be negative", c.WeightDecay)},
		{c.Accumulate < 0, fmt.Sprintf("accumulate = %d: must not be negative", c.Accumulate)},
	} {
		if ch.bad {
			return fmt.Errorf("config: %s", ch.msg)
		}
	}
	return nil
}

// Set assigns one field by its JSON name from its text form, as `--set key=value` does.
func (c *Config) Set(key, value string) error {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != key {
			continue
		}
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Int, reflect.Int64:
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil {
				return fmt.Errorf("config key %q: %q is not an integer", key, value)
			}
			f.SetInt(n)
		case reflect.Float64:
			x, err := strconv.ParseFloat(value, 64)
			if err != nil {
				return fmt.Errorf("config key %q: %q is not a number", key, value)
			}
			f.SetFloat(x)
		case reflect.Bool:
			b, err := strconv.ParseBool(value)
			if err != nil {
				return fmt.Errorf("config key %q: %q is not true or false", key, value)
			}
			f.SetBool(b)
		case reflect.String:
			f.SetString(value)
		}
		return nil
	}
	return fmt.Errorf("unknown config key %q (keys are the JSON field names of config.json)", key)
}

// modelFields are the fields that fix the shape and meaning of the weights.
var modelFields = []string{"vocab", "layers", "dim", "heads", "ffn", "pre_norm", "pos_window", "block", "expire"}

// Hash identifies the weights' shape: two configs with the same Hash can load each
// other's weights.
func (c Config) Hash() string {
	shape := map[string]any{}
	b, _ := json.Marshal(c)
	var all map[string]any
	_ = json.Unmarshal(b, &all)
	for _, k := range modelFields {
		shape[k] = all[k]
	}
	shape["pos_window"] = c.EffectivePosWindow()
	delete(shape, "block")
	b, _ = json.Marshal(shape)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// SameShape reports whether a model of config c can give its weights to one of other:
// nil when their Hash agrees, else an error naming each shape field that differs.
func (c Config) SameShape(other Config) error {
	if c.Hash() == other.Hash() {
		return nil
	}
	a, _ := json.Marshal(c)
	b, _ := json.Marshal(other)
	var ma, mb map[string]any
	json.Unmarshal(a, &ma)
	json.Unmarshal(b, &mb)
	diff := ""
	for _, k := range modelFields {
		if fmt.Sprint(ma[k]) != fmt.Sprint(mb[k]) {
			diff += fmt.Sprintf(" %s %v vs %v;", k, ma[k], mb[k])
		}
	}
	return fmt.Errorf("the checkpoint's model config (hash %s) differs from this run's (hash %s):%s", c.Hash(), other.Hash(), diff)
}

// ParseConfig reads a config from JSON, rejecting unknown keys.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, err
	}
	return c, nil
}
