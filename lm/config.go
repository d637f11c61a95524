package lm

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"xspan/expirespan"
)

// Config is a run's whole configuration: the model (ModelConfig) and the recipe that
// trains it (TrainConfig). Its JSON is one flat object (nanoGPT style) whose keys are the
// fields' JSON names, and those are also the keys of `xspan train --set key=value`:
// adding a key is adding a field (with its default in the presets and, if it can be
// wrong, a rule in Validate); Set, ParseConfig and the printed config follow.
type Config struct {
	ModelConfig
	TrainConfig
}

// ModelConfig is the model: its shape, which fixes the weights (see Hash), and the
// settings of its forward pass.
type ModelConfig struct {
	// The vocabulary.
	Vocab     int    `json:"vocab"`               // number of token ids
	Tokenizer string `json:"tokenizer,omitempty"` // the vocabulary's identity (tokenize.Spec.Ref), set from the dataset

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
	Expire   bool    `json:"expire"`    // learned spans; false: a fixed-memory baseline (see Baseline)
	MaxSpan  int     `json:"max_span"`  // L: the longest span (attn_lim)
	Ramp     int     `json:"ramp"`      // R: length of the soft mask's ramp
	Alpha    float64 `json:"alpha"`     // α: span-loss coefficient
	PreDiv   float64 `json:"pre_div"`   // span predictor input divisor
	InitFrac float64 `json:"init_frac"` // p0: initial span as a fraction of MaxSpan
	Noisy    bool    `json:"noisy"`     // random span shortening in training

	// Baseline is the attention of a model without expiry (expire=false): BaselineLastL
	// ("" too, as in configs older than the key) or BaselineTransformerXL.
	Baseline string `json:"baseline"`

	// Attention is how attention runs: AttentionFused (one native autograd function that
	// keeps no score-sized tensor for the backward pass) or AttentionComposed (libtorch ops
	// under autograd, the reference for tests); "" means the default, DefaultAttention. Both
	// compute the same function and draw the same dropout masks: not part of the shape.
	Attention string `json:"attention"`
}

// Paths of the attention, as the "attention" key names them.
const (
	AttentionComposed = expirespan.PathComposed
	AttentionFused    = expirespan.PathFused
	// DefaultAttention is the path of configs that do not name one.
	DefaultAttention = AttentionFused
)

// Fixed-memory baselines (expire=false), as the "baseline" key names them. Both keep the
// last MaxSpan (L) keys of each layer in memory; they differ in what a query sees.
const (
	// BaselineLastL: every query of a block sees the whole memory and the block before it
	// (L + j keys for query j), with a position term for distances 1…P (P: the block).
	BaselineLastL = "last-l"
	// BaselineTransformerXL is the paper's comparison (the reference's TransformerSeq):
	// every query sees exactly its L previous positions, with a position term for each
	// distance 1…L, and a stream starts with L zero memories.
	BaselineTransformerXL = "transformer-xl"
)

// TrainConfig is the training recipe.
type TrainConfig struct {
	Batch       int     `json:"batch"`        // streams per step
	Steps       int     `json:"steps"`        // optimizer steps
	LR          float64 `json:"lr"`           // peak learning rate
	Warmup      int     `json:"warmup"`       // linear warm-up steps
	Schedule    string  `json:"schedule"`     // ScheduleConstant, ScheduleCosine or ScheduleStep
	DecayAt     int     `json:"decay_at"`     // step schedule: step at which the rate drops
	DecayLR     float64 `json:"decay_lr"`     // step schedule: the rate after DecayAt; cosine: the final rate
	Clip        float64 `json:"clip"`         // global gradient-norm clip (0: none)
	WeightDecay float64 `json:"weight_decay"` // decoupled weight decay (0: plain Adam)
	Accumulate  int     `json:"accumulate"`   // micro-batches per step (0: 1)
	EvalEvery   int     `json:"eval_every"`   // steps between validations (0: only at the end)
	CkptEvery   int     `json:"ckpt_every"`   // steps between checkpoints (0: only at the end)
	Seed        int64   `json:"seed"`
	Recompute   bool    `json:"recompute"` // keep one layer's activations at a time, recomputing them in backward (less memory, about 1.4× the time)
	Precision   string  `json:"precision"` // PrecisionFP32 ("" too), PrecisionTF32 or PrecisionBF16
}

// Precisions of training, as the "precision" key names them. Weights and the optimizer
// stay float32 in all three.
const (
	PrecisionFP32 = "fp32" // float32 throughout
	PrecisionTF32 = "tf32" // float32, with TF32 matrix products on CUDA (the CPU ignores it)
	PrecisionBF16 = "bf16" // autocast to bfloat16 around the forward pass (CPU and CUDA)
)

// Learning-rate schedules after the warm-up, as the "schedule" key names them (see
// train.Schedule for what each does). "" means constant.
const (
	ScheduleConstant = "constant"
	ScheduleCosine   = "cosine"
	ScheduleStep     = "step"
)

// presets are the reference implementation's enwik8 configurations (its configs for the
// 8-layer small model and the 12-layer one of the paper) and two CPU-sized ones whose
// figures the README compares with the reference run on the same machine.
var presets = map[string]Config{
	"tiny": {
		ModelConfig{Layers: 2, Dim: 128, Heads: 4, FFN: 512, Block: 128,
			Expire: true, MaxSpan: 1024, Ramp: 128, Alpha: 1e-6, PreDiv: 1, InitFrac: 0.1, Noisy: true, Attention: DefaultAttention},
		TrainConfig{Batch: 16, Steps: 200, LR: 7e-4, Warmup: 50, Schedule: ScheduleConstant, Clip: 0.3, Accumulate: 1,
			EvalEvery: 100, CkptEvery: 100, Seed: 1, Precision: PrecisionFP32},
	},
	"small": {
		ModelConfig{Layers: 4, Dim: 256, Heads: 4, FFN: 1024, Block: 256,
			Expire: true, MaxSpan: 4096, Ramp: 64, Alpha: 1e-6, PreDiv: 64, InitFrac: 0.1, Attention: DefaultAttention},
		TrainConfig{Batch: 16, Steps: 1000, LR: 3e-4, Warmup: 100, Schedule: ScheduleConstant, Clip: 0.3, Accumulate: 1,
			EvalEvery: 250, CkptEvery: 250, Seed: 1, Precision: PrecisionFP32},
	},
	"enwik8-small": {
		ModelConfig{Vocab: 256, Layers: 8, Dim: 256, Heads: 4, FFN: 1024, Block: 256,
			Expire: true, MaxSpan: 4096, Ramp: 64, Alpha: 1e-6, PreDiv: 64, InitFrac: 0.1, Attention: DefaultAttention},
		TrainConfig{Batch: 64, Steps: 100000, LR: 3e-4, Warmup: 8000, Schedule: ScheduleConstant, Clip: 0.3, Accumulate: 1,
			EvalEvery: 1000, CkptEvery: 1000, Seed: 1, Precision: PrecisionFP32},
	},
	"enwik8-12l": {
		ModelConfig{Vocab: 256, Layers: 12, Dim: 512, Heads: 8, FFN: 2048, Block: 512, Dropout: 0.3,
			Expire: true, MaxSpan: 16384, Ramp: 128, Alpha: 1e-6, PreDiv: 1, InitFrac: 0.1, Noisy: true, Attention: DefaultAttention},
		TrainConfig{Batch: 512, Steps: 110000, LR: 7e-4, Warmup: 8000, Schedule: ScheduleStep, DecayAt: 100000, DecayLR: 7e-5,
			Clip: 0.3, Accumulate: 1, EvalEvery: 1000, CkptEvery: 1000, Seed: 1, Precision: PrecisionFP32},
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

// EffectivePosWindow is P with its default applied: L for the Transformer-XL baseline,
// else the block.
func (c ModelConfig) EffectivePosWindow() int {
	switch {
	case c.PosWindow > 0:
		return c.PosWindow
	case c.transformerXL():
		return c.MaxSpan
	}
	return c.Block
}

// transformerXL says whether the model is the Transformer-XL baseline.
func (c ModelConfig) transformerXL() bool { return !c.Expire && c.Baseline == BaselineTransformerXL }

// AttentionWindow is the farthest distance a query sees: L for the Transformer-XL
// baseline, 0 (no limit but the memory) otherwise.
func (c ModelConfig) AttentionWindow() int {
	if c.transformerXL() {
		return c.MaxSpan
	}
	return 0
}

// EffectiveAttention is the attention path with its default applied.
func (c ModelConfig) EffectiveAttention() string {
	if c.Attention == "" {
		return DefaultAttention
	}
	return c.Attention
}

// EffectiveInitCache is the initial cache length with its default applied.
func (c ModelConfig) EffectiveInitCache() int {
	switch {
	case c.InitCache < 0:
		return 0
	case c.InitCache == 0 && c.transformerXL():
		return c.MaxSpan
	case c.InitCache == 0:
		return c.Block
	}
	return c.InitCache
}

// EffectiveAccumulate is the number of micro-batches per step with its default applied.
func (c TrainConfig) EffectiveAccumulate() int { return max(c.Accumulate, 1) }

// rule is one check of Validate: when bad, msg says what is wrong.
type rule struct {
	bad bool
	msg string
}

func firstBroken(rules []rule) error {
	for _, r := range rules {
		if r.bad {
			return fmt.Errorf("config: %s", r.msg)
		}
	}
	return nil
}

// finite reports the first float key of the config struct v that is NaN or infinite: no
// setting takes one, and config.json (JSON) cannot hold one.
func finite(v reflect.Value) error {
	for i := 0; i < v.NumField(); i++ {
		f, sf := v.Field(i), v.Type().Field(i)
		if f.Kind() != reflect.Float64 || !(math.IsNaN(f.Float()) || math.IsInf(f.Float(), 0)) {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		return fmt.Errorf("config: %s = %g: must be a finite number", name, f.Float())
	}
	return nil
}

// Validate reports the first model setting that cannot work.
func (c ModelConfig) Validate() error {
	if err := finite(reflect.ValueOf(c)); err != nil {
		return err
	}
	return firstBroken([]rule{
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
		{c.Baseline != "" && c.Baseline != BaselineLastL && c.Baseline != BaselineTransformerXL,
			fmt.Sprintf("baseline = %q: %s or %s", c.Baseline, BaselineLastL, BaselineTransformerXL)},
		{c.Expire && c.Baseline != "", fmt.Sprintf("baseline = %q: a baseline has expire = false", c.Baseline)},
		{c.Attention != "" && c.Attention != AttentionComposed && c.Attention != AttentionFused,
			fmt.Sprintf("attention = %q: %s or %s", c.Attention, AttentionFused, AttentionComposed)},
	})
}

// Validate reports the first training setting that cannot work. It is the one place
// that knows the schedule names.
func (c TrainConfig) Validate() error {
	if err := finite(reflect.ValueOf(c)); err != nil {
		return err
	}
	return firstBroken([]rule{
		{c.Batch < 1, fmt.Sprintf("batch = %d: need at least 1", c.Batch)},
		{c.Steps < 0, fmt.Sprintf("steps = %d: must not be negative", c.Steps)},
		{!(c.LR > 0) || math.IsInf(c.LR, 0), fmt.Sprintf("lr = %g: must be positive", c.LR)},
		{c.Warmup < 0, fmt.Sprintf("warmup = %d: must not be negative", c.Warmup)},
		{c.Schedule != "" && c.Schedule != ScheduleConstant && c.Schedule != ScheduleCosine && c.Schedule != ScheduleStep,
			fmt.Sprintf("schedule = %q: %s, %s or %s", c.Schedule, ScheduleConstant, ScheduleCosine, ScheduleStep)},
		{c.Schedule == ScheduleCosine && c.Steps <= c.Warmup, fmt.Sprintf("schedule = cosine: steps (%d) must exceed warmup (%d)", c.Steps, c.Warmup)},
		{c.Schedule == ScheduleStep && c.DecayAt <= 0, fmt.Sprintf("schedule = step: decay_at = %d: want the step (> 0) from which decay_lr applies", c.DecayAt)},
		{!(c.DecayLR >= 0) || math.IsInf(c.DecayLR, 0), fmt.Sprintf("decay_lr = %g: must not be negative", c.DecayLR)},
		{c.Clip < 0, fmt.Sprintf("clip = %g: must not be negative", c.Clip)},
		{c.WeightDecay < 0, fmt.Sprintf("weight_decay = %g: must not be negative", c.WeightDecay)},
		{c.Accumulate < 0, fmt.Sprintf("accumulate = %d: must not be negative", c.Accumulate)},
		{c.EvalEvery < 0, fmt.Sprintf("eval_every = %d: must not be negative (0: at the end only)", c.EvalEvery)},
		{c.CkptEvery < 0, fmt.Sprintf("ckpt_every = %d: must not be negative (0: at the end only)", c.CkptEvery)},
		{c.Seed < 0, fmt.Sprintf("seed = %d: must not be negative", c.Seed)},
		{c.Batch%c.EffectiveAccumulate() != 0, fmt.Sprintf("batch = %d is not a multiple of accumulate = %d", c.Batch, c.EffectiveAccumulate())},
		{c.Precision != "" && c.Precision != PrecisionFP32 && c.Precision != PrecisionTF32 && c.Precision != PrecisionBF16,
			fmt.Sprintf("precision = %q: %s, %s or %s", c.Precision, PrecisionFP32, PrecisionTF32, PrecisionBF16)},
	})
}

// Validate reports the first setting that cannot work, the model's first (each part
// refuses a NaN or infinite float key, whatever set it, before its own rules).
func (c Config) Validate() error {
	if err := c.ModelConfig.Validate(); err != nil {
		return err
	}
	return c.TrainConfig.Validate()
}

// Set assigns one key by its JSON name from its text form, as `--set key=value` does.
func (c *Config) Set(key, value string) error {
	f, ok := field(reflect.ValueOf(c).Elem(), key)
	if !ok {
		return fmt.Errorf("unknown config key %q (keys are the JSON field names of config.json)", key)
	}
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
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("config key %q: %q is not a finite number", key, value)
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
	default:
		return fmt.Errorf("config key %q: a %s cannot be set from text", key, f.Kind())
	}
	return nil
}

// Keys lists the config's keys in the order of config.json.
func Keys() []string {
	var keys []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			if sf.Anonymous {
				walk(sf.Type)
				continue
			}
			name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
			keys = append(keys, name)
		}
	}
	walk(reflect.TypeOf(Config{}))
	return keys
}

// field finds the field of struct v whose JSON name is key, in v or a struct it embeds.
func field(v reflect.Value, key string) (reflect.Value, bool) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if sf.Anonymous {
			if f, ok := field(v.Field(i), key); ok {
				return f, true
			}
			continue
		}
		if name, _, _ := strings.Cut(sf.Tag.Get("json"), ","); name == key {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// shape is what fixes the shapes and meaning of a model's weights: two configs of the
// same shape can load each other's weights, whatever their block, spans or recipe. Its
// JSON is what Hash digests, so its fields stay in this (alphabetical) order: checkpoints
// record the hash.
type shape struct {
	// Baseline is "" for last-L (configs older than the key hash as before) and for
	// Expire-Span.
	Baseline  string `json:"baseline,omitempty"`
	Dim       int    `json:"dim"`
	Expire    bool   `json:"expire"`
	FFN       int    `json:"ffn"`
	Heads     int    `json:"heads"`
	Layers    int    `json:"layers"`
	PosWindow int    `json:"pos_window"` // the effective P
	PreNorm   bool   `json:"pre_norm"`
	Vocab     int    `json:"vocab"`
}

func (c ModelConfig) shape() shape {
	baseline := ""
	if c.transformerXL() {
		baseline = BaselineTransformerXL
	}
	return shape{Baseline: baseline, Dim: c.Dim, Expire: c.Expire, FFN: c.FFN, Heads: c.Heads, Layers: c.Layers,
		PosWindow: c.EffectivePosWindow(), PreNorm: c.PreNorm, Vocab: c.Vocab}
}

// Hash identifies the weights' shape: two configs with the same Hash can load each
// other's weights.
func (c ModelConfig) Hash() string {
	b, _ := json.Marshal(c.shape())
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// SameShape reports whether a model of config c can give its weights to one of other:
// nil, or an error naming each shape key that differs.
func (c ModelConfig) SameShape(other ModelConfig) error {
	a, b := reflect.ValueOf(c.shape()), reflect.ValueOf(other.shape())
	diff := ""
	for i := 0; i < a.NumField(); i++ {
		if x, y := a.Field(i).Interface(), b.Field(i).Interface(); x != y {
			name, _, _ := strings.Cut(a.Type().Field(i).Tag.Get("json"), ",")
			diff += fmt.Sprintf(" %s %v vs %v;", name, x, y)
		}
	}
	if diff == "" {
		return nil
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
