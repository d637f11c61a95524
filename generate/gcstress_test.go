package generate_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"xspan/generate"
	"xspan/internal/torchrt"
	"xspan/lm"
	"xspan/serve"
	"xspan/tokenize"
)

// trainLosses runs steps training blocks of a fresh copy of the tiny model (forward,
// backward, a plain gradient step) and returns the task losses: a pure function of the
// seed, so any tensor freed under libtorch's feet shows as a different number or a crash.
func trainLosses(t *testing.T, steps int) ([]float64, error) {
	defer torchrt.Lock()()
	m := tinyLM(t)
	mem := m.NewMemory(2)
	defer mem.Drop()
	rng := rand.New(torchrt.NewSource(7))
	text := []byte(strings.Repeat("Memories expire; the model forgets what it no longer needs. ", 4))
	var losses []float64
	for s := range steps {
		ids := make([]int64, 0, 2*17)
		for b := range 2 {
			for i := range 17 {
				ids = append(ids, int64(text[(s*16+b*100+i)%len(text)]))
			}
		}
		block := ts.MustOfSlice(ids).MustView([]int64{2, 17}, true)
		res, err := m.Step(mem, block, lm.StepOptions{Train: true, RNG: rng})
		block.MustDrop()
		if err != nil {
			return nil, err
		}
		if err := res.Backward(1); err != nil {
			return nil, err
		}
		losses = append(losses, res.TaskLoss.Float64Values()[0])
		res.Drop()
		func() {
			defer torchrt.NoGrad()()
			for _, p := range m.Parameters() {
				g := p.MustGrad(false)
				if !g.MustDefined() {
					g.MustDrop()
					continue
				}
				p.MustSub_(g.MustMulScalar(ts.FloatScalar(0.05), false))
				g.MustZero_()
				g.MustDrop()
			}
		}()
	}
	return losses, nil
}

// Under constant garbage collection (GOGC=1), four generations and a training run at
// once give exactly the results they give alone, with normal collection. Before the
// set-up's keep-alive patch, a collection during an op could free its input tensors or
// scalars while libtorch read them (SIGSEGV in atg_add, "INTERNAL ASSERT FAILED").
func TestConcurrentGenerationAndTrainingUnderGCPressure(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	defer torchrt.Lock()()
	m := tinyLM(t)
	prompt := bytesToIDs(strings.Repeat("Expire-Span keeps a name and drops the filler. ", 2))
	optsFor := func(i int) generate.Options {
		return generate.Options{MaxNewTokens: 150, PromptBlock: 16,
			Sampler: generate.SamplerConfig{Temperature: 0.9, TopP: 0.95, Seed: int64(i + 1)}}
	}
	const gens, steps = 4, 6
	generateOnce := func(i int) ([]int, error) {
		defer torchrt.Lock()()
		d := m.NewDecoder()
		d.SetPruning(true)
		defer d.Close()
		res, err := generate.Generate(context.Background(), d, lmModel{m, true}.Vocab(), prompt, optsFor(i), nil)
		return res.IDs, err
	}
	want := make([][]int, gens)
	for i := range gens {
		ids, err := generateOnce(i)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = ids
	}
	wantLosses, err := trainLosses(t, steps)
	if err != nil {
		t.Fatal(err)
	}

	defer debug.SetGCPercent(debug.SetGCPercent(1))
	for round := range 2 {
		var wg sync.WaitGroup
		errs := make(chan error, gens+1)
		for i := range gens {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ids, err := generateOnce(i)
				if err == nil && !slices.Equal(ids, want[i]) {
					err = fmt.Errorf("generation %d: other tokens under GC pressure", i)
				}
				errs <- err
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			losses, err := trainLosses(t, steps)
			if err == nil && !slices.Equal(losses, wantLosses) {
				err = fmt.Errorf("training: losses %v under GC pressure, %v alone", losses, wantLosses)
			}
			errs <- err
		}()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("round %d: %v", round, err)
			}
		}
	}
}

// A failed op inside a Must* wrapper is an error of that call (torchrt.Recover), not the
// end of the process: gotch called log.Fatal there before the set-up's patch.
func TestFailedOpIsAnErrorNotAnExit(t *testing.T) {
	defer torchrt.Lock()()
	fail := func() (err error) {
		defer torchrt.Recover(&err)
		a := ts.MustZeros([]int64{2, 3}, gotch.Float, gotch.CPU)
		b := ts.MustZeros([]int64{5, 7}, gotch.Float, gotch.CPU)
		a.MustMatmul(b, false) // shapes do not fit: libtorch throws
		return nil
	}
	err := fail()
	if err == nil || !strings.Contains(err.Error(), "libtorch") {
		t.Fatalf("err = %v, want a libtorch error", err)
	}
	// The thread goes on working, with gradients on.
	x := ts.MustOnes([]int64{2}, gotch.Float, gotch.CPU).MustSetRequiresGrad(true, false)
	y := x.MustMulScalar(ts.FloatScalar(3), false).MustSum(gotch.Float, true)
	if err := y.Backward(); err != nil {
		t.Fatal(err)
	}
	if g := x.MustGrad(false).Float64Values(); g[0] != 3 || g[1] != 3 {
		t.Fatalf("gradient after a recovered failure: %v", g)
	}
	// A failure inside torchrt.NoGrad leaves the grad mode as it was.
	func() {
		defer func() { _ = recover() }()
		func() { defer torchrt.NoGrad()(); fail2() }()
	}()
	if was := ts.MustGradSetEnabled(true); !was {
		t.Fatalf("grad mode is off after a panic inside torchrt.NoGrad")
	}
}

func fail2() {
	a := ts.MustZeros([]int64{2, 3}, gotch.Float, gotch.CPU)
	a.MustMatmul(a, false)
}

// failingStepper is a model whose op fails inside libtorch on the third call.
type failingStepper struct{ calls int }

func (f *failingStepper) Feed(tokens []int64) ([]float32, error) {
	f.calls++
	if f.calls == 3 {
		a := ts.MustZeros([]int64{2, 3}, gotch.Float, gotch.CPU)
		a.MustMatmul(a, false) // 2×3 by 2×3: libtorch throws, the Must wrapper panics
	}
	return make([]float32, 256), nil
}

func (f *failingStepper) Live() []int    { return []int{0} }
func (f *failingStepper) Dropped() int64 { return 0 }

// A libtorch failure in one generation is that generation's error; served, it is that
// request's 500, and the server goes on answering.
func TestLibtorchFailureFailsOneGeneration(t *testing.T) {
	defer torchrt.Lock()()
	_, err := generate.Generate(context.Background(), &failingStepper{}, tokenize.Byte{}, []int64{65}, generate.Options{MaxNewTokens: 10, Sampler: generate.SamplerConfig{TopP: 1}}, nil)
	if !errors.Is(err, torchrt.ErrLibtorch) {
		t.Fatalf("err = %v, want a libtorch error", err)
	}
	cfg := serve.DefaultConfig()
	cfg.MaxConcurrent, cfg.AllowedHosts = 1, []string{"localhost"}
	srv, err := serve.New(failingModel{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "http://localhost/v1/generate", strings.NewReader(`{"prompt":"A","max_new_tokens":10}`))
		req.Header.Set("Content-Type", "application/json")
		srv.ServeHTTP(rec, req)
		if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "libtorch") {
			t.Fatalf("request %d: %d %s, want 500 naming libtorch", i, rec.Code, rec.Body.String())
		}
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", "http://localhost/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("healthz after failures: %d", rec.Code)
	}
}

type failingModel struct{}

func (failingModel) NewStepper() (generate.Stepper, error) { return &failingStepper{}, nil }
func (failingModel) Vocab() tokenize.Vocab                 { return tokenize.Byte{} }
func (failingModel) Info() any                             { return "failing" }
