package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"xspan/checkpoint"
	"xspan/dataset"
	"xspan/dist"
	"xspan/internal/torchrt"
	"xspan/lm"
)

// The distributed tests run each rank as a process of its own: this test binary started
// again with TestDistWorker and a workerSpec, joining a Gloo group on loopback.

type workerSpec struct {
	Cfg     lm.Config
	Data    string
	Out     string
	Weights string // where rank r writes its final weights (r replaces %d)
	Resume  bool
	Timeout time.Duration
	// DieAt: the rank DieRank kills itself (SIGKILL) after this step; HangAt: it stops
	// answering (sleeps) after this step.
	DieAt, HangAt int64
	DieRank       int
	// FailAt: a libtorch op fails in rank DieRank's micro-step of this step.
	FailAt int64
	// BadData: rank DieRank is given a dataset folder that does not exist.
	BadData bool
}

func TestDistWorker(t *testing.T) {
	spec := os.Getenv("XSPAN_TEST_DIST_WORKER")
	if spec == "" {
		t.Skip("a rank of the distributed tests")
	}
	var w workerSpec
	if err := json.Unmarshal([]byte(spec), &w); err != nil {
		t.Fatal(err)
	}
	defer torchrt.Lock()()
	torchrt.SetThreads(1)
	c, ok, err := dist.FromEnv()
	if err != nil || !ok {
		t.Fatalf("environment: %v %v", ok, err)
	}
	c.Timeout = w.Timeout
	g, err := dist.Join(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	opts := []Option{quiet(), WithGroup(g), WithoutFinalEval(), WithResume(w.Resume)}
	opts = append(opts, func(o *options) error {
		o.atEnd = func(m *lm.Model) error {
			_, err := checkpoint.SaveTensors(fmt.Sprintf(w.Weights, c.Rank), m.NamedParameters(), nil)
			return err
		}
		return nil
	})
	if c.Rank == w.DieRank && w.FailAt > 0 {
		opts = append(opts, func(o *options) error {
			o.atMicro = func(step int64, _ int) {
				if step == w.FailAt {
					a := ts.MustOnes([]int64{2, 3}, gotch.Float, gotch.CPU)
					defer a.MustDrop()
					a.MustMatmul(a, false).MustDrop() // 2×3 by 2×3: libtorch refuses
				}
			}
			return nil
		})
	}
	if c.Rank == w.DieRank && (w.DieAt > 0 || w.HangAt > 0) {
		opts = append(opts, WithOnStep(func(step int64, _ *checkpoint.Row) {
			if step == w.DieAt {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
			if step == w.HangAt {
				time.Sleep(time.Hour)
			}
		}))
	}
	data := w.Data
	if c.Rank == w.DieRank && w.BadData {
		data = filepath.Join(w.Data, "missing")
	}
	if _, err := Run(context.Background(), w.Cfg, data, w.Out, opts...); err != nil {
		fmt.Fprintln(os.Stderr, "rank", c.Rank, "error:", err)
		os.Exit(1)
	}
	g.Close()
	os.Exit(0)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type rankResult struct {
	code    int
	stderr  string
	elapsed time.Duration
}

// runRanks runs world ranks of w and returns each one's exit status, bounded in time.
func runRanks(t *testing.T, w workerSpec, world int) []rankResult {
	t.Helper()
	spec, _ := json.Marshal(w)
	port := freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res := make([]rankResult, world)
	cmds := make([]*exec.Cmd, world)
	errs := make([]*strings.Builder, world)
	start := time.Now()
	for r := 0; r < world; r++ {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestDistWorker$", "-test.count=1")
		cmd.Env = append(os.Environ(), "XSPAN_TEST_DIST_WORKER="+string(spec),
			fmt.Sprintf("RANK=%d", r), fmt.Sprintf("WORLD_SIZE=%d", world), fmt.Sprintf("LOCAL_RANK=%d", r),
			"MASTER_ADDR=127.0.0.1", fmt.Sprintf("MASTER_PORT=%d", port), "OMP_NUM_THREADS=1")
		errs[r] = &strings.Builder{}
		cmd.Stderr = errs[r]
		cmd.Stdout = errs[r]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[r] = cmd
	}
	done := make(chan int, world)
	for r := range cmds {
		go func() {
			err := cmds[r].Wait()
			res[r].elapsed = time.Since(start)
			res[r].code = 0
			if err != nil {
				res[r].code = -1
				if ee, ok := err.(*exec.ExitError); ok {
					res[r].code = ee.ExitCode()
				}
			}
			done <- r
		}()
	}
	for range cmds {
		r := <-done
		res[r].stderr = errs[r].String()
	}
	return res
}

// trainOneProcess trains cfg in one process into run and returns its final weights.
func trainOneProcess(t *testing.T, cfg lm.Config, data, run string) map[string][]float64 {
	t.Helper()
	if _, err := Run(context.Background(), cfg, data, run, quiet(), WithoutFinalEval()); err != nil {
		t.Fatal(err)
	}
	m, _, err := checkpoint.Load(run, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	return paramValues(m)
}

func loadWeights(t *testing.T, cfg lm.Config, path string) map[string][]float64 {
	t.Helper()
	m, err := lm.New(cfg, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	named, err := checkpoint.LoadTensors(path, gotch.CPU, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, n := range named {
			n.Tensor.MustDrop()
		}
	}()
	if err := m.SetWeights(named); err != nil {
		t.Fatal(err)
	}
	return paramValues(m)
}

// closeTensors reports the first difference larger than tol (relative to the values).
func closeTensors(a, b map[string][]float64, tol float64) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d vs %d tensors", len(a), len(b))
	}
	for name, va := range a {
		vb := b[name]
		if len(va) != len(vb) {
			return fmt.Errorf("tensor %s: %d vs %d values", name, len(va), len(vb))
		}
		for i := range va {
			if math.Abs(va[i]-vb[i]) > tol*(1+math.Abs(va[i])) {
				return fmt.Errorf("tensor %s[%d]: %v vs %v", name, i, va[i], vb[i])
			}
		}
	}
	return nil
}

func ranksOK(t *testing.T, res []rankResult) {
	t.Helper()
	for r, x := range res {
		if x.code != 0 {
			for q, y := range res {
				t.Logf("rank %d: exit %d:\n%s", q, y.code, y.stderr)
			}
			t.Fatalf("rank %d failed", r)
		}
	}
}

// distCase trains cfg (Accumulate per rank) on two ranks and, as the reference, in one
// process with twice the accumulation, and compares the final weights.
func distCase(t *testing.T, cfg lm.Config) {
	defer torchrt.Lock()()
	torchrt.SetThreads(1)
	if !dist.Available(dist.Gloo) {
		t.Skip("native library built without Gloo")
	}
	data := testData(t)
	dir := t.TempDir()
	w := workerSpec{Cfg: cfg, Data: data, Out: filepath.Join(dir, "dist"), Weights: filepath.Join(dir, "rank%d.safetensors"), Timeout: time.Minute}
	ranksOK(t, runRanks(t, w, 2))
	ck, err := checkpoint.Open(w.Out)
	if err != nil {
		t.Fatal(err)
	}
	cfg = ck.Config
	r0 := loadWeights(t, cfg, filepath.Join(dir, "rank0.safetensors"))
	r1 := loadWeights(t, cfg, filepath.Join(dir, "rank1.safetensors"))
	if err := sameTensors(r0, r1); err != nil {
		t.Fatalf("ranks 0 and 1 end with different weights: %v", err)
	}
	if ck.Header.World != 2 || ck.Header.Memories != 2*cfg.EffectiveAccumulate() {
		t.Errorf("checkpoint header: world %d, memories %d", ck.Header.World, ck.Header.Memories)
	}
	if err := sameTensors(r0, loadWeights(t, cfg, filepath.Join(ck.Path, checkpoint.WeightsName))); err != nil {
		t.Fatalf("rank 0's checkpoint vs its final weights: %v", err)
	}

	one := cfg
	one.Accumulate = 2 * cfg.EffectiveAccumulate()
	if err := closeTensors(trainOneProcess(t, one, data, filepath.Join(dir, "single")), r0, 1e-4); err != nil {
		t.Fatalf("two ranks vs one process with accumulate %d: %v", one.Accumulate, err)
	}
	// The memories too: rank r's are the single process's groups r·A ...
	for i := 0; i < one.Accumulate; i++ {
		a, _ := os.ReadFile(filepath.Join(ck.Path, checkpoint.MemoryName(i)))
		if len(a) == 0 {
			t.Errorf("%s missing", checkpoint.MemoryName(i))
		}
	}
}

func TestDistTwoRanksMatchOneProcess(t *testing.T) {
	cfg := tinyConfig(5)
	cfg.Dropout, cfg.Noisy = 0, false
	cfg.Accumulate = 1
	distCase(t, cfg)
}

func TestDistTwoRanksNoiseDropout(t *testing.T) {
	// Noise and dropout on: the ranks stay equal; and since every stream group draws from
	// its own seed, they match the single process too.
	cfg := tinyConfig(5)
	cfg.Accumulate = 1
	distCase(t, cfg)
}

// TestDistRankDiesThenResume: rank 1 is killed after step 3; rank 0 must fail within the
// timeout, not hang. The run then resumes from the step-2 checkpoint, on two ranks, and
// on one process with accumulate 2 (the same stream groups); accumulate 1 is refused.
func TestDistRankDiesThenResume(t *testing.T) {
	defer torchrt.Lock()()
	torchrt.SetThreads(1)
	if !dist.Available(dist.Gloo) {
		t.Skip("native library built without Gloo")
	}
	data := testData(t)
	dir := t.TempDir()
	cfg := tinyConfig(6)
	cfg.Accumulate = 1
	cfg.CkptEvery = 2
	const timeout = 5 * time.Second
	w := workerSpec{Cfg: cfg, Data: data, Out: filepath.Join(dir, "run"), Weights: filepath.Join(dir, "rank%d.safetensors"), Timeout: timeout, DieAt: 3, DieRank: 1}
	res := runRanks(t, w, 2)
	if res[1].code == 0 || res[0].code == 0 {
		t.Fatalf("with rank 1 killed: exits %d and %d:\n%s", res[0].code, res[1].code, res[0].stderr)
	}
	if wait := res[0].elapsed - res[1].elapsed; wait > timeout+5*time.Second {
		t.Errorf("rank 0 took %v after rank 1 died (timeout %v)", wait, timeout)
	}
	if !strings.Contains(res[0].stderr, "rank 0 of 2") {
		t.Errorf("rank 0's error does not say what failed:\n%s", res[0].stderr)
	}
	last, _ := checkpoint.Latest(w.Out)
	if filepath.Base(last) != checkpoint.StepDirName(2) {
		t.Fatalf("latest checkpoint %q, want step 2", last)
	}

	// The reference: six uninterrupted steps on two ranks.
	ref := w
	ref.Out, ref.DieAt, ref.Weights = filepath.Join(dir, "ref"), 0, filepath.Join(dir, "ref%d.safetensors")
	ranksOK(t, runRanks(t, ref, 2))
	full, err := checkpoint.ReadRunConfig(ref.Out)
	if err != nil {
		t.Fatal(err)
	}
	want := loadWeights(t, full, filepath.Join(dir, "ref0.safetensors"))

	// Resume on one process with accumulate 1: 2 stream groups do not map onto 1.
	cp := filepath.Join(dir, "copy")
	if err := os.CopyFS(cp, os.DirFS(w.Out)); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), cfg, data, cp, quiet(), WithResume(true), WithoutFinalEval()); err == nil || !strings.Contains(err.Error(), "ranks × accumulate = 2") {
		t.Fatalf("resume with another layout: err = %v", err)
	}
	// One process with accumulate 2: the same groups, the same weights (to float tolerance).
	one := cfg
	one.Accumulate = 2
	if _, err := Run(context.Background(), one, data, cp, quiet(), WithResume(true), WithoutFinalEval()); err != nil {
		t.Fatal(err)
	}
	m, _, err := checkpoint.Load(cp, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	if err := closeTensors(paramValues(m), want, 1e-4); err != nil {
		t.Errorf("resumed on one process vs uninterrupted two ranks: %v", err)
	}

	// Two ranks again: bit for bit the uninterrupted run.
	w.DieAt, w.Resume = 0, true
	ranksOK(t, runRanks(t, w, 2))
	if err := sameTensors(loadWeights(t, full, filepath.Join(dir, "rank1.safetensors")), want); err != nil {
		t.Errorf("resumed two ranks vs uninterrupted: %v", err)
	}
}

// TestDistRankHangs: rank 1 stops answering after step 2; rank 0 fails within the timeout.
func TestDistRankHangs(t *testing.T) {
	defer torchrt.Lock()()
	if !dist.Available(dist.Gloo) {
		t.Skip("native library built without Gloo")
	}
	data := testData(t)
	dir := t.TempDir()
	cfg := tinyConfig(4)
	cfg.Accumulate = 1
	const timeout = 4 * time.Second
	w := workerSpec{Cfg: cfg, Data: data, Out: filepath.Join(dir, "run"), Weights: filepath.Join(dir, "rank%d.safetensors"), Timeout: timeout, HangAt: 2, DieRank: 1}
	spec, _ := json.Marshal(w)
	port := freePort(t)
	var cmds [2]*exec.Cmd
	var out [2]strings.Builder
	for r := range cmds {
		cmds[r] = exec.Command(os.Args[0], "-test.run=^TestDistWorker$", "-test.count=1")
		cmds[r].Env = append(os.Environ(), "XSPAN_TEST_DIST_WORKER="+string(spec), fmt.Sprintf("RANK=%d", r), "WORLD_SIZE=2",
			"MASTER_ADDR=127.0.0.1", fmt.Sprintf("MASTER_PORT=%d", port))
		cmds[r].Stderr = &out[r]
		if err := cmds[r].Start(); err != nil {
			t.Fatal(err)
		}
	}
	defer cmds[1].Process.Kill()
	done := make(chan error, 1)
	go func() { done <- cmds[0].Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("rank 0 succeeded with rank 1 hung")
		}
		if !strings.Contains(out[0].String(), "rank 0 of 2") {
			t.Errorf("rank 0's error:\n%s", out[0].String())
		}
	case <-time.After(2 * time.Minute):
		cmds[0].Process.Kill()
		t.Fatalf("rank 0 still running 2 minutes after rank 1 hung (timeout %v)", timeout)
	}
}

// TestDistAcrossEpochs: every epoch after the first starts its streams at an offset drawn
// from the seed and the epoch, the same on every rank. Two ranks running into a second
// epoch match one process with twice the accumulation; rank 1 killed in the second epoch,
// the run resumed on two ranks from the checkpoint of the first epoch (whose other rank's
// memories rank 0 sends) ends bit for bit as the uninterrupted one.
func TestDistAcrossEpochs(t *testing.T) {
	defer torchrt.Lock()()
	torchrt.SetThreads(1)
	if !dist.Available(dist.Gloo) {
		t.Skip("native library built without Gloo")
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "corpus.txt")
	if err := os.WriteFile(in, []byte(testText(2000)), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if _, err := dataset.Prep(context.Background(), data, []string{in}, dataset.WithSplit(0.8, 0.1, 0.1), dataset.WithVocab("char")); err != nil {
		t.Fatal(err)
	}
	cfg := tinyConfig(40) // about 24 blocks an epoch
	cfg.Dropout, cfg.Noisy = 0, false
	cfg.Accumulate = 1
	cfg.CkptEvery = 16

	ref := workerSpec{Cfg: cfg, Data: data, Out: filepath.Join(dir, "ref"), Weights: filepath.Join(dir, "ref%d.safetensors"), Timeout: time.Minute}
	ranksOK(t, runRanks(t, ref, 2))
	full, err := checkpoint.ReadRunConfig(ref.Out)
	if err != nil {
		t.Fatal(err)
	}
	want := loadWeights(t, full, filepath.Join(dir, "ref0.safetensors"))
	if h, err := checkpoint.ReadHeader(mustLatest(t, ref.Out)); err != nil || h.Data.Epoch != 1 {
		t.Fatalf("the uninterrupted run ends in epoch %v (%v), want 1", h, err)
	}

	one := cfg
	one.Accumulate = 2
	if err := closeTensors(trainOneProcess(t, one, data, filepath.Join(dir, "single")), want, 1e-4); err != nil {
		t.Fatalf("two ranks vs one process with accumulate 2 across epochs: %v", err)
	}

	const timeout = 5 * time.Second
	w := workerSpec{Cfg: cfg, Data: data, Out: filepath.Join(dir, "run"), Weights: filepath.Join(dir, "rank%d.safetensors"), Timeout: timeout, DieAt: 36, DieRank: 1}
	if res := runRanks(t, w, 2); res[0].code == 0 || res[1].code == 0 {
		t.Fatalf("with rank 1 killed: exits %d and %d", res[0].code, res[1].code)
	}
	h, err := checkpoint.ReadHeader(mustLatest(t, w.Out))
	if err != nil {
		t.Fatal(err)
	}
	if h.Step != 32 || h.Data.Epoch != 1 || h.World != 2 {
		t.Fatalf("latest checkpoint: step %d, epoch %d, world %d; want 32, 1, 2", h.Step, h.Data.Epoch, h.World)
	}
	w.DieAt, w.Resume = 0, true
	ranksOK(t, runRanks(t, w, 2))
	for r := 0; r < 2; r++ {
		if err := sameTensors(loadWeights(t, full, filepath.Join(dir, fmt.Sprintf("rank%d.safetensors", r))), want); err != nil {
			t.Errorf("rank %d resumed in epoch 2 vs uninterrupted: %v", r, err)
		}
	}
}

func mustLatest(t *testing.T, run string) string {
	t.Helper()
	last, err := checkpoint.Latest(run)
	if err != nil || last == "" {
		t.Fatalf("%s: latest checkpoint %q: %v", run, last, err)
	}
	return last
}

// TestDistRankOpFails: a libtorch op fails in rank 1's micro-step of step 3. As on one
// process, the step fails (it is not taken) and the last checkpoint stands; rank 0 hears
// of it in the step's reduction and stops at once, not after the timeout.
func TestDistRankOpFails(t *testing.T) {
	defer torchrt.Lock()()
	if !dist.Available(dist.Gloo) {
		t.Skip("native library built without Gloo")
	}
	data := testData(t)
	dir := t.TempDir()
	cfg := tinyConfig(6)
	cfg.Accumulate = 1
	cfg.CkptEvery = 2
	const timeout = time.Minute
	w := workerSpec{Cfg: cfg, Data: data, Out: filepath.Join(dir, "run"), Weights: filepath.Join(dir, "rank%d.safetensors"), Timeout: timeout, FailAt: 3, DieRank: 1}
	start := time.Now()
	res := runRanks(t, w, 2)
	if res[0].code == 0 || res[1].code == 0 {
		t.Fatalf("with an op failing on rank 1: exits %d and %d:\n%s\n%s", res[0].code, res[1].code, res[0].stderr, res[1].stderr)
	}
	if d := time.Since(start); d > timeout/2 {
		t.Errorf("the ranks took %v to stop (timeout %v): they waited on each other", d, timeout)
	}
	if !strings.Contains(res[1].stderr, "libtorch") || !strings.Contains(res[1].stderr, "last good checkpoint") {
		t.Errorf("rank 1's error:\n%s", res[1].stderr)
	}
	if !strings.Contains(res[0].stderr, "failed on 1 other rank") || !strings.Contains(res[0].stderr, "last good checkpoint") {
		t.Errorf("rank 0's error:\n%s", res[0].stderr)
	}
	last := mustLatest(t, w.Out)
	if filepath.Base(last) != checkpoint.StepDirName(2) {
		t.Fatalf("latest checkpoint %q, want step 2", last)
	}
	if err := checkpoint.Verify(last); err != nil {
		t.Fatal(err)
	}
}

// A rank that cannot set itself up stops every rank before rank 0 writes anything: no run
// folder is left behind.
func TestDistRankSetupFails(t *testing.T) {
	defer torchrt.Lock()()
	if !dist.Available(dist.Gloo) {
		t.Skip("native library built without Gloo")
	}
	dir := t.TempDir()
	cfg := tinyConfig(4)
	cfg.Accumulate = 1
	w := workerSpec{Cfg: cfg, Data: testData(t), Out: filepath.Join(dir, "run"), Weights: filepath.Join(dir, "rank%d.safetensors"), Timeout: time.Minute, DieRank: 1, BadData: true}
	res := runRanks(t, w, 2)
	if res[0].code == 0 || res[1].code == 0 {
		t.Fatalf("with rank 1's dataset missing: exits %d and %d:\n%s\n%s", res[0].code, res[1].code, res[0].stderr, res[1].stderr)
	}
	if !strings.Contains(res[0].stderr, "other rank(s) failed to set up") || !strings.Contains(res[1].stderr, "missing") {
		t.Errorf("rank 0:\n%s\nrank 1:\n%s", res[0].stderr, res[1].stderr)
	}
	if _, err := os.Stat(w.Out); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused run left %s behind (%v)", w.Out, err)
	}
}
