package lm

import (
	"fmt"
	"sort"
	"strings"

	"github.com/sugarme/gotch/ts"

	"xspan/internal/torchrt"
)

// NamedParameters returns the trainable tensors with their names, sorted by name.
func (m *Model) NamedParameters() []ts.NamedTensor {
	var out []ts.NamedTensor
	add := func(name string, t *ts.Tensor) {
		if t != nil {
			out = append(out, ts.NamedTensor{Name: name, Tensor: t})
		}
	}
	add("emb", m.emb)
	add("pos", m.pos)
	for i, l := range m.layers {
		p := fmt.Sprintf("layer%d.", i)
		add(p+"attn.wq", l.attn.Wq)
		add(p+"attn.wk", l.attn.Wk)
		add(p+"attn.wv", l.attn.Wv)
		add(p+"attn.wo", l.attn.Wo)
		add(p+"attn.span_w", l.attn.SpanW)
		add(p+"attn.span_b", l.attn.SpanB)
		add(p+"norm1.weight", l.norm1.w)
		add(p+"norm1.bias", l.norm1.b)
		add(p+"norm2.weight", l.norm2.w)
		add(p+"norm2.bias", l.norm2.b)
		add(p+"ffn_w1", l.w1)
		add(p+"ffn_b1", l.b1)
		add(p+"ffn_w2", l.w2)
		add(p+"ffn_b2", l.b2)
	}
	if m.normF != nil {
		add("norm_final.weight", m.normF.w)
		add("norm_final.bias", m.normF.b)
	}
	add("out_w", m.wOut)
	add("out_b", m.bOut)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// SetWeights copies named tensors (as NamedParameters names them, loaded from a
// checkpoint) into the model's weights. Every tensor must be there with the model's shape,
// and there must be no other: a mismatch is an error that names the tensors and shapes
// involved, and leaves the model unchanged. The caller keeps the tensors.
func (m *Model) SetWeights(loaded []ts.NamedTensor) error {
	byName := map[string]*ts.Tensor{}
	for _, t := range loaded {
		byName[t.Name] = t.Tensor
	}
	params := m.NamedParameters()
	var problems []string
	want := map[string]bool{}
	for _, p := range params {
		want[p.Name] = true
		src, ok := byName[p.Name]
		if !ok {
			problems = append(problems, fmt.Sprintf("tensor %s is missing", p.Name))
			continue
		}
		if a, b := src.MustSize(), p.Tensor.MustSize(); fmt.Sprint(a) != fmt.Sprint(b) {
			problems = append(problems, fmt.Sprintf("tensor %s has shape %v, the config wants %v", p.Name, a, b))
		} else if src.DType() != p.Tensor.DType() {
			problems = append(problems, fmt.Sprintf("tensor %s has dtype %v, the model's is %v", p.Name, src.DType(), p.Tensor.DType()))
		}
	}
	for _, t := range loaded {
		if !want[t.Name] {
			problems = append(problems, fmt.Sprintf("tensor %s is not part of this model", t.Name))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		if len(problems) > 4 {
			problems = append(problems[:4], fmt.Sprintf("and %d more", len(problems)-4))
		}
		return fmt.Errorf("weights do not match the config: %s", strings.Join(problems, "; "))
	}
	defer torchrt.NoGrad()()
	for _, p := range params {
		p.Tensor.Copy_(byName[p.Name])
	}
	return nil
}
