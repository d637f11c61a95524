package expirespan

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"xspan/internal/torchrt"
)

// Memory is one layer's memory of earlier tokens for B parallel streams: the layer's
// input hidden states H (B×Len×d, detached from the graph) and each key's age, how many
// steps before the current block's first query the token was seen. Streams of a batch
// keep equally many keys (tensors stay rectangular).
//
// For incremental decoding (batch 1) the memory also caches each key's projected key and
// value and its span (SetKV), which Update then keeps along with the memory.
type Memory struct {
	B, Len int
	H      *ts.Tensor // B×Len×d; nil when Len == 0
	Ages   []int64    // B×Len, row-major

	// Decoding cache (batch 1), valid when kv is true.
	kv      bool
	K, V    *ts.Tensor // 1×heads×Len×d_h
	Spans   []float32  // Len: each key's span e_i
	Dropped int64      // keys dropped so far
}

// NewMemory returns the memory at the start of B streams: n zero vectors with ages
// n, n−1, …, 1 (the reference's initial cache), or an empty memory when n is 0.
func NewMemory(b, n, dim int, dev gotch.Device) *Memory {
	m := &Memory{B: b, Len: n}
	if n == 0 {
		return m
	}
	m.H = ts.MustZeros([]int64{int64(b), int64(n), int64(dim)}, gotch.Float, dev)
	m.Ages = make([]int64, b*n)
	for s := 0; s < b; s++ {
		for i := 0; i < n; i++ {
			m.Ages[s*n+i] = int64(n - i)
		}
	}
	return m
}

// Drop frees the memory's tensors.
func (m *Memory) Drop() {
	if m.H != nil {
		m.H.MustDrop()
	}
	m.H = nil
	m.dropKV()
}

// KeyAges returns the ages of the keys of a block of t tokens attending over this memory:
// the memory's ages, then 0, −1, …, −(t−1) for the block's own tokens, per stream.
func (m *Memory) KeyAges(t int) []float32 {
	n := m.Len + t
	out := make([]float32, m.B*n)
	for s := 0; s < m.B; s++ {
		row := out[s*n : (s+1)*n]
		for i := 0; i < m.Len; i++ {
			row[i] = float32(m.Ages[s*m.Len+i])
		}
		for j := 0; j < t; j++ {
			row[m.Len+j] = float32(-j)
		}
	}
	return out
}

// Rule says which keys a memory drops after a block.
type Rule int

const (
	// KeepAll drops nothing (for tests and the no-pruning benchmark).
	KeepAll Rule = iota
	// PerKey drops every dead key of the memory at once (exact; any batch size, but
	// streams must then drop equally many, so it is used with batch 1).
	PerKey
	// Rectangular is the reference's rule for batches: only dead keys, only in whole
	// multiples of the block length, as many as the stream with the fewest dead keys has,
	// each stream keeping the rest in order.
	Rectangular
	// LastL keeps the last L keys, dead or not: the Transformer-XL-style baseline.
	LastL
)

// dead tells whether a key of span e and age c (relative to a block of t tokens) can never
// be attended again: e − (c + t) + R ≤ 0, since the next block's first query sees it at
// age c + t and the soft mask is zero from there on.
func dead(e float32, c int64, t int, ramp float64) bool {
	return float64(e)-float64(c+int64(t))+ramp <= 0
}

// Pruning is how a memory drops keys: the rule and the settings it reads.
type Pruning struct {
	Rule  Rule
	Ramp  float64 // R: a key is dead once its age passes its span by R
	Block int     // Rectangular drops whole multiples of the block length
	Last  int     // L: the keys LastL keeps
}

// keepIndices decides, for the keys [memory; block] of every stream after a block of t
// tokens, which keys the new memory keeps (indices into each stream's row of n keys).
// spans holds e_i (B×n); only memory keys (index < memLen) can be dropped.
func keepIndices(p Pruning, b, n, memLen, t int, ages []float32, spans []float32) [][]int {
	keep := make([][]int, b)
	rule, ramp, block, maxLen := p.Rule, p.Ramp, p.Block, p.Last
	switch rule {
	case KeepAll:
		for s := range keep {
			keep[s] = seq(0, n)
		}
	case LastL:
		start := 0
		if n > maxLen {
			start = n - maxLen
		}
		for s := range keep {
			keep[s] = seq(start, n)
		}
	case PerKey, Rectangular:
		deadOf := func(s, i int) bool {
			return i < memLen && dead(spans[s*n+i], int64(ages[s*n+i]), t, ramp)
		}
		drop := -1 // how many dead keys each stream drops: all of them for PerKey
		if rule == Rectangular {
			drop = n
			for s := 0; s < b; s++ {
				c := 0
				for i := 0; i < memLen; i++ {
					if deadOf(s, i) {
						c++
					}
				}
				drop = min(drop, c)
			}
			drop -= drop % block
		}
		for s := 0; s < b; s++ {
			k := make([]int, 0, n)
			dropped := 0
			for i := 0; i < n; i++ {
				if deadOf(s, i) && (drop < 0 || dropped < drop) {
					dropped++
					continue
				}
				k = append(k, i)
			}
			keep[s] = k
		}
	default:
		panic(fmt.Sprintf("expirespan: unknown rule %d", rule))
	}
	// Streams must keep equally many keys (PerKey with several streams is only rectangular
	// when they happen to agree): pad shorter rows by keeping their newest dropped keys.
	longest := 0
	for _, k := range keep {
		longest = max(longest, len(k))
	}
	for s, k := range keep {
		if len(k) < longest {
			keep[s] = padKeep(k, n, longest)
		}
	}
	return keep
}

// padKeep adds back the newest dropped indices of k (sorted, in [0, n)) until it has want.
func padKeep(k []int, n, want int) []int {
	in := make([]bool, n)
	for _, i := range k {
		in[i] = true
	}
	for i := n - 1; i >= 0 && len(k) < want; i-- {
		if !in[i] {
			in[i] = true
			k = append(k, i)
		}
	}
	out := k[:0:0]
	for i := 0; i < n; i++ {
		if in[i] {
			out = append(out, i)
		}
	}
	return out
}

func seq(from, to int) []int {
	s := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

// Keys are the keys of a block of t tokens as one layer attends over them: the memory's,
// then the block's own, n = Len + t per stream.
type Keys struct {
	X     *ts.Tensor // B×n×d: the layer's input at every key (detached when kept)
	Ages  []float32  // B×n: their ages for this block (KeyAges)
	Spans []float32  // B×n: their spans e_i (nil without expiry)
	// K and V (B×heads×n×d_h), when set, become the decoding cache (batch 1): Update
	// takes them. Without them the cache, if any, is dropped.
	K, V *ts.Tensor
}

// Update replaces the memory after a block of t tokens with the keys that p keeps of
// keys, detached from the graph, aged by t.
func (m *Memory) Update(keys Keys, t int, p Pruning) {
	b := m.B
	n := m.Len + t
	keep := keepIndices(p, b, n, m.Len, t, keys.Ages, keys.Spans)
	newLen := len(keep[0])
	var idx *ts.Tensor // the kept rows of the B·n flattened keys; nil: all of them
	if newLen != n {
		flat := make([]int64, 0, b*newLen)
		for s, k := range keep {
			for _, i := range k {
				flat = append(flat, int64(s*n+i))
			}
		}
		idx = torchrt.MustFromSlice(flat, []int64{int64(len(flat))}, keys.X.MustDevice())
		defer idx.MustDrop()
	}
	var h *ts.Tensor
	if idx == nil {
		h = keys.X.MustDetach(false)
	} else {
		d := keys.X.MustSize()[2]
		flat := keys.X.MustDetach(false).MustView([]int64{int64(b * n), d}, true)
		h = flat.MustIndexSelect(0, idx, true).MustView([]int64{int64(b), int64(newLen), d}, true)
	}
	newAges := make([]int64, 0, b*newLen)
	var spans []float32
	for s, k := range keep {
		for _, i := range k {
			newAges = append(newAges, int64(keys.Ages[s*n+i])+int64(t))
			if keys.Spans != nil {
				spans = append(spans, keys.Spans[s*n+i])
			}
		}
	}
	m.Dropped += int64(b*n - b*newLen)
	m.dropKV()
	if keys.K != nil {
		if b != 1 {
			panic(fmt.Sprintf("expirespan: a decoding cache for %d streams", b))
		}
		k, v := keys.K, keys.V
		if idx != nil {
			k, v = k.MustIndexSelect(2, idx, true), v.MustIndexSelect(2, idx, true)
		}
		m.K, m.V, m.Spans, m.kv = k, v, spans, true
	}
	if m.H != nil {
		m.H.MustDrop()
	}
	m.H, m.Ages, m.Len = h, newAges, newLen
}

// MeanAge is for statistics: the mean age of the memory's keys.
func (m *Memory) MeanAge() float64 {
	if len(m.Ages) == 0 {
		return 0
	}
	var s int64
	for _, a := range m.Ages {
		s += a
	}
	return float64(s) / float64(len(m.Ages))
}

// HasKV tells whether the decoding cache (keys, values, spans) is filled.
func (m *Memory) HasKV() bool { return m.kv }

// SetKV fills the decoding cache from keys, values and spans computed for the memory's
// hidden states (batch 1).
func (m *Memory) SetKV(k, v *ts.Tensor, spans []float32) {
	m.dropKV()
	m.K, m.V, m.Spans, m.kv = k, v, spans, true
}

func (m *Memory) dropKV() {
	if m.K != nil {
		m.K.MustDrop()
	}
	if m.V != nil {
		m.V.MustDrop()
	}
	m.K, m.V, m.Spans, m.kv = nil, nil, nil, false
}
