// Package dist runs data-parallel training over libtorch's own distributed engine, c10d:
// a process group of Gloo (CPUs) or NCCL (CUDA) joined through a TCPStore rendezvous,
// as PyTorch's torch.distributed does, started by any launcher that sets the standard
// environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT: torchrun, SLURM
// scripts) or by xspan itself (xspan train --nproc N).
//
// Every call of a Group is a collective: each rank must make the same calls in the same
// order, and each waits at most the group's timeout for the others, failing with an
// error that says which operation did not complete (a rank that died or hangs), never
// hanging. The calls must come from a goroutine that holds its OS thread.
package dist

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"xspan/internal/native"
)

// Backend is a c10d process-group backend.
type Backend int

const (
	Gloo Backend = native.Gloo // CPUs (and CPU tensors)
	NCCL Backend = native.NCCL // CUDA devices (CUDA tensors)
)

func (b Backend) String() string {
	if b == NCCL {
		return "nccl"
	}
	return "gloo"
}

// Available reports whether the native library was built with the backend.
func Available(b Backend) bool { return native.DistAvailable(int(b)) }

// DefaultTimeout bounds the rendezvous and every collective unless the user sets another.
const DefaultTimeout = 10 * time.Minute

// DefaultPort is torch.distributed's default MASTER_PORT.
const DefaultPort = 29500

// Config says how a process joins its group.
type Config struct {
	Rank, World, LocalRank int
	Addr                   string // MASTER_ADDR: where rank 0 serves the TCPStore
	Port                   int    // MASTER_PORT
	Backend                Backend
	Timeout                time.Duration
	Device                 int // the CUDA device of an NCCL rank
}

// FromEnv reads the launcher's environment: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR
// and MASTER_PORT as torchrun sets them, with SLURM's SLURM_PROCID, SLURM_NTASKS and
// SLURM_LOCALID standing in for the first three where they are absent. ok is false when
// no world size is set (a single process).
func FromEnv() (c Config, ok bool, err error) {
	get := func(names ...string) (string, string) {
		for _, n := range names {
			if v := strings.TrimSpace(os.Getenv(n)); v != "" {
				return n, v
			}
		}
		return "", ""
	}
	num := func(def int, names ...string) (int, error) {
		n, v := get(names...)
		if n == "" {
			return def, nil
		}
		x, err := strconv.Atoi(v)
		if err != nil || x < 0 {
			return 0, fmt.Errorf("environment %s=%q: want a number ≥ 0", n, v)
		}
		return x, nil
	}
	if n, _ := get("WORLD_SIZE", "SLURM_NTASKS"); n == "" {
		return Config{}, false, nil
	}
	c = Config{Addr: "127.0.0.1", Port: DefaultPort, Timeout: DefaultTimeout}
	if c.World, err = num(1, "WORLD_SIZE", "SLURM_NTASKS"); err != nil {
		return c, false, err
	}
	if c.Rank, err = num(-1, "RANK", "SLURM_PROCID"); err != nil {
		return c, false, err
	}
	if c.Rank < 0 {
		return c, false, errors.New("environment: WORLD_SIZE is set but RANK is not")
	}
	if c.LocalRank, err = num(c.Rank, "LOCAL_RANK", "SLURM_LOCALID"); err != nil {
		return c, false, err
	}
	if _, v := get("MASTER_ADDR"); v != "" {
		c.Addr = v
	} else if c.World > 1 && os.Getenv("SLURM_NTASKS") != "" && os.Getenv("SLURM_NNODES") != "" && os.Getenv("SLURM_NNODES") != "1" {
		return c, false, errors.New("environment: a SLURM launch over several nodes needs MASTER_ADDR (the first node's address)")
	}
	if c.Port, err = num(DefaultPort, "MASTER_PORT"); err != nil {
		return c, false, err
	}
	if c.World < 1 || c.Rank >= c.World {
		return c, false, fmt.Errorf("environment: RANK %d outside WORLD_SIZE %d", c.Rank, c.World)
	}
	return c, true, nil
}

// Group is a joined process group.
type Group struct {
	p       *native.Group
	Rank    int
	World   int
	Backend Backend
	Timeout time.Duration
	// Dev is where the group's collectives take their tensors (the CPU for Gloo).
	Dev gotch.Device
	// Bucket is the size of the all-reduce buckets in bytes (default 25 MiB, DDP's).
	Bucket int64
}

// Join joins the group that c describes: rank 0 serves the TCPStore, the others connect
// to it within c.Timeout.
func Join(c Config) (*Group, error) {
	if !Available(c.Backend) {
		what := "gloo's headers (Debian: apt-get install libgloo-dev) at build time"
		if c.Backend == NCCL {
			what = "a CUDA libtorch and nccl.h at build time"
		}
		return nil, fmt.Errorf("distributed training: the native library was built without %s; it needs %s", c.Backend, what)
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	p, err := native.NewGroup(int(c.Backend), c.Addr, c.Port, c.Rank, c.World, c.Timeout.Milliseconds(), c.Device)
	if err != nil {
		return nil, fmt.Errorf("rank %d of %d: joining the %s group at %s:%d: %w", c.Rank, c.World, c.Backend, c.Addr, c.Port, err)
	}
	g := &Group{p: p, Rank: c.Rank, World: c.World, Backend: c.Backend, Timeout: c.Timeout, Dev: gotch.CPU, Bucket: 25 << 20}
	if c.Backend == NCCL {
		g.Dev = gotch.CudaBuilder(uint(c.Device))
	}
	return g, nil
}

// Close leaves the group. After a failed collective it does nothing: the peers may be
// gone, and the process is about to exit.
func (g *Group) Close() {
	if g == nil || g.p == nil {
		return
	}
	g.p.Free() // its error: a peer already gone
	g.p = nil
}

// Abandon forgets the group without the clean-up that could wait on dead peers.
func (g *Group) Abandon() {
	if g != nil {
		g.p = nil
	}
}

func (g *Group) fail(what string, err error) error {
	return fmt.Errorf("rank %d of %d: %s failed (a rank died, hung or stopped, or the %v timeout passed): %w", g.Rank, g.World, what, g.Timeout, err)
}

// AllReduce sums tensors in place over the ranks, or averages them, in buckets of about
// g.Bucket bytes whose reductions run at once.
func (g *Group) AllReduce(tensors []*ts.Tensor, average bool) error {
	if err := g.p.AllReduce(tensors, average, g.Bucket); err != nil {
		return g.fail("all-reduce", err)
	}
	return nil
}

// Broadcast copies root's tensors into every other rank's (of the same shapes).
func (g *Group) Broadcast(tensors []*ts.Tensor, root int) error {
	if err := g.p.Broadcast(tensors, root, g.Bucket); err != nil {
		return g.fail("broadcast", err)
	}
	return nil
}

// Barrier returns when every rank has called it.
func (g *Group) Barrier() error {
	if err := g.p.Barrier(); err != nil {
		return g.fail("barrier", err)
	}
	return nil
}
