package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"xspan/checkpoint"
	"xspan/dist"
	"xspan/internal/torchrt"
)

// TestMain lets this test binary stand in for xspan: started with XSPAN_TEST_AS_MAIN=1 it
// runs its arguments as xspan would (what train --nproc starts, and the ranks below).
func TestMain(m *testing.M) {
	if os.Getenv("XSPAN_TEST_AS_MAIN") == "1" {
		defer torchrt.Lock()()
		os.Exit(runMain(&env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// TestCLIDistEnvAndNproc: two ranks started by hand with RANK/WORLD_SIZE/MASTER_* and
// xspan train --nproc 2 train the same model.
func TestCLIDistEnvAndNproc(t *testing.T) {
	if !dist.Available(dist.Gloo) {
		t.Skip("native library built without Gloo")
	}
	dir := t.TempDir()
	data := charData(t, dir)
	args := func(out string) []string {
		return append([]string{"train", "--data", data, "--out", out, "--steps", "4", "--dist-timeout", "1m"}, trainTinyArgs...)
	}
	t.Setenv("XSPAN_TEST_AS_MAIN", "1")

	// By hand, as a launcher would.
	envRun := filepath.Join(dir, "env")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var cmds [2]*exec.Cmd
	var outs [2]strings.Builder
	for r := range cmds {
		cmds[r] = exec.CommandContext(ctx, os.Args[0], args(envRun)...)
		cmds[r].Env = append(os.Environ(), fmt.Sprintf("RANK=%d", r), "WORLD_SIZE=2", fmt.Sprintf("LOCAL_RANK=%d", r),
			"MASTER_ADDR=127.0.0.1", fmt.Sprintf("MASTER_PORT=%d", port))
		cmds[r].Stdout, cmds[r].Stderr = &outs[r], &outs[r]
		if err := cmds[r].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for r, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("rank %d: %v\n%s", r, err, outs[r].String())
		}
	}
	if !strings.Contains(outs[0].String(), "trained "+envRun+": step 4") {
		t.Errorf("rank 0's output:\n%s", outs[0].String())
	}

	// --nproc 2.
	nprocRun := filepath.Join(dir, "nproc")
	code, stdout, stderr := run(t, append(args(nprocRun), "--nproc", "2")...)
	if code != 0 {
		t.Fatalf("--nproc 2: exit %d:\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "launched 2 ranks") || !strings.Contains(stdout, "trained "+nprocRun+": step 4") {
		t.Errorf("--nproc 2 output:\n%s\n%s", stdout, stderr)
	}
	a, err := checkpoint.Latest(envRun)
	if err != nil {
		t.Fatal(err)
	}
	b, err := checkpoint.Latest(nprocRun)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{checkpoint.WeightsName, checkpoint.OptimName, checkpoint.MemoryName(0), checkpoint.MemoryName(1)} {
		x, _ := os.ReadFile(filepath.Join(a, f))
		y, _ := os.ReadFile(filepath.Join(b, f))
		if len(x) == 0 || string(x) != string(y) {
			t.Errorf("%s differs between the environment launch and --nproc (%d vs %d bytes)", f, len(x), len(y))
		}
	}
	rows, _ := checkpoint.ReadMetrics(filepath.Join(nprocRun, checkpoint.MetricsName))
	trainRows := 0
	for _, r := range rows {
		if r.Kind == checkpoint.RowTrain {
			trainRows++
			if r.World != 2 || r.AllReduceMS <= 0 {
				t.Errorf("metrics row of --nproc 2: world %d, all-reduce %v ms", r.World, r.AllReduceMS)
			}
		}
	}
	if trainRows == 0 {
		t.Errorf("no training rows in --nproc 2's metrics: %+v", rows)
	}
}

// TestCLIDistInterrupt: Ctrl-C (SIGINT) on the --nproc launcher stops both ranks after
// the same step, rank 0 writes one checkpoint, and --resume --nproc 2 continues it.
func TestCLIDistInterrupt(t *testing.T) {
	if !dist.Available(dist.Gloo) {
		t.Skip("native library built without Gloo")
	}
	dir := t.TempDir()
	data := charData(t, dir)
	out := filepath.Join(dir, "run")
	args := append([]string{"train", "--data", data, "--out", out, "--steps", "100000", "--nproc", "2", "--log-every", "1"}, trainTinyArgs...)
	args = append(args, "--eval-every", "0", "--ckpt-every", "0")
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "XSPAN_TEST_AS_MAIN=1")
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		rows, _ := checkpoint.ReadMetrics(filepath.Join(out, checkpoint.MetricsName))
		if len(rows) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no training after 2 minutes:\n%s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("still running a minute after Ctrl-C:\n%s", log.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Fatalf("exit %d after Ctrl-C, want 130:\n%s", code, log.String())
	}
	steps, err := checkpoint.Steps(out)
	if err != nil || len(steps) != 1 {
		t.Fatalf("checkpoints after Ctrl-C: %v %v\n%s", steps, err, log.String())
	}
	if n := strings.Count(log.String(), "interrupted: writing a checkpoint"); n != 1 {
		t.Errorf("%d checkpoint notes after Ctrl-C, want 1:\n%s", n, log.String())
	}
	t.Setenv("XSPAN_TEST_AS_MAIN", "1")
	code, stdout, stderr := run(t, "train", "--out", out, "--resume", "--nproc", "2", "--steps", fmt.Sprint(steps[0]+2), "--no-bar", "--threads", "1", "--device", "cpu")
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("step %d", steps[0]+2)) {
		t.Fatalf("resume after Ctrl-C: exit %d:\n%s\n%s", code, stdout, stderr)
	}
}
