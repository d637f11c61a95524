package lm

import (
	"fmt"

	"github.com/sugarme/gotch/ts"

	"xspan/expirespan"
)

// Tensors returns the memory (every layer's hidden states, ages and counters) as named
// tensors, so that a checkpoint can save it and a resumed run carry on with exactly the
// memory it stopped with. free drops the tensors made for it (the states stay the
// memory's).
func (mem *Memory) Tensors() (named []ts.NamedTensor, free func()) {
	var tmp []*ts.Tensor
	free = func() {
		for _, t := range tmp {
			t.MustDrop()
		}
	}
	for i, l := range mem.Layers {
		meta := ts.MustOfSlice([]int64{int64(l.B), int64(l.Len), l.Dropped, int64(mem.Rule)})
		tmp = append(tmp, meta)
		named = append(named, ts.NamedTensor{Name: fmt.Sprintf("layer%d.meta", i), Tensor: meta})
		if l.Len > 0 {
			ages := ts.MustOfSlice(l.Ages)
			tmp = append(tmp, ages)
			named = append(named,
				ts.NamedTensor{Name: fmt.Sprintf("layer%d.h", i), Tensor: l.H},
				ts.NamedTensor{Name: fmt.Sprintf("layer%d.ages", i), Tensor: ages})
		}
	}
	return named, free
}

// MemoryFrom rebuilds a memory of this model from the named tensors that Tensors gave.
// It takes the tensors: those the memory keeps are its own, it drops the others (all of
// them on error).
func (m *Model) MemoryFrom(loaded []ts.NamedTensor) (_ *Memory, err error) {
	byName := map[string]*ts.Tensor{}
	for _, t := range loaded {
		byName[t.Name] = t.Tensor
	}
	kept := map[*ts.Tensor]bool{}
	defer func() {
		for _, t := range loaded {
			if err != nil || !kept[t.Tensor] {
				t.Tensor.MustDrop()
			}
		}
	}()
	mem := &Memory{}
	for i := range m.layers {
		metaT := byName[fmt.Sprintf("layer%d.meta", i)]
		if metaT == nil {
			return nil, fmt.Errorf("memory has no layer %d (the model has %d layers)", i, len(m.layers))
		}
		if sz := metaT.MustSize(); len(sz) != 1 || sz[0] != 4 {
			return nil, fmt.Errorf("memory layer %d: counters of shape %v, want [4]", i, sz)
		}
		meta := metaT.Int64Values()
		l := &expirespan.Memory{B: int(meta[0]), Len: int(meta[1]), Dropped: meta[2]}
		mem.Rule = expirespan.Rule(meta[3])
		if meta[0] < 1 || meta[1] < 0 || meta[2] < 0 {
			return nil, fmt.Errorf("memory layer %d: bad counters %v", i, meta)
		}
		if l.Len > 0 {
			h, ages := byName[fmt.Sprintf("layer%d.h", i)], byName[fmt.Sprintf("layer%d.ages", i)]
			if h == nil || ages == nil {
				return nil, fmt.Errorf("memory layer %d lacks its states", i)
			}
			if sz := h.MustSize(); len(sz) != 3 || sz[0] != int64(l.B) || sz[1] != int64(l.Len) || sz[2] != int64(m.Cfg.Dim) {
				return nil, fmt.Errorf("memory layer %d: states of shape %v, want [%d %d %d]", i, sz, l.B, l.Len, m.Cfg.Dim)
			}
			l.Ages = ages.Int64Values()
			if len(l.Ages) != l.B*l.Len {
				return nil, fmt.Errorf("memory layer %d: %d ages for %d×%d states", i, len(l.Ages), l.B, l.Len)
			}
			l.H = h
			kept[h] = true
		}
		mem.Layers = append(mem.Layers, l)
	}
	if len(byName) > 0 && len(mem.Layers) != len(m.layers) {
		return nil, fmt.Errorf("memory does not match the model")
	}
	return mem, nil
}
