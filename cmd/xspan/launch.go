package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"xspan/dist"
)

// launchLocal is xspan train --nproc N: it starts N copies of the same command as ranks
// 0..N-1 on this machine, with the environment a launcher such as torchrun gives
// (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1, a free MASTER_PORT), and waits.
// The workers run in a process group of their own: Ctrl-C reaches this launcher only,
// which passes it on once to every worker (they stop after the same step and rank 0
// writes one checkpoint); a second Ctrl-C kills them. When a worker fails, the others
// get grace to report their own error, then are killed.
//
// The launcher's exit status is the one a signal gives any command (128 + its number):
// the signal caught is passed on as it is, and the ranks stop as on their own.
func launchLocal(e *env, nproc int, args []string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("--nproc: no free port on 127.0.0.1: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	child := append([]string{"train"}, withoutFlag(args, "nproc")...)
	cmds := make([]*exec.Cmd, nproc)
	for r := range cmds {
		cmd := exec.Command(exe, child...)
		cmd.Env = append(envWithout(os.Environ(), "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"),
			fmt.Sprintf("RANK=%d", r), fmt.Sprintf("WORLD_SIZE=%d", nproc), fmt.Sprintf("LOCAL_RANK=%d", r),
			"MASTER_ADDR=127.0.0.1", fmt.Sprintf("MASTER_PORT=%d", port))
		cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, childWriter(e.stdout), childWriter(e.stderr)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			for _, c := range cmds[:r] {
				c.Process.Kill()
			}
			return fmt.Errorf("--nproc: starting rank %d: %v", r, err)
		}
		cmds[r] = cmd
	}
	pids := ""
	for _, c := range cmds {
		pids += fmt.Sprintf(" %d", c.Process.Pid)
	}
	fmt.Fprintf(e.stderr, "launched %d ranks on 127.0.0.1:%d (pids%s)\n", nproc, port, pids)

	type exit struct {
		rank, code int
	}
	exits := make(chan exit, nproc)
	for r, c := range cmds {
		go func() {
			err := c.Wait()
			code := 0
			if err != nil {
				code = 1
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					code = ee.ExitCode()
					if code < 0 {
						code = 128 + int(ee.Sys().(syscall.WaitStatus).Signal())
					}
				}
			}
			exits <- exit{r, code}
		}()
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, signals...)
	defer signal.Stop(sigs)
	var once sync.Once
	killAll := func() {
		for _, c := range cmds {
			c.Process.Signal(syscall.SIGKILL)
		}
	}
	var kill <-chan time.Time
	interrupts := 0
	caught := syscall.SIGINT
	firstFail := -1
	codes := make([]int, nproc)
	for left := nproc; left > 0; {
		select {
		case e := <-exits:
			left--
			codes[e.rank] = e.code
			if e.code != 0 && firstFail < 0 && interrupts == 0 {
				firstFail = e.rank
				once.Do(func() { kill = time.After(10 * time.Second) })
			}
		case s := <-sigs:
			interrupts++
			if interrupts == 1 {
				if n, ok := s.(syscall.Signal); ok {
					caught = n
				}
				e.caught.Store(int32(caught))
				fmt.Fprintf(e.stderr, "launcher: %v: passing it on to the %d ranks (again to kill them)\n", s, nproc)
				for _, c := range cmds {
					c.Process.Signal(caught)
				}
			} else {
				killAll()
			}
		case <-kill:
			fmt.Fprintf(e.stderr, "launcher: rank %d failed; killing the ranks still running\n", firstFail)
			killAll()
		}
	}
	if interrupts > 0 {
		if codes[0] == 128+int(caught) || codes[0] == 0 {
			return fmt.Errorf("%w: the %d ranks stopped (rank 0 wrote the checkpoint; continue with --resume --nproc %d)", errInterrupted, nproc, nproc)
		}
		return fmt.Errorf("%w: rank 0 exited with status %d", errInterrupted, codes[0])
	}
	var bad []string
	for r, c := range codes {
		if c != 0 {
			bad = append(bad, fmt.Sprintf("rank %d: status %d", r, c))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("distributed run failed (%s)", strings.Join(bad, ", "))
	}
	return nil
}

// childWriter is what a rank writes to for w: the file itself when w is one (so that rank
// 0's progress bar still sees a terminal), else w.
func childWriter(w io.Writer) io.Writer {
	if ew, ok := w.(*exitWriter); ok {
		if f, ok := ew.w.(*os.File); ok {
			return f
		}
	}
	return w
}

// withoutFlag removes -name/--name (with its value) from args.
func withoutFlag(args []string, name string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		trimmed := strings.TrimLeft(a, "-")
		if strings.HasPrefix(a, "-") && (trimmed == name || strings.HasPrefix(trimmed, name+"=")) {
			if trimmed == name && i+1 < len(args) {
				i++
			}
			continue
		}
		out = append(out, a)
	}
	return out
}

func envWithout(env []string, names ...string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, n := range names {
			drop = drop || k == n
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}

// joinFromEnv joins the process group that the launcher's environment describes, if any.
func joinFromEnv(ctx context.Context, cuda bool, device int, timeout time.Duration) (*dist.Group, error) {
	c, ok, err := dist.FromEnv()
	if err != nil || !ok {
		return nil, err
	}
	c.Timeout = timeout
	if cuda {
		c.Backend, c.Device = dist.NCCL, device
	}
	return dist.Join(c)
}
