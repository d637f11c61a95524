package train

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/sugarme/gotch"

	"xspan/checkpoint"
	"xspan/dataset"
	"xspan/internal/torchrt"
)

func quiet() Option { return WithOutput(nil) }

// TestResumeBitIdentical trains 2n steps in one go, and n steps interrupted (the Ctrl-C
// path: the context is cancelled) then resumed for n more, and wants bit-identical
// weights, optimiser state and per-step losses. Dropout and random span shortening are
// on, and the batch is split in two accumulated micro-batches.
func TestResumeBitIdentical(t *testing.T) {
	defer torchrt.Lock()()
	torchrt.SetThreads(1)
	data := testData(t)
	const n = 6
	cfg := tinyConfig(2 * n)
	cfg.Accumulate = 2
	cfg.CkptEvery = 4 // a checkpoint between, to exercise pruning

	losses := map[string][]float64{}
	record := func(key string) Option {
		return WithOnStep(func(step int64, r *checkpoint.Row) { losses[key] = append(losses[key], r.Loss, r.SpanLoss, r.GradNorm) })
	}
	runA := filepath.Join(t.TempDir(), "a")
	resA, err := Run(context.Background(), cfg, data, runA, quiet(), record("a"), WithoutFinalEval())
	if err != nil {
		t.Fatal(err)
	}
	if resA.Step != 2*n || resA.Tokens != int64(2*n*cfg.Batch*cfg.Block) {
		t.Fatalf("run a: step %d, tokens %d", resA.Step, resA.Tokens)
	}

	runB := filepath.Join(t.TempDir(), "b")
	ctx, cancel := context.WithCancel(context.Background())
	stop := WithOnStep(func(step int64, r *checkpoint.Row) {
		losses["b"] = append(losses["b"], r.Loss, r.SpanLoss, r.GradNorm)
		if step == n {
			cancel()
		}
	})
	_, err = Run(ctx, cfg, data, runB, quiet(), stop, WithoutFinalEval())
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted run: err = %v, want ErrInterrupted", err)
	}
	last, err := checkpoint.Latest(runB)
	if err != nil || filepath.Base(last) != checkpoint.StepDirName(n) {
		t.Fatalf("latest checkpoint after interrupt: %q, %v", last, err)
	}
	// Starting over in the same folder without --resume is refused.
	if _, err := Run(context.Background(), cfg, data, runB, quiet()); err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("restart without resume: err = %v", err)
	}
	resB, err := Run(context.Background(), cfg, "", runB, quiet(), WithResume(true), record("b"), WithoutFinalEval())
	if err != nil {
		t.Fatal(err)
	}
	if resB.Step != 2*n || resB.Steps != n {
		t.Fatalf("resumed run: step %d, steps this call %d", resB.Step, resB.Steps)
	}

	ma, ca, err := checkpoint.Load(runA, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	mb, cb, err := checkpoint.Load(runB, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Step != 2*n || cb.Step != 2*n {
		t.Fatalf("checkpoint steps %d and %d", ca.Step, cb.Step)
	}
	if err := sameTensors(paramValues(ma), paramValues(mb)); err != nil {
		t.Fatalf("weights after 2n steps vs n + resumed n: %v", err)
	}
	if len(losses["a"]) != len(losses["b"]) {
		t.Fatalf("%d vs %d step records", len(losses["a"]), len(losses["b"]))
	}
	for i := range losses["a"] {
		if losses["a"][i] != losses["b"][i] {
			t.Fatalf("step figure %d: %v vs %v", i, losses["a"][i], losses["b"][i])
		}
	}
	// Optimiser states agree too.
	for _, f := range []string{checkpoint.OptimName, checkpoint.MemoryName(0), checkpoint.MemoryName(1)} {
		a, _ := os.ReadFile(filepath.Join(ca.Path, f))
		b, _ := os.ReadFile(filepath.Join(cb.Path, f))
		if len(a) == 0 || string(a) != string(b) {
			t.Errorf("%s differs between the runs (%d vs %d bytes)", f, len(a), len(b))
		}
	}
	// Metrics: the resumed run's log has each step once.
	rows, err := checkpoint.ReadMetrics(filepath.Join(runB, checkpoint.MetricsName))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]int{}
	for _, r := range rows {
		if r.Kind == checkpoint.RowTrain {
			seen[r.Step]++
		}
	}
	for s, c := range seen {
		if c != 1 {
			t.Errorf("metrics: step %d logged %d times", s, c)
		}
	}
	if seen[2*n] != 1 {
		t.Errorf("metrics: last step not logged: %v", seen)
	}
}

func TestTrainCheckpointsAndBest(t *testing.T) {
	defer torchrt.Lock()()
	data := testData(t)
	cfg := tinyConfig(12)
	cfg.EvalEvery, cfg.CkptEvery = 3, 3
	cfg.Dropout = 0
	run := filepath.Join(t.TempDir(), "run")
	res, err := Run(context.Background(), cfg, data, run, quiet(), WithKeep(2), WithLogEvery(5), WithValidBatch(2))
	if err != nil {
		t.Fatal(err)
	}
	if res.Valid == nil || !(res.Valid.BPC > 0) || res.Valid.Unit.Abbrev != "bpc" {
		t.Fatalf("final validation: %+v", res.Valid)
	}
	// Learning happened: the validation at the end beats a uniform guess over the vocabulary.
	ck, err := checkpoint.Open(run)
	if err != nil {
		t.Fatal(err)
	}
	if uniform := math.Log2(float64(ck.Config.Vocab)); res.Valid.BPC >= uniform {
		t.Errorf("valid bpc %.3f after 12 steps, uniform %.3f", res.Valid.BPC, uniform)
	}
	steps, _ := checkpoint.Steps(run)
	best, err := checkpoint.Best(run)
	if err != nil || best == "" {
		t.Fatalf("best: %q, %v", best, err)
	}
	bh, err := checkpoint.ReadHeader(best)
	if err != nil {
		t.Fatal(err)
	}
	// Two latest checkpoints, plus the best if it is older.
	want := 2
	if bh.Step < steps[len(steps)-2] {
		want = 3
	}
	if len(steps) != want || steps[len(steps)-1] != 12 {
		t.Fatalf("checkpoints kept: %v (best at %d)", steps, bh.Step)
	}
	if bh.Valid == nil || bh.Valid.BPC != bh.BestValid {
		t.Errorf("best header: valid %+v, best_valid %v", bh.Valid, bh.BestValid)
	}
	// Every way of naming a checkpoint resolves, to the checkpoint it names, with the
	// dataset's vocabulary.
	r, err := dataset.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	latest, _ := checkpoint.Latest(run)
	for name, want := range map[string]string{run: latest, filepath.Join(run, checkpoint.BestName): best, best: best} {
		_, c, err := checkpoint.Load(name, gotch.CPU)
		if err != nil {
			t.Fatalf("checkpoint.Load(%s): %v", name, err)
		}
		if filepath.Clean(c.Path) != filepath.Clean(want) {
			t.Errorf("checkpoint.Load(%s) opened %s, want %s", name, c.Path, want)
		}
		if err := c.CheckVocab(r); err != nil {
			t.Errorf("checkpoint.Load(%s): %v", name, err)
		}
	}
	// The metrics log has train rows every 5 steps (and the last) and eval rows every 3.
	rows, err := checkpoint.ReadMetrics(filepath.Join(run, checkpoint.MetricsName))
	if err != nil {
		t.Fatal(err)
	}
	var trainRows, evalRows []int64
	for _, r := range rows {
		switch r.Kind {
		case checkpoint.RowTrain:
			trainRows = append(trainRows, r.Step)
			if len(r.MeanSpan) != cfg.Layers || len(r.Live) != cfg.Layers || r.TokPerSec <= 0 || r.LR <= 0 {
				t.Errorf("train row incomplete: %+v", r)
			}
		case checkpoint.RowEval:
			evalRows = append(evalRows, r.Step)
		}
	}
	if len(trainRows) != 3 || trainRows[2] != 12 || len(evalRows) != 4 {
		t.Errorf("metrics: train rows at %v, eval rows at %v", trainRows, evalRows)
	}
	// A config of another shape is refused on resume, naming the field.
	other := cfg
	other.Dim = 48
	other.Steps = 20
	if _, err := Run(context.Background(), other, data, run, quiet(), WithResume(true)); err == nil || !strings.Contains(err.Error(), "dim") {
		t.Errorf("resume with another dim: err = %v", err)
	}
	// Fine-tuning from this run's weights in a new folder starts at step 0.
	ft := filepath.Join(t.TempDir(), "ft")
	cfg2 := cfg
	cfg2.Steps, cfg2.EvalEvery, cfg2.CkptEvery = 2, 0, 0
	r2, err := Run(context.Background(), cfg2, data, ft, quiet(), WithInitFrom(filepath.Join(run, checkpoint.BestName)), WithoutFinalEval())
	if err != nil {
		t.Fatal(err)
	}
	if r2.Step != 2 {
		t.Errorf("fine-tune: step %d", r2.Step)
	}
	// A refused --init-from leaves no run folder behind (issue 17: it left a config.json),
	// nor a damaged one (its weights file is named).
	ft2 := filepath.Join(t.TempDir(), "ft2")
	if _, err := Run(context.Background(), other, data, ft2, quiet(), WithInitFrom(run)); err == nil || !strings.Contains(err.Error(), "dim") {
		t.Errorf("init-from another shape: err = %v", err)
	}
	damaged := filepath.Join(t.TempDir(), "damaged")
	bestDir, _ := checkpoint.Best(run)
	os.CopyFS(damaged, os.DirFS(bestDir))
	w := filepath.Join(damaged, checkpoint.WeightsName)
	data2, _ := os.ReadFile(w)
	data2[len(data2)-3] ^= 1
	os.WriteFile(w, data2, 0o644)
	if _, err := Run(context.Background(), cfg2, data, ft2, quiet(), WithInitFrom(damaged)); err == nil || !strings.Contains(err.Error(), w) {
		t.Errorf("init-from a damaged checkpoint: err = %v", err)
	}
	if _, err := os.Stat(ft2); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("refused --init-from runs left %s behind (%v)", ft2, err)
	}
}

func TestCheckpointErrors(t *testing.T) {
	defer torchrt.Lock()()
	data := testData(t)
	cfg := tinyConfig(1)
	run := filepath.Join(t.TempDir(), "run")
	if _, err := Run(context.Background(), cfg, data, run, quiet(), WithoutFinalEval()); err != nil {
		t.Fatal(err)
	}
	dir, _ := checkpoint.Latest(run)
	hdrPath := filepath.Join(dir, checkpoint.HeaderName)
	orig, _ := os.ReadFile(hdrPath)

	check := func(what, content, want string) {
		t.Helper()
		os.WriteFile(hdrPath, []byte(content), 0o644)
		_, _, err := checkpoint.Load(dir, gotch.CPU)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want it to mention %q", what, err, want)
		}
	}
	// resign gives a HEADER's body a magic line of format v with its right checksum.
	resign := func(v int, content string) string {
		_, body, _ := strings.Cut(content, "\n")
		return fmt.Sprintf("%s %d xxh64:%016x\n%s", checkpoint.Magic, v, xxhash.Sum64String(body), body)
	}
	check("another format version", resign(3, string(orig)), "format version 3")
	check("no magic", "{}\n", "not an xspan checkpoint")
	check("edited config", strings.Replace(string(orig), `"dim": 32`, `"dim": 48`, 1), "the header is damaged")
	check("edited config, checksum redone", resign(2, strings.Replace(string(orig), `"dim": 32`, `"dim": 48`, 1)), "config hash")
	os.WriteFile(hdrPath, orig, 0o644)
	if _, _, err := checkpoint.Load(dir, gotch.CPU); err != nil {
		t.Fatalf("restored header: %v", err)
	}
	// Weights that do not fit the config.
	os.WriteFile(filepath.Join(dir, checkpoint.WeightsName), []byte("junk"), 0o644)
	if _, _, err := checkpoint.Load(dir, gotch.CPU); err == nil || !strings.Contains(err.Error(), checkpoint.WeightsName) {
		t.Errorf("junk weights: err = %v", err)
	}
	for _, p := range []string{filepath.Join(run, "nope"), t.TempDir()} {
		if _, err := checkpoint.Resolve(p); err == nil {
			t.Errorf("Resolve(%s): no error", p)
		}
	}
	if _, err := Run(context.Background(), cfg, data, filepath.Join(t.TempDir(), "x"), quiet(), WithResume(true)); err == nil || !strings.Contains(err.Error(), "no checkpoint") {
		t.Errorf("resume of an empty folder: err = %v", err)
	}
}

func TestNonFiniteLossStops(t *testing.T) {
	defer torchrt.Lock()()
	data := testData(t)
	cfg := tinyConfig(30)
	cfg.LR, cfg.Warmup, cfg.Clip = 1e30, 0, 0
	cfg.CkptEvery = 1
	run := filepath.Join(t.TempDir(), "run")
	res, errStop := Run(context.Background(), cfg, data, run, quiet(), WithoutFinalEval())
	if !errors.Is(errStop, ErrNonFinite) {
		t.Fatalf("lr 1e30: err = %v, want ErrNonFinite", errStop)
	}
	if !strings.Contains(errStop.Error(), "last good checkpoint") {
		t.Errorf("message lacks the last good checkpoint: %v", errStop)
	}
	// The first update is finite (the weights are still the initial ones), so with a
	// checkpoint every step there is a last good one, of the last step done, and it loads.
	last, err := checkpoint.Latest(run)
	if err != nil || last == "" {
		t.Fatalf("no checkpoint after a non-finite loss at step %d: %q, %v", res.Step+1, last, err)
	}
	if !strings.Contains(errStop.Error(), last) {
		t.Errorf("the error does not name the last good checkpoint %s: %v", last, errStop)
	}
	if _, _, err := checkpoint.Load(last, gotch.CPU); err != nil {
		t.Errorf("last good checkpoint: %v", err)
	}
	if h, err := checkpoint.ReadHeader(last); err != nil || h.Step != res.Step || res.Step < 1 {
		t.Errorf("last checkpoint %+v (%v); the run stopped after step %d", h, err, res.Step)
	}
}

// A full disk while a checkpoint is written (injected: the disk takes 1000 bytes of the
// step-4 weights) stops the run with an error that says so; the step-2 checkpoint stays
// whole, nothing half-written is left, and --resume then finishes the run with the same
// weights as a run that never failed.
func TestFullDiskStopsCleanlyAndResumes(t *testing.T) {
	defer torchrt.Lock()()
	data := testData(t)
	cfg := tinyConfig(6)
	cfg.CkptEvery = 2
	ref := filepath.Join(t.TempDir(), "ref")
	if _, err := Run(context.Background(), cfg, data, ref, quiet(), WithoutFinalEval()); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(t.TempDir(), "run")
	checkpoint.FaultHook = func(path string) int64 {
		if strings.Contains(path, checkpoint.StepDirName(4)) && filepath.Base(path) == checkpoint.WeightsName {
			return 1000
		}
		return -1
	}
	_, err := Run(context.Background(), cfg, data, run, quiet(), WithoutFinalEval())
	checkpoint.FaultHook = nil
	if err == nil || !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(err.Error(), checkpoint.StepDirName(4)) {
		t.Fatalf("full disk at step 4: err = %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(run, checkpoint.Dir))
	if len(ents) != 1 || ents[0].Name() != checkpoint.StepDirName(2) {
		t.Fatalf("after the failure the checkpoints folder holds %v", ents)
	}
	if _, _, err := checkpoint.Load(run, gotch.CPU); err != nil {
		t.Fatalf("the step-2 checkpoint: %v", err)
	}
	if _, err := Run(context.Background(), cfg, data, run, quiet(), WithoutFinalEval(), WithResume(true)); err != nil {
		t.Fatalf("resume after the failure: %v", err)
	}
	ma, _, err := checkpoint.Load(ref, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	mb, _, err := checkpoint.Load(run, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameTensors(paramValues(ma), paramValues(mb)); err != nil {
		t.Fatalf("resumed run vs one that never failed: %v", err)
	}
}
