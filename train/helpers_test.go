package train

import (
	"fmt"
	"os"
	"testing"

	"github.com/sugarme/gotch/ts"

	"xspan/internal/testcorpus"
	"xspan/internal/torchrt"
	"xspan/lm"
)

// testText, testData and tinyConfig are the shared test corpus, its dataset and a tiny
// model config (internal/testcorpus).
func testText(n int) string          { return testcorpus.Text(n) }
func testData(t *testing.T) string   { return testcorpus.Dataset(t) }
func tinyConfig(steps int) lm.Config { return testcorpus.TinyConfig(steps) }

func TestMain(m *testing.M) {
	code := m.Run()
	testcorpus.Cleanup()
	os.Exit(code)
}

// paramValues returns every parameter's values, by name.
func paramValues(m *lm.Model) map[string][]float64 {
	out := map[string][]float64{}
	for _, n := range m.NamedParameters() {
		out[n.Name] = torchrt.Float64s(n.Tensor)
	}
	return out
}

// sameTensors reports the first difference between two parameter sets, bit for bit.
func sameTensors(a, b map[string][]float64) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d vs %d tensors", len(a), len(b))
	}
	for name, va := range a {
		vb, ok := b[name]
		if !ok {
			return fmt.Errorf("tensor %s missing", name)
		}
		if len(va) != len(vb) {
			return fmt.Errorf("tensor %s: %d vs %d values", name, len(va), len(vb))
		}
		for i := range va {
			if va[i] != vb[i] {
				return fmt.Errorf("tensor %s[%d]: %v vs %v", name, i, va[i], vb[i])
			}
		}
	}
	return nil
}

// tensorOf makes a float tensor that requires grad.
func tensorOf(vals []float32) *ts.Tensor {
	return ts.MustOfSlice(vals).MustSetRequiresGrad(true, true)
}
