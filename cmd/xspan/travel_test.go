package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"xspan/internal/torchrt"
)

// The binary travels: copied into a folder of its own with the native library beside
// it, it runs with no Go on PATH, loads that copy of the library (the RUNPATH's $ORIGIN
// comes first), and trains. Built as make build builds it, it says its version (xspan
// --version, xspan version) and records it in its checkpoints and exports.
func TestBinaryRunsBesideItsNativeLibraryWithoutGo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go toolchain to build the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "xspan")
	flags, version := versionLDFlags(t)
	if out, err := exec.Command(goBin, "build", "-ldflags", flags, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	lib, err := os.ReadFile(torchrt.NativeLibrary())
	if err != nil {
		t.Fatalf("reading the native library this test loaded: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "libxspantorch.so"), lib, 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "OPENBLAS_CORETYPE=" + os.Getenv("OPENBLAS_CORETYPE")}
	if _, err := exec.LookPath("/usr/bin/go"); err == nil {
		t.Skip("/usr/bin/go exists: cannot take Go out of PATH")
	}
	xspan := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("xspan %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	v := xspan("version")
	if !strings.Contains(v, "native library: "+filepath.Join(dir, "libxspantorch.so")) {
		t.Fatalf("the binary did not load the library beside it:\n%s", v)
	}
	if !strings.HasPrefix(v, "xspan "+version+"\n") || xspan("--version") != "xspan "+version+"\n" || strings.Contains(v, "(devel)") {
		t.Errorf("want version %q from xspan version and --version:\n%s", version, v)
	}
	os.WriteFile(filepath.Join(dir, "corpus.txt"), testText(), 0o644)
	xspan("prep", "--input", "corpus.txt", "--out", "ds", "--vocab", "char")
	out := xspan(append([]string{"train", "--data", "ds", "--out", "run", "--steps", "3"}, trainTinyArgs...)...)
	if !strings.Contains(out, "step 3") {
		t.Fatalf("train output:\n%s", out)
	}
	hdr, err := os.ReadFile(filepath.Join(dir, "run", "checkpoints", "step-000000003", "HEADER"))
	if err != nil || !strings.Contains(string(hdr), `"xspan_version": "`+version+`"`) {
		t.Errorf("checkpoint HEADER (%v) lacks xspan_version %q:\n%s", err, version, hdr)
	}
	xspan("export", "--ckpt", "run", "--format", "safetensors", "--out", "model.safetensors")
	if b, err := os.ReadFile(filepath.Join(dir, "model.safetensors")); err != nil || !strings.Contains(string(b[:min(len(b), 1<<16)]), `"xspan_version":"`+version+`"`) {
		t.Errorf("the export (%v) lacks xspan_version %q", err, version)
	}
}
