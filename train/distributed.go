package train

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/sugarme/gotch/ts"

	"xspan/checkpoint"
	"xspan/dist"
	"xspan/internal/safetensors"
	"xspan/internal/torchrt"
	"xspan/lm"
)

// Data-parallel training (WithGroup): every rank runs the same trainer over its share of
// the global batch, the reference's split: rank r owns streams [r·B/W, (r+1)·B/W) of the
// B streams, in Accumulate micro-batches with a memory each, draws its own span noise and
// dropout (per stream group, see groupSeed) and prunes its own memory rectangles. Per
// step the ranks all-reduce the gradients (averaged, so the update is the one a single
// process with W·Accumulate micro-batches takes) and a few figures: the losses, whether
// a rank met a non-finite loss, whether a rank was asked to stop. Rank 0 alone validates
// (the others wait in a heartbeat), writes metrics and checkpoints, gathering every
// rank's memories first; the random state needs no gathering, being a function of the
// step and the stream group. ranks is the world (world.go) that does this.

// WithGroup trains as one rank of a joined process group (see package dist). Every rank
// must be given the same config; rank 0's is used.
func WithGroup(g *dist.Group) Option {
	return func(o *options) error { o.world = &ranks{g: g}; return nil }
}

// describeLayout says how a checkpoint's stream groups were run.
func describeLayout(h *checkpoint.Header) string {
	if h.World > 1 {
		return fmt.Sprintf("%d ranks × accumulate %d", h.World, h.Memories/h.World)
	}
	return fmt.Sprintf("one process, accumulate %d", h.Memories)
}

// ranks is one rank of a process group.
type ranks struct {
	g       *dist.Group
	pending [][]byte // on rank 0 of a resume: each other rank's memories, packed (hold)
}

func (w *ranks) rank() int { return w.g.Rank }
func (w *ranks) size() int { return w.g.World }

func (w *ranks) describe(t *trainer) string {
	return fmt.Sprintf("distributed: %d ranks (%s), %d streams each in %d micro-batches; timeout %v", w.g.World, w.g.Backend, t.cfg.Batch/w.g.World, t.groups, w.g.Timeout)
}

func (w *ranks) stopBeforeStep(context.Context) bool { return false }

// startMsg is what rank 0 tells the others before setting up: the config, the header of
// the checkpoint to resume, or why it cannot start.
type startMsg struct {
	Config lm.Config          `json:"config"`
	Header *checkpoint.Header `json:"header,omitempty"`
	Err    string             `json:"err,omitempty"`
}

func (w *ranks) start(cfg lm.Config, begin func() (*checkpoint.Header, string, error)) (lm.Config, *checkpoint.Header, string, error) {
	var msg startMsg
	var resumeDir string
	var blob []byte
	var startErr error
	if w.g.Rank == 0 {
		var hdr *checkpoint.Header
		hdr, resumeDir, startErr = begin()
		msg = startMsg{Config: cfg, Header: hdr}
		if startErr != nil {
			msg.Err = startErr.Error()
		}
		var err error
		if blob, err = json.Marshal(msg); err != nil {
			return cfg, nil, "", err
		}
	}
	blob, err := w.g.BroadcastBytes(blob, 0)
	if err != nil {
		return cfg, nil, "", err
	}
	if w.g.Rank != 0 {
		if err := json.Unmarshal(blob, &msg); err != nil {
			return cfg, nil, "", fmt.Errorf("rank %d: rank 0's start message: %w", w.g.Rank, err)
		}
	}
	switch {
	case startErr != nil:
		return cfg, nil, "", startErr
	case msg.Err != "":
		return cfg, nil, "", fmt.Errorf("rank 0 could not start: %s", msg.Err)
	}
	return msg.Config, msg.Header, resumeDir, nil
}

func (w *ranks) agree(setupErr error) error {
	s, err := w.g.SumFloat64([]float64{b2f(setupErr != nil)})
	if err != nil {
		return errors.Join(setupErr, err)
	}
	if setupErr != nil {
		return setupErr
	}
	if s[0] > 0 {
		return fmt.Errorf("rank %d: %v other rank(s) failed to set up (see their output)", w.g.Rank, s[0])
	}
	return nil
}

func (w *ranks) hold(mems []*lm.Memory) error {
	defer dropMemories(mems)
	per := len(mems) / (w.g.World - 1)
	w.pending = make([][]byte, w.g.World)
	for r := 1; r < w.g.World; r++ {
		b, err := packMemories(mems[(r-1)*per : r*per])
		if err != nil {
			return err
		}
		w.pending[r] = b
	}
	return nil
}

func (w *ranks) share(t *trainer, resumed bool) error {
	g := w.g
	defer torchrt.NoGrad()() // the parameters are overwritten in place
	if err := g.Broadcast(t.model.Parameters(), 0); err != nil {
		return err
	}
	if !resumed {
		return nil
	}
	if err := g.Broadcast(append(append([]*ts.Tensor{}, t.opt.m...), t.opt.v...), 0); err != nil {
		return err
	}
	s, err := g.SumFloat64([]float64{float64(t.opt.step) * b2f(g.Rank == 0)})
	if err != nil {
		return err
	}
	t.opt.step = int64(s[0])
	for r := 1; r < g.World; r++ {
		var b []byte
		if g.Rank == 0 {
			b = w.pending[r]
		}
		got, err := g.BroadcastBytes(b, 0)
		if err != nil {
			return err
		}
		if g.Rank == r {
			mems, err := unpackMemories(t.model, got)
			if err != nil {
				return fmt.Errorf("rank %d: memories from rank 0: %w", g.Rank, err)
			}
			for _, m := range mems {
				if m.Batch() != t.groupStreams() {
					dropMemories(mems)
					return fmt.Errorf("rank %d: a memory of %d streams from rank 0, want %d", g.Rank, m.Batch(), t.groupStreams())
				}
			}
			t.mems = mems
		}
	}
	w.pending = nil
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (w *ranks) reduceStep(t *trainer, out *stepOut) error {
	g := w.g
	params := t.model.Parameters()
	// Every rank sends as many figures: a rank whose step went wrong before its first
	// micro-step finished has no statistics yet.
	L := t.cfg.Layers
	if len(out.stats.MeanSpan) != L || len(out.stats.MaxSpan) != L || len(out.stats.Live) != L {
		out.stats = lm.Stats{MeanSpan: make([]float64, L), MaxSpan: make([]float64, L), Live: make([]float64, L)}
	}
	const head = 5
	v := make([]float64, 0, head+2*L+len(params))
	stop := t.ctx != nil && t.ctx.Err() != nil
	v = append(v, out.loss, out.span, b2f(stop), b2f(out.bad != nil && !out.failed), b2f(out.failed))
	v = append(v, out.stats.MeanSpan...)
	v = append(v, out.stats.Live...)
	grads := make([]*ts.Tensor, len(params))
	defer func() {
		for _, gr := range grads {
			if gr != nil {
				gr.MustDrop()
			}
		}
	}()
	for i, p := range params {
		gr := p.MustGrad(false)
		if gr.MustDefined() {
			grads[i] = gr
		} else {
			gr.MustDrop()
		}
		v = append(v, b2f(grads[i] != nil))
	}
	t0 := time.Now()
	s, err := g.SumFloat64(v)
	if err != nil {
		return err
	}
	W := float64(g.World)
	out.loss, out.span, out.stop = s[0]/W, s[1]/W, s[2] > 0
	switch {
	case out.bad != nil:
	case s[4] > 0:
		// A failed op fails the step on every rank (as on one process, where the run stops
		// with the error and the last checkpoint stands).
		out.bad = fmt.Errorf("a micro-step failed on %v other rank(s) (see their output): %w", s[4], torchrt.ErrLibtorch)
	case s[3] > 0:
		out.bad = fmt.Errorf("step %d: a non-finite loss on another rank: %w", t.step+1, ErrNonFinite)
	}
	if out.bad != nil {
		// The step is dropped: its gradients (partial where a micro-step failed) are not
		// reduced.
		out.reduceSecs = time.Since(t0).Seconds()
		return nil
	}
	for l := 0; l < L; l++ {
		out.stats.MeanSpan[l] = s[head+l] / W
		out.stats.Live[l] = s[head+L+l] / W
	}
	var reduce []*ts.Tensor
	for i := range params {
		switch n := s[head+2*L+i]; {
		case n == W:
			reduce = append(reduce, grads[i])
		case n > 0:
			return fmt.Errorf("step %d: parameter %d has a gradient on %v of %d ranks", t.step+1, i, n, g.World)
		}
	}
	if err := g.AllReduce(reduce, true); err != nil {
		return err
	}
	out.reduceSecs = time.Since(t0).Seconds()
	return nil
}

func (w *ranks) gather(t *trainer) ([]*lm.Memory, func(), error) {
	g := w.g
	var b []byte
	if g.Rank != 0 {
		var err error
		if b, err = packMemories(t.mems); err != nil {
			return nil, nil, err
		}
	}
	all, err := g.GatherBytes(b, 0)
	if err != nil || g.Rank != 0 {
		return nil, nil, err
	}
	mems := append([]*lm.Memory{}, t.mems...)
	others := func() { dropMemories(mems[len(t.mems):]) }
	for r := 1; r < g.World; r++ {
		ms, err := unpackMemories(t.model, all[r])
		if err != nil {
			others()
			return nil, nil, fmt.Errorf("memories of rank %d: %w", r, err)
		}
		mems = append(mems, ms...)
	}
	return mems, others, nil
}

func (w *ranks) validate(run func() (*validOut, error)) (*validOut, error) {
	g := w.g
	var vo *validOut
	err := g.While(0, 2*time.Second, func() error {
		var err error
		vo, err = run()
		return err
	})
	if err != nil {
		return nil, err
	}
	x := []float64{0, 0}
	if g.Rank == 0 {
		if vo.canceled {
			x[1] = 1
		} else {
			x[0] = vo.v.BPC
		}
	}
	s, err := g.SumFloat64(x)
	if err != nil {
		return nil, err
	}
	if s[1] > 0 {
		return &validOut{canceled: true}, nil
	}
	if g.Rank != 0 {
		vo = &validOut{v: stubResult(s[0])}
	}
	return vo, nil
}

// packMemories serializes memories into one byte slice: each as a safetensors file
// (Memory.Tensors, the form a checkpoint holds, with its data's checksum) prefixed by its
// length.
func packMemories(mems []*lm.Memory) ([]byte, error) {
	var buf bytes.Buffer
	for i, m := range mems {
		named, free := m.Tensors()
		tensors := make([]safetensors.Tensor, 0, len(named))
		var err error
		for _, n := range named {
			var st safetensors.Tensor
			st.Name = n.Name
			if st.DType, st.Shape, st.Data, err = torchrt.Raw(n.Tensor); err != nil {
				err = fmt.Errorf("memory %d: tensor %s: %w", i, n.Name, err)
				break
			}
			tensors = append(tensors, st)
		}
		free()
		if err != nil {
			return nil, err
		}
		var one bytes.Buffer
		if err := safetensors.Encode(&one, tensors, nil); err != nil {
			return nil, fmt.Errorf("memory %d: %w", i, err)
		}
		binary.Write(&buf, binary.LittleEndian, uint64(one.Len()))
		buf.Write(one.Bytes())
	}
	return buf.Bytes(), nil
}

// unpackMemories rebuilds, on m's device, the memories that packMemories serialized.
func unpackMemories(m *lm.Model, b []byte) ([]*lm.Memory, error) {
	var out []*lm.Memory
	fail := func(err error) ([]*lm.Memory, error) {
		dropMemories(out)
		return nil, err
	}
	for i := 0; len(b) > 0; i++ {
		if len(b) < 8 {
			return fail(errors.New("truncated memory bytes"))
		}
		n := binary.LittleEndian.Uint64(b)
		b = b[8:]
		if n > uint64(len(b)) || n > math.MaxInt32*8 {
			return fail(errors.New("truncated memory bytes"))
		}
		f, err := safetensors.Decode(b[:n])
		if err != nil {
			return fail(fmt.Errorf("memory %d: %w", i, err))
		}
		b = b[n:]
		var named []ts.NamedTensor
		for _, st := range f.Tensors {
			x, err := torchrt.FromRaw(st.DType, st.Shape, st.Data, m.Device())
			if err != nil {
				for _, nt := range named {
					nt.Tensor.MustDrop()
				}
				return fail(fmt.Errorf("memory %d: tensor %s: %w", i, st.Name, err))
			}
			named = append(named, ts.NamedTensor{Name: st.Name, Tensor: x})
		}
		mem, err := m.MemoryFrom(named) // takes the tensors
		if err != nil {
			return fail(fmt.Errorf("memory %d: %w", i, err))
		}
		out = append(out, mem)
	}
	return out, nil
}

// dropMemories frees memories.
func dropMemories(mems []*lm.Memory) {
	for _, m := range mems {
		m.Drop()
	}
}
