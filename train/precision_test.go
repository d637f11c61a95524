package train

import (
	"context"
	"github.com/sugarme/gotch"
	"math"
	"path/filepath"
	"testing"

	"xspan/checkpoint"
	"xspan/internal/torchrt"
	"xspan/lm"
)

// bf16 autocast runs on the CPU too: the same run trains, its losses stay within 0.01 nats
// of float32's for 8 steps (bfloat16 keeps 8 bits of mantissa: products differ by ~1e-2
// relative), they are not the float32 losses (autocast really ran), and the weights stay
// float32.
func TestPrecisionBF16TracksFP32(t *testing.T) {
	defer torchrt.Lock()()
	torchrt.SetThreads(1)
	data := testData(t)
	losses := map[string][]float64{}
	for _, p := range []string{lm.PrecisionFP32, lm.PrecisionBF16} {
		cfg := tinyConfig(8)
		cfg.Dropout, cfg.Noisy = 0, false
		cfg.Precision = p
		rec := WithOnStep(func(step int64, r *checkpoint.Row) { losses[p] = append(losses[p], r.Loss) })
		if _, err := Run(context.Background(), cfg, data, filepath.Join(t.TempDir(), p), quiet(), rec, WithoutFinalEval()); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	f, b := losses[lm.PrecisionFP32], losses[lm.PrecisionBF16]
	t.Logf("fp32 %.5f\nbf16 %.5f", f, b)
	if len(f) != 8 || len(b) != 8 {
		t.Fatalf("losses: %v and %v", f, b)
	}
	same := true
	for i := range f {
		if math.Abs(f[i]-b[i]) > 0.01 {
			t.Errorf("step %d: fp32 loss %.5f, bf16 %.5f: more than 0.01 apart", i+1, f[i], b[i])
		}
		same = same && f[i] == b[i]
	}
	if same {
		t.Errorf("bf16 losses equal fp32's bit for bit: autocast did not run")
	}
	if b[7] >= b[0] {
		t.Errorf("bf16 did not train: loss %.4f -> %.4f", b[0], b[7])
	}
	if torchrt.AutocastEnabled(gotch.CPU) {
		t.Errorf("autocast still on after the run")
	}
}

func TestPrecisionKeyValidated(t *testing.T) {
	cfg := tinyConfig(1)
	cfg.Precision = "fp16"
	if err := cfg.Validate(); err == nil {
		t.Fatalf("precision fp16 accepted")
	}
}
