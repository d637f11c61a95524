package lm

import "testing"

// The enwik8 presets are the reference implementation's scripts, flag for flag
// (facebookresearch/transformer-sequential at 9650fc9, experiments/expire_span/
// enwik8_small.sh and enwik8.sh; a step is one of --nbatches 1000 per epoch; the 12-layer
// script's second run continues from epoch 100 to 110 at lr 7e-5). Flags the scripts leave
// out take main.py's defaults: pre-division 1, initial span fraction 0.1, no noise.
func TestPresetsMatchTheReferenceScripts(t *testing.T) {
	for _, c := range []struct {
		preset string
		want   Config
	}{
		{"enwik8-small", Config{
			ModelConfig{Vocab: 256, Layers: 8, Dim: 256, Heads: 4, FFN: 1024, Block: 256, Dropout: 0,
				Expire: true, MaxSpan: 4096, Ramp: 64, Alpha: 1e-6, PreDiv: 64, InitFrac: 0.1, Noisy: false},
			TrainConfig{Batch: 64, Steps: 100 * 1000, LR: 3e-4, Warmup: 8000, Clip: 0.3},
		}},
		{"enwik8-12l", Config{
			ModelConfig{Vocab: 256, Layers: 12, Dim: 512, Heads: 8, FFN: 2048, Block: 512, Dropout: 0.3,
				Expire: true, MaxSpan: 16384, Ramp: 128, Alpha: 1e-6, PreDiv: 1, InitFrac: 0.1, Noisy: true},
			TrainConfig{Batch: 512, Steps: 110 * 1000, LR: 7e-4, Warmup: 8000, Clip: 0.3,
				Schedule: ScheduleStep, DecayAt: 100 * 1000, DecayLR: 7e-5},
		}},
	} {
		got, err := Preset(c.preset)
		if err != nil {
			t.Fatal(err)
		}
		g, w := got.ModelConfig, c.want.ModelConfig
		g.Tokenizer, g.PosWindow, g.InitCache, g.PreNorm = "", 0, 0, false // the reference's M for P and the cache; post-norm
		g.Attention = ""                                                   // how attention is computed, not what
		if g != w {
			t.Errorf("%s model:\n got  %+v\n want %+v", c.preset, g, w)
		}
		gt, wt := got.TrainConfig, c.want.TrainConfig
		if gt.Batch != wt.Batch || gt.Steps != wt.Steps || gt.LR != wt.LR || gt.Warmup != wt.Warmup || gt.Clip != wt.Clip ||
			gt.WeightDecay != 0 || gt.EffectiveAccumulate() != 1 {
			t.Errorf("%s recipe: got %+v", c.preset, gt)
		}
		if wt.Schedule == ScheduleStep && (gt.Schedule != ScheduleStep || gt.DecayAt != wt.DecayAt || gt.DecayLR != wt.DecayLR) {
			t.Errorf("%s second stage: got schedule %q, decay at %d to %g", c.preset, gt.Schedule, gt.DecayAt, gt.DecayLR)
		}
		if wt.Schedule == "" && gt.Schedule != "" && gt.Schedule != ScheduleConstant {
			t.Errorf("%s: schedule %q, the reference keeps its rate", c.preset, gt.Schedule)
		}
	}
}
