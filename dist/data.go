package dist

import (
	"fmt"
	"runtime"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// onDev makes a tensor of vals on the group's device.
func (g *Group) onDev(vals any) (*ts.Tensor, error) {
	t, err := ts.OfSlice(vals)
	if err != nil {
		return nil, err
	}
	if g.Dev != gotch.CPU {
		t = t.MustTo(g.Dev, true)
	}
	return t, nil
}

// SumFloat64 returns the element-wise sum of every rank's xs (all of one length).
func (g *Group) SumFloat64(xs []float64) ([]float64, error) {
	t, err := g.onDev(append([]float64(nil), xs...))
	if err != nil {
		return nil, err
	}
	defer t.MustDrop()
	if err := g.AllReduce([]*ts.Tensor{t}, false); err != nil {
		return nil, err
	}
	c := t.MustTo(gotch.CPU, false)
	defer c.MustDrop()
	out := make([]float64, len(xs))
	c.MustCopyData(out, uint(len(xs)))
	return out, nil
}

// BroadcastBytes returns root's b on every rank (b is ignored elsewhere).
func (g *Group) BroadcastBytes(b []byte, root int) ([]byte, error) {
	n := make([]float64, 1)
	if g.Rank == root {
		n[0] = float64(len(b))
	}
	sz, err := g.SumFloat64(n)
	if err != nil {
		return nil, err
	}
	size := int(sz[0])
	if size == 0 {
		return []byte{}, nil
	}
	buf := make([]uint8, size)
	if g.Rank == root {
		copy(buf, b)
	}
	t, err := g.onDev(buf)
	if err != nil {
		return nil, err
	}
	defer t.MustDrop()
	if err := g.Broadcast([]*ts.Tensor{t}, root); err != nil {
		return nil, err
	}
	if g.Rank == root {
		return b, nil
	}
	c := t.MustTo(gotch.CPU, false)
	defer c.MustDrop()
	c.MustCopyData(buf, uint(size))
	return buf, nil
}

// GatherBytes returns, on root, every rank's b in rank order (nil elsewhere).
func (g *Group) GatherBytes(b []byte, root int) ([][]byte, error) {
	var out [][]byte
	if g.Rank == root {
		out = make([][]byte, g.World)
	}
	for r := 0; r < g.World; r++ {
		if r == root {
			if out != nil {
				out[r] = b
			}
			continue
		}
		got, err := g.BroadcastBytes(b, r)
		if err != nil {
			return nil, err
		}
		if out != nil {
			out[r] = got
		}
	}
	return out, nil
}

// While runs work on root while the other ranks wait for it, all of them taking part in a
// heartbeat collective every interval: a rank that dies or hangs meanwhile still makes
// the others fail within the timeout, however long the work takes (a validation on rank
// 0). work's error goes to every rank. Root's heartbeats run on a goroutine of their
// own, holding its OS thread; work must make no collective call.
func (g *Group) While(root int, interval time.Duration, work func() error) error {
	beat := func(done bool, failed bool) (bool, bool, error) {
		v := []float64{0, 0}
		if done {
			v[0] = 1
		}
		if failed {
			v[1] = 1
		}
		s, err := g.SumFloat64(v)
		if err != nil {
			return false, false, err
		}
		return s[0] > 0, s[1] > 0, nil
	}
	if g.Rank != root {
		for {
			done, failed, err := beat(false, false)
			if err != nil {
				return err
			}
			if done {
				if failed {
					return fmt.Errorf("rank %d failed while the others waited for it", root)
				}
				return nil
			}
		}
	}
	result := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		result <- work()
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var werr error
	finished := false
	for {
		if !finished {
			select {
			case werr = <-result:
				finished = true
			case <-tick.C:
			}
		}
		_, _, err := beat(finished, finished && werr != nil)
		if err != nil {
			if !finished {
				<-result
			}
			return err
		}
		if finished {
			return werr
		}
	}
}
