package train

import (
	"bytes"
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

// Data-parallel training (WithGroup): every rank runs this same trainer over its share of
// the global batch, the reference's split: rank r owns streams [r·B/W, (r+1)·B/W) of the
// B streams, in Accumulate micro-batches with a memory each, draws its own span noise and
// dropout (per stream group, see groupSeed) and prunes its own memory rectangles. Per
// step the ranks all-reduce the gradients (averaged, so the update is the one a single
// process with W·Accumulate micro-batches takes) and a few figures: the losses, whether
// a rank met a non-finite loss, whether a rank was asked to stop. Rank 0 alone validates
// (the others wait in a heartbeat), writes metrics and checkpoints, gathering every
// rank's memories first; the random state needs no gathering, being a function of the
// step and the stream group.

// WithGroup trains as one rank of a joined process group (see package dist). Every rank
// must be given the same config; rank 0's is used.
func WithGroup(g *dist.Group) Option {
	return func(o *options) error { o.group = g; return nil }
}

// describeLayout says how a checkpoint's stream groups were run.
func describeLayout(h *checkpoint.Header) string {
	if h.World > 1 {
		return fmt.Sprintf("%d ranks × accumulate %d", h.World, h.Memories/h.World)
	}
	return fmt.Sprintf("one process, accumulate %d", h.Memories)
}

// startMsg is what rank 0 tells the others before setting up: the config, the header of
// the checkpoint to resume, or why it cannot start.
type startMsg struct {
	Config lm.Config          `json:"config"`
	Header *checkpoint.Header `json:"header,omitempty"`
	Err    string             `json:"err,omitempty"`
}

// setupDist sets a rank up: rank 0's config and resume header go to every rank, each sets
// itself up, they agree that all did, rank 0 writes the run folder, and rank 0's state (weights, and when resuming the
// optimizer and the other ranks' memories) goes to the others.
func (t *trainer) setupDist(cfg lm.Config, dataDir string) error {
	g := t.o.group
	var msg startMsg
	var resumeDir string
	var blob []byte
	if t.rank == 0 {
		hdr, dir, err := t.start()
		msg = startMsg{Config: cfg, Header: hdr}
		if err != nil {
			msg.Err = err.Error()
		}
		resumeDir = dir
		if blob, err = json.Marshal(msg); err != nil {
			return err
		}
	}
	blob, err := g.BroadcastBytes(blob, 0)
	if err != nil {
		return err
	}
	if t.rank != 0 {
		if err := json.Unmarshal(blob, &msg); err != nil {
			return fmt.Errorf("rank %d: rank 0's start message: %w", t.rank, err)
		}
	}
	if msg.Err != "" {
		if t.rank == 0 {
			return errors.New(msg.Err)
		}
		return fmt.Errorf("rank 0 could not start: %s", msg.Err)
	}
	lerr := t.setupLocal(msg.Config, dataDir, msg.Header, resumeDir)
	failed := 0.0
	if lerr != nil {
		failed = 1
	}
	s, err := g.SumFloat64([]float64{failed})
	if err != nil {
		return errors.Join(lerr, err)
	}
	if lerr != nil {
		return lerr
	}
	if s[0] > 0 {
		return fmt.Errorf("rank %d: %v other rank(s) failed to set up (see their output)", t.rank, s[0])
	}
	// Every rank is set up: only now does rank 0 write the run folder. If that fails, the
	// others stop at the next bounded wait.
	if t.rank == 0 {
		if err := t.openRun(msg.Header); err != nil {
			return err
		}
	}
	return t.shareState(msg.Header != nil)
}

// shareState sends rank 0's weights to every rank and, when resuming, its optimizer state
// and each rank's memories.
func (t *trainer) shareState(resumed bool) error {
	g := t.o.group
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
	s, err := g.SumFloat64([]float64{float64(t.opt.step) * b2f(t.rank == 0)})
	if err != nil {
		return err
	}
	t.opt.step = int64(s[0])
	for r := 1; r < t.world; r++ {
		var b []byte
		if t.rank == 0 {
			b = t.pending[r]
		}
		got, err := g.BroadcastBytes(b, 0)
		if err != nil {
			return err
		}
		if t.rank == r {
			mems, err := unpackMemories(t.model, got)
			if err != nil {
				return fmt.Errorf("rank %d: memories from rank 0: %w", t.rank, err)
			}
			for _, m := range mems {
				if m.Batch() != t.groupStreams() {
					return fmt.Errorf("rank %d: a memory of %d streams from rank 0, want %d", t.rank, m.Batch(), t.groupStreams())
				}
			}
			t.mems = mems
		}
	}
	t.pending = nil
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// reduceStep agrees on a step over the ranks: the losses and statistics are averaged,
// a non-finite loss or a stop request anywhere is everyone's, and the gradients are
// averaged (unless the step is to be dropped).
func (t *trainer) reduceStep(out *stepOut) error {
	g := t.o.group
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
	W := float64(t.world)
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
			return fmt.Errorf("step %d: parameter %d has a gradient on %v of %d ranks", t.step+1, i, n, t.world)
		}
	}
	if err := g.AllReduce(reduce, true); err != nil {
		return err
	}
	out.reduceSecs = time.Since(t0).Seconds()
	return nil
}

// gatherMemories returns, on rank 0, every rank's memories in stream order (its own
// first: the caller frees the others); on other ranks it sends theirs and returns nil.
func (t *trainer) gatherMemories() ([]*lm.Memory, error) {
	g := t.o.group
	var b []byte
	if t.rank != 0 {
		var err error
		if b, err = packMemories(t.mems); err != nil {
			return nil, err
		}
	}
	all, err := g.GatherBytes(b, 0)
	if err != nil || t.rank != 0 {
		return nil, err
	}
	mems := append([]*lm.Memory{}, t.mems...)
	for r := 1; r < t.world; r++ {
		ms, err := unpackMemories(t.model, all[r])
		if err != nil {
			for _, m := range mems[len(t.mems):] {
				m.Drop()
			}
			return nil, fmt.Errorf("memories of rank %d: %w", r, err)
		}
		mems = append(mems, ms...)
	}
	return mems, nil
}

// validShared validates on rank 0 while the other ranks wait, and gives every rank the
// bpc (the others get a Result holding only it). canceled says rank 0 was interrupted.
func (t *trainer) validShared(run func() (*validOut, error)) (*validOut, error) {
	g := t.o.group
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
	if t.rank == 0 {
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
	if t.rank != 0 {
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
