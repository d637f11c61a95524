package main

// The fault suite of issue 17: the real binary killed with SIGKILL while it writes and
// prunes checkpoints and while it prepares a dataset, a training run on a full file
// system, and damaged checkpoint files given to the commands. Every case is bounded (a
// few kills, each within seconds).

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"xspan/checkpoint"
)

var (
	faultBinOnce sync.Once
	faultBin     string
	faultBinErr  error
)

// binary builds the xspan binary once for the fault tests.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	faultBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "xspan-fault-bin-")
		if err != nil {
			faultBinErr = err
			return
		}
		faultBin = filepath.Join(dir, "xspan")
		if out, err := exec.Command("go", "build", "-o", faultBin, ".").CombinedOutput(); err != nil {
			faultBinErr = err
			faultBin = string(out)
		}
	})
	if faultBinErr != nil {
		t.Fatalf("go build: %v\n%s", faultBinErr, faultBin)
	}
	return faultBin
}

// faultArgs train a model large enough that writing its checkpoint takes a while (about
// 1.3 MB of tensors), with a checkpoint and a prune every step.
func faultArgs(data, out string, steps string) []string {
	return []string{"train", "--data", data, "--out", out, "--steps", steps, "--preset", "tiny", "--device", "cpu",
		"--threads", "1", "--no-bar", "--batch", "2", "--block", "8", "--eval-every", "0", "--ckpt-every", "1", "--keep", "1",
		"--set", "layers=2", "--set", "dim=96", "--set", "heads=2", "--set", "ffn=192", "--set", "max_span=32", "--set", "ramp=4"}
}

// resumeArgs continue a run of faultArgs.
func resumeArgs(out, steps string) []string {
	return []string{"train", "--out", out, "--resume", "--steps", steps, "--device", "cpu", "--threads", "1", "--no-bar", "--keep", "1"}
}

// faultData prepares a small char dataset in dir.
func faultData(t *testing.T, dir string) string {
	t.Helper()
	in := filepath.Join(dir, "corpus.txt")
	os.WriteFile(in, testText(), 0o644)
	data := filepath.Join(dir, "data")
	if code, _, stderr := run(t, "prep", "--input", in, "--out", data, "--vocab", "char"); code != 0 {
		t.Fatalf("prep: %s", stderr)
	}
	return data
}

// checkRun asserts that every checkpoint a run lists is whole and that nothing but
// checkpoints (and what a killed run leaves for Clean) is in its checkpoints folder.
func checkRun(t *testing.T, run string) []int64 {
	t.Helper()
	steps, err := checkpoint.Steps(run)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if err := checkpoint.Verify(checkpoint.StepDir(run, s)); err != nil {
			t.Fatalf("listed checkpoint %d is not whole: %v", s, err)
		}
	}
	return steps
}

// startAndKill starts the binary and kills it with SIGKILL once an entry whose name
// matches appears in watch (or after limit), and reports whether it was there.
func startAndKill(t *testing.T, bin string, args []string, watch string, match func(string) bool, limit time.Duration) (caught bool) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(limit)
	for !caught && time.Now().Before(deadline) {
		select {
		case <-done:
			t.Fatalf("xspan %s ended before it was killed:\n%s", args[0], out.String())
		default:
		}
		ents, _ := os.ReadDir(watch)
		for _, e := range ents {
			if match(e.Name()) {
				caught = true
			}
		}
		time.Sleep(100 * time.Microsecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
	return caught
}

// Killed with SIGKILL while writing checkpoints (.tmp) and while pruning them (.del), a
// run never lists a checkpoint that is not whole, and --resume continues it each time.
func TestFaultKillDuringCheckpointWriteAndPrune(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	data := faultData(t, dir)
	out := filepath.Join(dir, "run")
	ckpts := filepath.Join(out, checkpoint.Dir)
	var caught, kills int
	for i, suffix := range []string{".del", ".tmp", ".del", ".tmp", ".del", ".tmp"} {
		args := faultArgs(data, out, "100000")
		if i > 0 {
			args = resumeArgs(out, "100000")
		}
		if startAndKill(t, bin, args, ckpts, func(name string) bool { return strings.HasSuffix(name, suffix) }, 20*time.Second) {
			caught++
		}
		kills++
		if steps := checkRun(t, out); len(steps) == 0 && i > 0 {
			t.Fatalf("kill %d: no checkpoint listed", kills)
		}
	}
	t.Logf("%d kills, %d of them while a checkpoint was being written or pruned", kills, caught)
	if caught < kills/2 {
		t.Errorf("only %d of %d kills landed while a checkpoint was being written or pruned", caught, kills)
	}
	before := checkRun(t, out)
	last := before[len(before)-1]
	cmd := exec.Command(bin, resumeArgs(out, itoa(last+2))...)
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("final resume: %v\n%s", err, o)
	}
	if steps := checkRun(t, out); steps[len(steps)-1] != last+2 {
		t.Fatalf("after the final resume: checkpoints %v, want the last at %d", steps, last+2)
	}
	ents, _ := os.ReadDir(ckpts)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".") {
			t.Errorf("left in %s: %s", ckpts, e.Name())
		}
	}
}

// A prep killed with SIGKILL leaves its hidden temporary folder; the next prep to the same
// --out removes it.
func TestFaultKilledPrepIsCleanedUp(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "big.txt")
	os.WriteFile(in, bytes.Repeat(testText(), 200), 0o644) // 12 MB
	out := filepath.Join(dir, "ds")
	for k := 0; k < 2; k++ {
		if !startAndKill(t, bin, []string{"prep", "--input", in, "--out", out, "--vocab", "char"}, dir,
			func(name string) bool { return strings.HasPrefix(name, ".ds.tmp-") }, 20*time.Second) {
			t.Fatal("no temporary folder appeared")
		}
	}
	if code, _, stderr := run(t, "prep", "--input", in, "--out", out, "--vocab", "char"); code != 0 {
		t.Fatalf("prep after the kills: %s", stderr)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left beside --out: %s", e.Name())
		}
	}
}

// Training onto a full file system (a 5 MiB tmpfs, which holds the first checkpoints of
// about 2 MB but not all) stops with an error that says so, without a crash; every listed checkpoint is
// whole, nothing half-written is left, and once there is room --resume finishes the run.
func TestFaultFullFileSystem(t *testing.T) {
	bin := binary(t)
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	data := faultData(t, dir)
	mnt := filepath.Join(dir, "small")
	os.Mkdir(mnt, 0o755)
	if o, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s)", err, strings.TrimSpace(string(o)))
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	out := filepath.Join(mnt, "run")
	args := faultArgs(data, out, "40")
	args = append(args, "--keep", "0", "--ckpt-every", "2") // every checkpoint kept: the disk fills
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("train on a full disk: %v (want exit status 1)\n%s", err, stderr.String())
	}
	msg := strings.TrimSpace(stderr.String())
	if !strings.Contains(msg, "no space left on device") || strings.Contains(msg, "goroutine") || strings.Contains(msg, "terminate called") {
		t.Fatalf("train on a full disk said:\n%s", msg)
	}
	steps := checkRun(t, out)
	if len(steps) == 0 || steps[len(steps)-1] >= 40 {
		t.Fatalf("checkpoints %v: the disk did not fill as planned", steps)
	}
	ents, _ := os.ReadDir(filepath.Join(out, checkpoint.Dir))
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	t.Logf("stopped after checkpoint %d with: %s", steps[len(steps)-1], lastLine(msg))
	if o, err := exec.Command("mount", "-o", "remount,size=64m", mnt).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v %s", err, o)
	}
	resume := append(resumeArgs(out, "40"), "--keep", "0")
	if o, err := exec.Command(bin, resume...).CombinedOutput(); err != nil {
		t.Fatalf("resume once there is room: %v\n%s", err, o)
	}
	if steps := checkRun(t, out); steps[len(steps)-1] != 40 {
		t.Fatalf("after resuming: checkpoints %v", steps)
	}
}

// Damaged checkpoint files given to eval, generate and train --resume are refused with
// one line naming the file: no C++ backtrace, no goroutine dump.
func TestFaultDamagedCheckpointFiles(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	data := faultData(t, dir)
	good := filepath.Join(dir, "good")
	if o, err := exec.Command(bin, faultArgs(data, good, "2")...).CombinedOutput(); err != nil {
		t.Fatalf("train: %v\n%s", err, o)
	}
	for _, tc := range []struct {
		file   string
		damage func([]byte) []byte
		cmd    []string
	}{
		{checkpoint.WeightsName, func(b []byte) []byte { b[len(b)-5] ^= 1; return b }, []string{"eval", "--data", data, "--split", "valid"}},
		{checkpoint.WeightsName, func(b []byte) []byte { return b[:len(b)/2] }, []string{"generate", "--max-new-tokens", "4"}},
		{checkpoint.OptimName, func(b []byte) []byte { b[len(b)/2] ^= 1; return b }, []string{"train", "--resume", "--no-bar"}},
		{checkpoint.MemoryName(0), func([]byte) []byte { return nil }, []string{"train", "--resume", "--no-bar"}},
		{checkpoint.HeaderName, func(b []byte) []byte { return bytes.Replace(b, []byte(`"step": 2`), []byte(`"step": 9`), 1) }, []string{"eval", "--data", data, "--split", "valid"}},
	} {
		run := filepath.Join(t.TempDir(), "run")
		os.CopyFS(run, os.DirFS(good))
		last, _ := checkpoint.Latest(run)
		path := filepath.Join(last, tc.file)
		b, _ := os.ReadFile(path)
		os.WriteFile(path, tc.damage(b), 0o644)
		args := append(tc.cmd, "--device", "cpu")
		if tc.cmd[0] == "train" {
			args = append(args, "--out", run)
		} else {
			args = append(args, "--ckpt", run)
		}
		o, err := exec.Command(bin, args...).CombinedOutput()
		msg := strings.TrimSpace(string(o))
		if err == nil || !strings.Contains(lastLine(msg), path) || strings.Contains(msg, "goroutine") || strings.Contains(msg, "Exception") {
			t.Errorf("%s damaged, xspan %s: %v\n%s", tc.file, tc.cmd[0], err, msg)
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
