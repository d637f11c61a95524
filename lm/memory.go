package lm

import (
	"fmt"

	"github.com/sugarme/gotch/ts"

	"xspan/expirespan"
)

// Save writes the memory (every layer's hidden states, ages and counters) to path, so
// that a resumed run carries on with exactly the memory it stopped with.
func (mem *Memory) Save(path string) error {
	var named []ts.NamedTensor
	var tmp []*ts.Tensor
	defer func() {
		for _, t := range tmp {
			t.MustDrop()
		}
	}()
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
	if err := ts.SaveMultiNew(named, path); err != nil {
		return fmt.Errorf("saving memory to %s: %v", path, err)
	}
	return nil
}

// LoadMemory reads a memory written by Memory.Save for this model.
func (m *Model) LoadMemory(path string) (*Memory, error) {
	loaded, err := ts.LoadMultiWithDevice(path, m.dev)
	if err != nil {
		return nil, fmt.Errorf("loading memory from %s: %v", path, err)
	}
	byName := map[string]*ts.Tensor{}
	for _, t := range loaded {
		byName[t.Name] = t.Tensor
	}
	mem := &Memory{}
	for i := range m.layers {
		metaT := byName[fmt.Sprintf("layer%d.meta", i)]
		if metaT == nil {
			return nil, fmt.Errorf("memory in %s has no layer %d (the model has %d layers)", path, i, len(m.layers))
		}
		meta := metaT.Int64Values()
		l := &expirespan.Memory{B: int(meta[0]), Len: int(meta[1]), Dropped: meta[2]}
		mem.Rule = expirespan.Rule(meta[3])
		if l.Len > 0 {
			h, ages := byName[fmt.Sprintf("layer%d.h", i)], byName[fmt.Sprintf("layer%d.ages", i)]
			if h == nil || ages == nil {
				return nil, fmt.Errorf("memory in %s: layer %d lacks its states", path, i)
			}
			if sz := h.MustSize(); len(sz) != 3 || sz[0] != int64(l.B) || sz[1] != int64(l.Len) || sz[2] != int64(m.Cfg.Dim) {
				return nil, fmt.Errorf("memory in %s: layer %d states have shape %v, want [%d %d %d]", path, i, sz, l.B, l.Len, m.Cfg.Dim)
			}
			l.H = h
			l.Ages = ages.Int64Values()
		}
		mem.Layers = append(mem.Layers, l)
	}
	if len(byName) > 0 && len(mem.Layers) != len(m.layers) {
		return nil, fmt.Errorf("memory in %s does not match the model", path)
	}
	return mem, nil
}
