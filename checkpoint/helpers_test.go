package checkpoint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"xspan/internal/torchrt"
	"xspan/lm"
	"xspan/tokenize"
)

// testModel is a tiny model with a char vocabulary, its memory of 2 streams after one
// block, and a stand-in optimizer state.
func testModel(t *testing.T, seed int64) (*lm.Model, *lm.Memory, *fakeOptim, tokenize.Vocab) {
	t.Helper()
	v, err := tokenize.NewChar([]rune("abcdefgh "))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := lm.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Vocab, cfg.Tokenizer = v.Size(), v.Spec().Ref()
	cfg.Layers, cfg.Dim, cfg.Heads, cfg.FFN = 1, 16, 2, 32
	cfg.Block, cfg.MaxSpan, cfg.Ramp = 8, 32, 4
	torchrt.Seed(seed)
	m, err := lm.New(cfg, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	mem := m.NewMemory(2)
	ids := make([]int64, 2*9)
	for i := range ids {
		ids[i] = int64(i*7+int(seed)) % int64(v.Size())
	}
	x := torchrt.MustFromSlice(ids, []int64{2, 9}, gotch.CPU)
	restore := torchrt.NoGrad()
	sr, err := m.Step(mem, x, lm.StepOptions{})
	restore()
	x.MustDrop()
	if err != nil {
		t.Fatal(err)
	}
	sr.Drop()
	o := &fakeOptim{step: ts.MustOfSlice([]int64{seed}), m: ts.MustOfSlice([]float32{1.5, float32(seed), -3})}
	return m, mem, o, v
}

// fakeOptim is an OptimState of two tensors.
type fakeOptim struct{ step, m *ts.Tensor }

func (o *fakeOptim) State() ([]ts.NamedTensor, func()) {
	return []ts.NamedTensor{{Name: "step", Tensor: o.step}, {Name: "m.0", Tensor: o.m}}, func() {}
}

func (o *fakeOptim) SetState(named []ts.NamedTensor) error {
	for _, n := range named {
		switch n.Name {
		case "step":
			o.step = n.Tensor
		case "m.0":
			o.m = n.Tensor
		default:
			return fmt.Errorf("unexpected tensor %s", n.Name)
		}
	}
	return nil
}

// writeTest writes the checkpoint of step for the test model into run.
func writeTest(t *testing.T, run string, step int64, seed int64) string {
	t.Helper()
	m, mem, o, v := testModel(t, seed)
	dir, err := Write(run, &State{Header: Header{Step: step}, Model: m, Optim: o, Memories: []*lm.Memory{mem}, Vocab: v})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// loadAll opens the checkpoint at dir and loads everything it holds, as a resume does;
// it returns the first error, and the values it read.
func loadAll(dir string) (map[string][]float64, error) {
	ck, err := Open(dir)
	if err != nil {
		return nil, err
	}
	m, err := lm.New(ck.Config, gotch.CPU)
	if err != nil {
		return nil, err
	}
	if err := ck.LoadWeights(m); err != nil {
		return nil, err
	}
	out := map[string][]float64{}
	for _, p := range m.NamedParameters() {
		out["w."+p.Name] = torchrt.Float64s(p.Tensor)
	}
	o := &fakeOptim{}
	if err := ck.LoadOptim(o, gotch.CPU); err != nil {
		return nil, err
	}
	out["o.step"], out["o.m"] = torchrt.Float64s(o.step), torchrt.Float64s(o.m)
	mem, err := ck.LoadMemory(m, 0)
	if err != nil {
		return nil, err
	}
	named, free := mem.Tensors()
	for _, n := range named {
		out["mem."+n.Name] = torchrt.Float64s(n.Tensor)
	}
	free()
	mem.Drop()
	return out, nil
}

// valuesOf is what loadAll would read back from a model, memory and optimizer.
func valuesOf(m *lm.Model, mem *lm.Memory, o *fakeOptim) map[string][]float64 {
	out := map[string][]float64{}
	for _, p := range m.NamedParameters() {
		out["w."+p.Name] = torchrt.Float64s(p.Tensor)
	}
	out["o.step"], out["o.m"] = torchrt.Float64s(o.step), torchrt.Float64s(o.m)
	named, free := mem.Tensors()
	for _, n := range named {
		out["mem."+n.Name] = torchrt.Float64s(n.Tensor)
	}
	free()
	return out
}

func sameValues(a, b map[string][]float64) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d vs %d tensors", len(a), len(b))
	}
	for k, va := range a {
		vb := b[k]
		if len(va) != len(vb) {
			return fmt.Errorf("%s: %d vs %d values", k, len(va), len(vb))
		}
		for i := range va {
			if va[i] != vb[i] {
				return fmt.Errorf("%s[%d]: %v vs %v", k, i, va[i], vb[i])
			}
		}
	}
	return nil
}

// copyDir copies the files of the folder src into a new folder dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// oneLine checks that err is a one-line error naming path.
func oneLine(err error, path string) error {
	switch {
	case err == nil:
		return fmt.Errorf("no error")
	case !strings.Contains(err.Error(), path):
		return fmt.Errorf("error does not name %s: %v", path, err)
	case strings.Contains(err.Error(), "\n"):
		return fmt.Errorf("error of more than one line: %q", err)
	}
	return nil
}

// writeFormat1 turns the format-2 checkpoint dir into the format-1 checkpoint it would
// have been: libtorch .ot tensor files and a HEADER without checksums.
func writeFormat1(t *testing.T, dir string) {
	t.Helper()
	h, err := ReadHeader(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"weights", "optim", "memory-0"} {
		named, err := LoadTensors(filepath.Join(dir, kind+".safetensors"), gotch.CPU, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := ts.SaveMultiNew(named, filepath.Join(dir, kind+".ot")); err != nil {
			t.Fatal(err)
		}
		dropNamed(named)
		os.Remove(filepath.Join(dir, kind+".safetensors"))
	}
	h.Format, h.Files = 1, nil
	var buf bytes.Buffer
	js, _ := json.MarshalIndent(h, "", "  ")
	fmt.Fprintf(&buf, "%s 1\n%s\n", Magic, js)
	if err := os.WriteFile(filepath.Join(dir, HeaderName), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
