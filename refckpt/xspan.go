package refckpt

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Arch is the shape of a reference Expire-Span model, read off its state dict.
type Arch struct {
	Layers, Dim, Heads, FFN, Vocab int
	Block                          int  // M (mem_sz): the rows of mask_causal
	PosWindow                      int  // the position table's columns: min(attn_lim, M) = M
	PreNorm                        bool // out_norm present
	Expire                         bool // span predictors present
	// SpanPlusRamp is L + R (attn_lim + expire_span_ramp): mask_causal is M × (L + M + R).
	// Without expiry it is L. The checkpoint holds no other hyperparameter: L and R apart,
	// pre_div, α, p0 and dropout come from the run's flags.
	SpanPlusRamp int
}

// expected returns every state-dict name with its shape for an architecture.
func (a Arch) expected() map[string][]int64 {
	d, f, v, m := int64(a.Dim), int64(a.FFN), int64(a.Vocab), int64(a.Block)
	hd := d / int64(a.Heads)
	w := map[string][]int64{
		"in_emb.weight":      {v, d},
		"out.out_emb.weight": {v, d},
		"out.out_emb.bias":   {v},
	}
	if a.PreNorm {
		w["out_norm.weight"] = []int64{d}
		w["out_norm.bias"] = []int64{d}
	}
	for i := 0; i < a.Layers; i++ {
		p := fmt.Sprintf("layers.%d.", i)
		w[p+"attn.attn.key_pe"] = []int64{1, hd, int64(a.PosWindow)}
		w[p+"attn.attn.mask_causal"] = []int64{m, int64(a.SpanPlusRamp) + m}
		if a.Expire {
			w[p+"attn.attn.expire_span.span_predictor.weight"] = []int64{1, d}
			w[p+"attn.attn.expire_span.span_predictor.bias"] = []int64{1}
		}
		for _, n := range []string{"proj_query", "proj_key", "proj_val", "proj_out"} {
			w[p+"attn."+n+".weight"] = []int64{d, d}
		}
		w[p+"ff.fc1.weight"] = []int64{f, d}
		w[p+"ff.fc1.bias"] = []int64{f}
		w[p+"ff.fc2.weight"] = []int64{d, f}
		w[p+"ff.fc2.bias"] = []int64{d}
		for _, n := range []string{"norm1", "norm2"} {
			w[p+n+".weight"] = []int64{d}
			w[p+n+".bias"] = []int64{d}
		}
	}
	return w
}

// InferArch reads the architecture off the checkpoint's state dict and checks that every
// tensor of the reference's ExpireSpan model (models/expire_span.py) is there with its
// shape and that there is no other: a checkpoint of another model (the reference's
// TransformerSeq, compressive, feedback, staircase) or a damaged one is an error that
// names what does not fit.
func InferArch(c *Checkpoint) (Arch, error) {
	fail := func(format string, args ...any) (Arch, error) {
		return Arch{}, fmt.Errorf("refckpt: %s: not a checkpoint of the reference's Expire-Span model: %s", c.Path, fmt.Sprintf(format, args...))
	}
	shape := func(name string) []int64 {
		if p, ok := c.Param(name); ok {
			return p.Shape
		}
		return nil
	}
	emb := shape("in_emb.weight")
	if len(emb) != 2 {
		return fail("no in_emb.weight of two dimensions")
	}
	var a Arch
	a.Vocab, a.Dim = int(emb[0]), int(emb[1])
	for shape(fmt.Sprintf("layers.%d.norm1.weight", a.Layers)) != nil {
		a.Layers++
	}
	if a.Layers == 0 {
		return fail("no layers.0.norm1.weight")
	}
	pe := shape("layers.0.attn.attn.key_pe")
	if len(pe) != 3 || pe[0] != 1 || pe[1] <= 0 || int(pe[1]) > a.Dim || a.Dim%int(pe[1]) != 0 {
		return fail("layers.0.attn.attn.key_pe has shape %v, want 1 × head_dim × M with head_dim dividing %d", pe, a.Dim)
	}
	a.Heads, a.PosWindow = a.Dim/int(pe[1]), int(pe[2])
	mc := shape("layers.0.attn.attn.mask_causal")
	if len(mc) != 2 || mc[1] < mc[0] {
		return fail("layers.0.attn.attn.mask_causal has shape %v, want M × (L + M + R) (TransformerSeq and the other models have none)", mc)
	}
	a.Block, a.SpanPlusRamp = int(mc[0]), int(mc[1]-mc[0])
	if a.PosWindow != a.Block {
		// key_pe has min(attn_lim, M) columns and the reference requires attn_lim ≥ M.
		return fail("a position table of %d columns for blocks of %d", a.PosWindow, a.Block)
	}
	fc1 := shape("layers.0.ff.fc1.weight")
	if len(fc1) != 2 {
		return fail("no layers.0.ff.fc1.weight of two dimensions")
	}
	a.FFN = int(fc1[0])
	a.PreNorm = shape("out_norm.weight") != nil
	a.Expire = shape("layers.0.attn.attn.expire_span.span_predictor.weight") != nil
	want := a.expected()
	var problems []string
	for name, s := range want {
		got := shape(name)
		switch {
		case got == nil:
			problems = append(problems, name+" is missing")
		case !slices.Equal(got, s):
			problems = append(problems, fmt.Sprintf("%s has shape %v, want %v", name, got, s))
		}
	}
	for _, p := range c.Params {
		if _, ok := want[p.Name]; !ok {
			problems = append(problems, p.Name+" is not part of it")
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		if len(problems) > 6 {
			problems = append(problems[:6], fmt.Sprintf("and %d more", len(problems)-6))
		}
		return fail("%s (read as %d layers, d %d, %d heads, FFN %d, vocabulary %d, M %d)", strings.Join(problems, "; "),
			a.Layers, a.Dim, a.Heads, a.FFN, a.Vocab, a.Block)
	}
	// The reference shares one position table between layers (every layer's key_pe is
	// layer 0's); xspan has one. Different tables would not fit.
	p0, _ := c.Param("layers.0.attn.attn.key_pe")
	for i := 1; i < a.Layers; i++ {
		pi, _ := c.Param(fmt.Sprintf("layers.%d.attn.attn.key_pe", i))
		if !slices.Equal(p0.Data, pi.Data) {
			return fail("layers.%d.attn.attn.key_pe differs from layer 0's: the reference shares one position table", i)
		}
	}
	return a, nil
}

// VocabMap maps the reference's token ids onto one of xspan's vocabularies: RefID[x] is
// the reference id of xspan id x, -1 where the reference has no such token.
type VocabMap struct {
	Kind  string // "char" or "byte" (tokenize.KindChar, tokenize.KindByte)
	Chars []rune // char: xspan's characters in id order (code-point order); its <unk> id is len(Chars)
	RefID []int
	// Exact: every reference token has an xspan id, and no xspan id lacks a reference token,
	// so log-probabilities carry over exactly. A byte map is exact only if the reference's
	// vocabulary is all 256 bytes, which never holds (it always has <unk>).
	Exact bool
}

// tokenByte reads a reference token as the byte it stands for in enwik8-format data (the
// decimal value, as prep_enwik8.py writes it); <eos> is the newline.
func tokenByte(w string) (byte, bool) {
	if w == EOSToken {
		return '\n', true
	}
	if w == "" || len(w) > 3 || (len(w) > 1 && w[0] == '0') {
		return 0, false
	}
	n, err := strconv.Atoi(w)
	if err != nil || n < 0 || n > 255 {
		return 0, false
	}
	return byte(n), true
}

// CharVocabMap maps a reference vocabulary of enwik8-format tokens (decimal bytes, <eos>,
// <unk>) onto an xspan char vocabulary: each decimal byte below 128 is that ASCII
// character, <eos> is '\n', <unk> is xspan's <unk> (the last id); xspan orders characters
// by code point. The map is exact. A byte of 128 or more is an error (it is part of a
// UTF-8 sequence, not a character: use ByteVocabMap), as is any other token or two tokens
// for one character.
func CharVocabMap(vocab []string) (*VocabMap, error) {
	refOf := map[rune]int{}
	unk := -1
	for i, w := range vocab {
		if w == UnkToken {
			if unk >= 0 {
				return nil, fmt.Errorf("refckpt: %s twice in the vocabulary", UnkToken)
			}
			unk = i
			continue
		}
		b, ok := tokenByte(w)
		if !ok {
			return nil, fmt.Errorf("refckpt: vocabulary token %d (%q) is not a decimal byte, %s or %s: not enwik8-format character data", i, w, EOSToken, UnkToken)
		}
		if b >= 128 {
			return nil, fmt.Errorf("refckpt: vocabulary token %d (%q) is byte %d, not an ASCII character: use a byte vocabulary", i, w, b)
		}
		if j, dup := refOf[rune(b)]; dup {
			return nil, fmt.Errorf("refckpt: vocabulary tokens %d (%q) and %d (%q) are both %q", j, vocab[j], i, w, rune(b))
		}
		refOf[rune(b)] = i
	}
	if unk < 0 {
		return nil, fmt.Errorf("refckpt: no %s in the vocabulary", UnkToken)
	}
	m := &VocabMap{Kind: "char", Exact: true}
	for r := range refOf {
		m.Chars = append(m.Chars, r)
	}
	slices.Sort(m.Chars)
	for _, r := range m.Chars {
		m.RefID = append(m.RefID, refOf[r])
	}
	m.RefID = append(m.RefID, unk)
	return m, nil
}

// ByteVocabMap maps a reference vocabulary of enwik8-format tokens onto xspan's byte
// vocabulary (256 ids): each decimal byte is that byte, <eos> is byte 10; <unk> has no
// byte and is left out, and bytes the reference lacks get no reference id. The import then
// gives those bytes a logit far below the others, so the log-probabilities differ from the
// reference's by log(1 − p(<unk>)) per token: not exact.
func ByteVocabMap(vocab []string) (*VocabMap, error) {
	m := &VocabMap{Kind: "byte", RefID: make([]int, 256)}
	for i := range m.RefID {
		m.RefID[i] = -1
	}
	for i, w := range vocab {
		if w == UnkToken {
			continue
		}
		b, ok := tokenByte(w)
		if !ok {
			return nil, fmt.Errorf("refckpt: vocabulary token %d (%q) is not a decimal byte, %s or %s: not enwik8-format data", i, w, EOSToken, UnkToken)
		}
		if j := m.RefID[b]; j >= 0 {
			return nil, fmt.Errorf("refckpt: vocabulary tokens %d (%q) and %d (%q) are both byte %d", j, vocab[j], i, w, b)
		}
		m.RefID[b] = i
	}
	return m, nil
}

// Named is one of xspan's model tensors (see lm.Model.NamedParameters) as plain data.
type Named struct {
	Name  string
	Shape []int64
	Data  []float32
}

// absentLogit is the output bias of xspan ids without a reference token (byte maps):
// exp(absentLogit − max) is 0 in float32.
const absentLogit = -1e4

// ToXspan builds xspan's named tensors from the reference's state dict: names as
// lm.Model.NamedParameters gives them, sorted by name; linear weights transposed (PyTorch
// stores out×in, xspan in×out); vocabulary rows and columns permuted by vm. See the package
// documentation for the table.
func ToXspan(c *Checkpoint, a Arch, vm *VocabMap) ([]Named, error) {
	if len(vm.RefID) == 0 {
		return nil, fmt.Errorf("refckpt: an empty vocabulary map")
	}
	for x, r := range vm.RefID {
		if r >= a.Vocab {
			return nil, fmt.Errorf("refckpt: vocabulary map sends xspan id %d to reference id %d, outside the model's %d", x, r, a.Vocab)
		}
	}
	if a.Heads <= 0 || a.Dim%a.Heads != 0 {
		return nil, fmt.Errorf("refckpt: %d heads for width %d", a.Heads, a.Dim)
	}
	params := map[string]Param{}
	for _, p := range c.Params {
		params[p.Name] = p
	}
	for name, s := range a.expected() {
		if p, ok := params[name]; !ok || !slices.Equal(p.Shape, s) || int64(len(p.Data)) != p.Numel() {
			return nil, fmt.Errorf("refckpt: %s: %s does not fit the architecture (shape %v, want %v)", c.Path, name, p.Shape, s)
		}
	}
	get := func(name string) Param { return params[name] }
	var out []Named
	add := func(name string, shape []int64, data []float32) {
		out = append(out, Named{Name: name, Shape: shape, Data: data})
	}
	d, v := a.Dim, len(vm.RefID)
	// Token embedding: row x is the reference's row RefID[x] (zeros where none).
	emb := get("in_emb.weight").Data
	e := make([]float32, v*d)
	for x, r := range vm.RefID {
		if r >= 0 {
			copy(e[x*d:(x+1)*d], emb[r*d:(r+1)*d])
		}
	}
	add("emb", []int64{int64(v), int64(d)}, e)
	// Output: out_w is d×V (the transpose of out_emb.weight), columns permuted.
	ow, ob := get("out.out_emb.weight").Data, get("out.out_emb.bias").Data
	w := make([]float32, d*v)
	b := make([]float32, v)
	for x, r := range vm.RefID {
		if r < 0 {
			b[x] = absentLogit
			continue
		}
		for i := 0; i < d; i++ {
			w[i*v+x] = ow[r*d+i]
		}
		b[x] = ob[r]
	}
	add("out_w", []int64{int64(d), int64(v)}, w)
	add("out_b", []int64{int64(v)}, b)
	// The position table: 1×d_h×P → d_h×P, the same column layout (column c: distance P − c).
	pe := get("layers.0.attn.attn.key_pe")
	add("pos", pe.Shape[1:], slices.Clone(pe.Data))
	if a.PreNorm {
		add("norm_final.weight", []int64{int64(d)}, slices.Clone(get("out_norm.weight").Data))
		add("norm_final.bias", []int64{int64(d)}, slices.Clone(get("out_norm.bias").Data))
	}
	for l := 0; l < a.Layers; l++ {
		rp := fmt.Sprintf("layers.%d.", l)
		xp := fmt.Sprintf("layer%d.", l)
		for ref, x := range map[string]string{"proj_query": "wq", "proj_key": "wk", "proj_val": "wv", "proj_out": "wo"} {
			p := get(rp + "attn." + ref + ".weight")
			add(xp+"attn."+x, []int64{p.Shape[1], p.Shape[0]}, transpose(p))
		}
		if a.Expire {
			sw := get(rp + "attn.attn.expire_span.span_predictor.weight")
			add(xp+"attn.span_w", []int64{int64(d), 1}, slices.Clone(sw.Data))
			add(xp+"attn.span_b", []int64{1}, slices.Clone(get(rp+"attn.attn.expire_span.span_predictor.bias").Data))
		}
		for _, n := range []string{"norm1", "norm2"} {
			add(xp+n+".weight", []int64{int64(d)}, slices.Clone(get(rp+n+".weight").Data))
			add(xp+n+".bias", []int64{int64(d)}, slices.Clone(get(rp+n+".bias").Data))
		}
		f1, f2 := get(rp+"ff.fc1.weight"), get(rp+"ff.fc2.weight")
		add(xp+"ffn_w1", []int64{f1.Shape[1], f1.Shape[0]}, transpose(f1))
		add(xp+"ffn_b1", []int64{f1.Shape[0]}, slices.Clone(get(rp+"ff.fc1.bias").Data))
		add(xp+"ffn_w2", []int64{f2.Shape[1], f2.Shape[0]}, transpose(f2))
		add(xp+"ffn_b2", []int64{f2.Shape[0]}, slices.Clone(get(rp+"ff.fc2.bias").Data))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// transpose returns a 2-D parameter's data transposed.
func transpose(p Param) []float32 {
	r, c := int(p.Shape[0]), int(p.Shape[1])
	out := make([]float32, r*c)
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			out[j*r+i] = p.Data[i*c+j]
		}
	}
	return out
}
