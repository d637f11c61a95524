package refckpt

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func readCkpt(t testing.TB, name string) *Checkpoint {
	t.Helper()
	c, err := Read(filepath.Join("testdata", name+".pt"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestInferArch(t *testing.T) {
	for _, name := range []string{"post", "pre"} {
		fx := readFixture(t, name)
		a, err := InferArch(readCkpt(t, name))
		if err != nil {
			t.Fatal(err)
		}
		hp := fx.HParams
		want := Arch{Layers: 2, Dim: 32, Heads: 2, FFN: 64, Vocab: 42, Block: 8, PosWindow: 8,
			PreNorm: hp["pre_norm"].(bool), Expire: true,
			SpanPlusRamp: int(hp["attn_lim"].(float64) + hp["expire_span_ramp"].(float64))}
		if a != want {
			t.Errorf("%s: %+v, want %+v", name, a, want)
		}
	}
}

func TestInferArchRejects(t *testing.T) {
	drop := func(name string) func(c *Checkpoint) {
		return func(c *Checkpoint) {
			c.Params = slices.DeleteFunc(c.Params, func(p Param) bool { return p.Name == name })
		}
	}
	for _, tc := range []struct {
		what   string
		change func(c *Checkpoint)
		want   string
	}{
		{"missing tensor", drop("layers.1.ff.fc2.bias"), "layers.1.ff.fc2.bias is missing"},
		{"no mask", drop("layers.0.attn.attn.mask_causal"), "mask_causal"},
		{"extra tensor", func(c *Checkpoint) {
			c.Params = append(c.Params, Param{Name: "layers.0.attn.attn.val_pe", Shape: []int64{1}, Data: []float32{0}})
		}, "layers.0.attn.attn.val_pe is not part of it"},
		{"wrong shape", func(c *Checkpoint) {
			for i, p := range c.Params {
				if p.Name == "layers.1.attn.proj_key.weight" {
					c.Params[i].Shape = []int64{32, 16}
					c.Params[i].Data = p.Data[:512]
				}
			}
		}, "layers.1.attn.proj_key.weight has shape [32 16], want [32 32]"},
		{"unshared position table", func(c *Checkpoint) {
			for i, p := range c.Params {
				if p.Name == "layers.1.attn.attn.key_pe" {
					d := slices.Clone(p.Data)
					d[3]++
					c.Params[i].Data = d
				}
			}
		}, "differs from layer 0"},
		{"TransformerSeq-like position table", func(c *Checkpoint) {
			for i, p := range c.Params {
				if strings.HasSuffix(p.Name, "key_pe") {
					c.Params[i].Shape = []int64{1, 16, 48}
				}
			}
		}, "position table of 48 columns"},
	} {
		c := readCkpt(t, "post")
		tc.change(c)
		_, err := InferArch(c)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "post.pt") {
			t.Errorf("%s: error %v, want one naming the file and %q", tc.what, err, tc.want)
		}
	}
}

func TestToXspan(t *testing.T) {
	for _, name := range []string{"post", "pre"} {
		c := readCkpt(t, name)
		a, err := InferArch(c)
		if err != nil {
			t.Fatal(err)
		}
		vm, err := CharVocabMap(readFixture(t, name).Vocab)
		if err != nil {
			t.Fatal(err)
		}
		ns, err := ToXspan(c, a, vm)
		if err != nil {
			t.Fatal(err)
		}
		want := 3 + 1 + 14*a.Layers
		if a.PreNorm {
			want += 2
		}
		if len(ns) != want {
			t.Errorf("%s: %d tensors, want %d", name, len(ns), want)
		}
		byName := map[string]Named{}
		for _, n := range ns {
			byName[n.Name] = n
			if int64(len(n.Data)) != (Param{Shape: n.Shape}).Numel() {
				t.Errorf("%s: %s has %d values for shape %v", name, n.Name, len(n.Data), n.Shape)
			}
		}
		// xspan's Wq is in×out: x·Wq[:, o] = Σ_i x_i · proj_query.weight[o, i].
		pq, _ := c.Param("layers.1.attn.proj_query.weight")
		wq := byName["layer1.attn.wq"]
		if wq.Data[5*32+7] != pq.Data[7*32+5] {
			t.Errorf("%s: wq not the transpose of proj_query.weight", name)
		}
		// Output column x is the reference's row RefID[x].
		ow, _ := c.Param("out.out_emb.weight")
		outW := byName["out_w"]
		for x, r := range vm.RefID {
			if outW.Data[3*len(vm.RefID)+x] != ow.Data[r*32+3] {
				t.Fatalf("%s: out_w column %d is not reference row %d", name, x, r)
			}
		}
		if _, ok := byName["norm_final.weight"]; ok != a.PreNorm {
			t.Errorf("%s: norm_final present %v, pre-norm %v", name, ok, a.PreNorm)
		}
	}
}
