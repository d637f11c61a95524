package torchrt

import (
	"math"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"
)

// tinyModel is embedding → layer norm → linear, enough to exercise the ops a
// Transformer needs through gotch.
type tinyModel struct {
	emb  *nn.Embedding
	norm *nn.LayerNorm
	out  *nn.Linear
}

func newTinyModel(vs *nn.VarStore, vocab, dim int64) *tinyModel {
	p := vs.Root()
	return &tinyModel{
		emb:  nn.NewEmbedding(p.Sub("emb"), vocab, dim, nn.DefaultEmbeddingConfig()),
		norm: nn.NewLayerNorm(p.Sub("norm"), []int64{dim}, nn.DefaultLayerNormConfig()),
		out:  nn.NewLinear(p.Sub("out"), dim, vocab, nn.DefaultLinearConfig()),
	}
}

func (m *tinyModel) forward(x *ts.Tensor) *ts.Tensor {
	h := m.emb.Forward(x)
	n := m.norm.Forward(h)
	return m.out.Forward(n)
}

// The model learns y = (x+1) mod vocab: the loss must fall well below its start.
func TestTrainingStepLossFallsAndWeightsRoundTrip(t *testing.T) {
	defer Lock()()
	Seed(7)
	const vocab, dim = 16, 32
	vs := nn.NewVarStore(gotch.CPU)
	m := newTinyModel(vs, vocab, dim)
	opt, err := nn.DefaultAdamWConfig().Build(vs, 0.05)
	if err != nil {
		t.Fatal(err)
	}
	xs := make([]int64, 64)
	ys := make([]int64, 64)
	for i := range xs {
		xs[i] = int64(i % vocab)
		ys[i] = (xs[i] + 1) % vocab
	}
	x := ts.MustOfSlice(xs)
	y := ts.MustOfSlice(ys)
	var first, last float64
	for step := 0; step < 40; step++ {
		logits := m.forward(x)
		loss := logits.CrossEntropyForLogits(y)
		v := loss.Float64Values()[0]
		if step == 0 {
			first = v
		}
		last = v
		if err := opt.BackwardStep(loss); err != nil {
			t.Fatal(err)
		}
	}
	if math.IsNaN(last) || last > first/4 {
		t.Fatalf("loss went from %.4f to %.4f; want it below a quarter of the start", first, last)
	}

	path := filepath.Join(t.TempDir(), "w.gt")
	if err := vs.Save(path); err != nil {
		t.Fatal(err)
	}
	vs2 := nn.NewVarStore(gotch.CPU)
	m2 := newTinyModel(vs2, vocab, dim)
	if err := vs2.Load(path); err != nil {
		t.Fatal(err)
	}
	var a, b []float64
	func() {
		defer NoGrad()()
		a = m.forward(x).Float64Values()
		b = m2.forward(x).Float64Values()
	}()
	if len(a) != 64*vocab || len(a) != len(b) {
		t.Fatalf("outputs of %d and %d values", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("output %d differs after save and load: %v vs %v", i, a[i], b[i])
		}
	}
}

// nonzero_static is one of the ops that libtorch 1.13 lacks; the set-up stubs its wrapper.
func TestStubbedOpReturnsErrorNamingTheOp(t *testing.T) {
	defer Lock()()
	if !strings.HasPrefix(NativeTorchVersion(), "1.") {
		t.Skipf("built against libtorch %s, which has nonzero_static", NativeTorchVersion())
	}
	a := ts.MustOnes([]int64{2, 2}, gotch.Float, gotch.CPU)
	_, err := a.NonzeroStatic(4, -1, false)
	if err == nil {
		t.Fatal("calling a stubbed op returned no error")
	}
	if !strings.Contains(err.Error(), "op nonzero_static is not available") {
		t.Fatalf("error does not name the op: %v", err)
	}
	// The error slot is cleared: the next op on this thread succeeds.
	if _, err := a.Add(a, false); err != nil {
		t.Fatalf("op after the stubbed one failed: %v", err)
	}
}

// Many goroutines at once each compute a known matrix product, switch grad mode, and
// provoke an error; each must see its own result, its own grad mode and its own error.
func TestManyGoroutinesThroughTheRuntime(t *testing.T) {
	SetThreads(1)
	defer SetThreads(0)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan string, n)
	sem := make(chan struct{}, 16)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		Go(func() {
			defer wg.Done()
			defer func() { <-sem }()
			k := float64(i%7 + 1)
			a := ts.MustOnes([]int64{8, 8}, gotch.Float, gotch.CPU).MustMulScalar(ts.FloatScalar(k), true)
			b := ts.MustOnes([]int64{8, 8}, gotch.Float, gotch.CPU)
			var got float64
			func() {
				defer NoGrad()()
				got = a.MustMatmul(b, false).MustSum(gotch.Double, true).Float64Values()[0]
			}()
			if want := 8 * 8 * 8 * k; got != want {
				errs <- "wrong product"
				return
			}
			// Shapes that cannot be multiplied: the error must come back to this goroutine.
			c := ts.MustOnes([]int64{3, 5}, gotch.Float, gotch.CPU)
			if _, err := a.Matmul(c, false); err == nil {
				errs <- "no error for a bad shape"
				return
			}
			if _, err := a.Add(b, false); err != nil {
				errs <- "stale error after a failed op: " + err.Error()
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

func TestParseDevice(t *testing.T) {
	defer Lock()()
	d, note, err := ParseDevice("cpu")
	if err != nil || d != gotch.CPU || note != "device: cpu" {
		t.Fatalf("cpu: %v %q %v", d, note, err)
	}
	d, note, err = ParseDevice("auto")
	if err != nil {
		t.Fatal(err)
	}
	if CUDAAvailable() {
		if !d.IsCuda() || !strings.Contains(note, "cuda:0") {
			t.Fatalf("auto with CUDA: %v %q", d, note)
		}
	} else {
		if d != gotch.CPU || !strings.HasPrefix(note, "device: cpu") {
			t.Fatalf("auto without CUDA: %v %q", d, note)
		}
		if _, _, err := ParseDevice("cuda"); err == nil || !strings.Contains(err.Error(), "no usable CUDA device") {
			t.Fatalf("cuda without CUDA: err = %v", err)
		}
	}
	for _, bad := range []string{"tpu", "cuda:x", "cuda:-1"} {
		if _, _, err := ParseDevice(bad); err == nil {
			t.Errorf("ParseDevice(%q) gave no error", bad)
		}
	}
}

// --device auto says why only when the choice was not obvious: a CPU build of libtorch
// had nothing else to offer.
func TestAutoDeviceNote(t *testing.T) {
	if d, note := autoDevice(false, ""); d != gotch.CPU || note != "device: cpu" {
		t.Errorf("CPU libtorch: %v %q", d, note)
	}
	if d, note := autoDevice(false, "12.4"); d != gotch.CPU || note != "device: cpu (auto: libtorch has CUDA 12.4 but sees no usable device)" {
		t.Errorf("CUDA libtorch, no device: %v %q", d, note)
	}
	if d, note := autoDevice(true, "12.4"); !d.IsCuda() || note != "device: cuda:0 (auto: CUDA is usable)" {
		t.Errorf("CUDA usable: %v %q", d, note)
	}
}

func TestSeedFixesTorchAndGo(t *testing.T) {
	defer Lock()()
	draw := func() ([]float64, uint64) {
		r := Seed(42)
		x := ts.MustRandn([]int64{5}, gotch.Double, gotch.CPU)
		return x.Float64Values(), r.Uint64()
	}
	a, ga := draw()
	b, gb := draw()
	if ga != gb {
		t.Fatal("Go generator differs for the same seed")
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("torch draw %d differs for the same seed", i)
		}
	}
	Seed(43)
	c := ts.MustRandn([]int64{5}, gotch.Double, gotch.CPU).Float64Values()
	if c[0] == a[0] {
		t.Fatal("another seed gave the same draw")
	}
}

func TestSetThreads(t *testing.T) {
	if got := SetThreads(1); got != 1 {
		t.Fatalf("SetThreads(1) = %d", got)
	}
	if got := SetThreads(0); got < 1 {
		t.Fatalf("SetThreads(0) = %d", got)
	}
}

func TestBLASCoreType(t *testing.T) {
	for _, c := range []struct {
		flags []string
		want  string
	}{
		{[]string{"fpu", "avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}, "SkylakeX"},
		{[]string{"avx2", "fma", "avx512f"}, "Haswell"}, // AVX-512 without BW/DQ/VL: not SkylakeX
		{[]string{"sse4_2", "avx"}, ""},
	} {
		if got := BLASCoreType(c.flags); got != c.want {
			t.Errorf("BLASCoreType(%v) = %q, want %q", c.flags, got, c.want)
		}
	}
}

// NoGrad restores the grad mode it found, nested or not, also when the block panics
// (gotch read the previous mode wrongly before the set-up's patch: the rounds catch
// garbage read as "off").
func TestNoGradRestoresGradMode(t *testing.T) {
	defer Lock()()
	gradOn := func() bool {
		x := ts.MustOnes([]int64{2}, gotch.Float, gotch.CPU).MustSetRequiresGrad(true, false)
		return x.MustMulScalar(ts.FloatScalar(2), false).MustRequiresGrad()
	}
	for i := 0; i < 100; i++ {
		func() {
			defer NoGrad()()
			if gradOn() {
				t.Fatalf("round %d: grad mode is on inside NoGrad", i)
			}
			func() {
				defer NoGrad()()
			}()
			if gradOn() {
				t.Fatalf("round %d: an inner NoGrad turned the grad mode on", i)
			}
		}()
		if !gradOn() {
			t.Fatalf("round %d: grad mode is off after NoGrad", i)
		}
	}
	func() {
		defer func() { recover() }()
		defer NoGrad()()
		panic("fail")
	}()
	if !gradOn() {
		t.Fatal("grad mode is off after a panic inside NoGrad")
	}
}

func TestRuntimeEnv(t *testing.T) {
	avx512 := []string{"avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}
	for _, c := range []struct {
		env, flags, want []string
	}{
		{nil, avx512, []string{"OPENBLAS_CORETYPE=SkylakeX", "OMP_WAIT_POLICY=PASSIVE"}},
		{[]string{"OMP_WAIT_POLICY=ACTIVE"}, avx512, []string{"OPENBLAS_CORETYPE=SkylakeX"}},
		{[]string{"OPENBLAS_CORETYPE=Haswell"}, avx512, []string{"OMP_WAIT_POLICY=PASSIVE"}},
		{[]string{"XSPAN_BLAS_TUNE=0"}, avx512, []string{"OMP_WAIT_POLICY=PASSIVE"}},
		{[]string{"OMP_WAIT_POLICY="}, []string{"sse4_2"}, []string{"OMP_WAIT_POLICY=PASSIVE"}}, // empty is unset
		{[]string{"OMP_WAIT_POLICY=passive", "OPENBLAS_CORETYPE=SkylakeX"}, avx512, nil},
	} {
		if got := RuntimeEnv(c.env, c.flags); !slices.Equal(got, c.want) {
			t.Errorf("RuntimeEnv(%v) = %v, want %v", c.env, got, c.want)
		}
	}
}

// The version: what make build linked in, else the module's version, else "(devel)"
// with the revision when the build stamped one.
func TestVersionSources(t *testing.T) {
	stamped := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}}
	for _, c := range []struct {
		linked string
		bi     *debug.BuildInfo
		want   string
	}{
		{"v1.2.0-3-gabcdef0", stamped, "v1.2.0-3-gabcdef0"},
		{"", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}}, "v1.2.0"},
		{"", stamped, "(devel) 0123456789ab+dirty"},
		{"", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "(devel)"},
		{"", nil, "(devel)"},
	} {
		if got := version(c.linked, c.bi); got != c.want {
			t.Errorf("version(%q, …) = %q, want %q", c.linked, got, c.want)
		}
	}
}
