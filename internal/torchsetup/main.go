// Command torchsetup makes gotch build on this machine. The README's make targets run it
// before every build (go run ./internal/torchsetup); it is quick when nothing changed.
//
// It finds libtorch (Debian's libtorch-dev, installed when missing and run as root, or
// the folder named by $LIBTORCH, e.g. the torch folder of a CUDA Python install), copies
// gotch from the Go module cache into .build/gotch, and patches that copy:
//   - libtch/lib.go is generated with this libtorch's include, library and ABI flags;
//   - generated C++ wrappers that this libtorch cannot compile are replaced by wrappers
//     that return an error naming the op (found from the compiler's errors, repeated until
//     the file compiles), and the list is written to .build/gotch/STUBBED-OPS.txt;
//   - the Go wrappers' C.malloc(0) output buffers are sized and freed;
//   - every function that takes tensors or scalars keeps them alive until it returns
//     (gotch frees them in finalizers, which could run while libtorch reads them);
//   - log.Fatal becomes a panic with *libtch.PanicError, recovered per step or request.
//
// It writes internal/native/cgo_flags.go, the #cgo lines of xspan's own bindings (the
// same library, gotch's header and xspan's), and finally go.work, whose replace directive
// points the build at the copy. Nothing of gotch is committed: .build/, go.work and
// cgo_flags.go are ignored by git.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const (
	gotchModule  = "github.com/sugarme/gotch"
	gotchVersion = "v0.9.1"
	// setupVersion changes whenever the native build changes (its flags, the stubbing, the
	// sources' patches), so that old objects and copies are redone.
	setupVersion = "13"
	// goSideVersion changes whenever only the Go side's patches change: the copy is redone,
	// the native library's objects are kept.
	goSideVersion = "1"
)

func main() {
	root := flag.String("root", ".", "the xspan repository root")
	force := flag.Bool("force", false, "redo the copy and patches even when up to date")
	bundle := flag.String("bundle", "", "build the native library of the source bundle in `DIR` (its src/) instead of a repository's set-up: what make build's xspan-native/build-native does on a machine without Go")
	jobs := flag.Int("j", 0, "compilers at once (0: one per core)")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), `usage: go run ./internal/torchsetup [-root DIR] [-force] [-j N]
       xspan-native/build-native [-bundle DIR] [-j N]

In a repository: builds the patched gotch (Go side) into .build/gotch, the native library
(gotch's C++ and xspan's) into .build/native, and writes go.work.
From a bundle (the xspan-native folder that make build writes beside xspan): builds
libxspantorch.so into that folder, where xspan finds it.

The libtorch: $LIBTORCH when set (a libtorch folder, e.g. the torch folder of a Python
install); else Debian's libtorch-dev; from a bundle, else python3's torch.`)
		flag.PrintDefaults()
	}
	flag.Parse()
	var err error
	switch {
	case *bundle != "":
		err = runBundle(*bundle, *jobs)
	case bundleBesideExecutable() != "" && !flagGiven("root"):
		err = runBundle(bundleBesideExecutable(), *jobs)
	default:
		err = run(*root, *force, *jobs)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "torch set-up failed:", err)
		os.Exit(1)
	}
}

func flagGiven(name string) bool {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// stamp records what a patched copy was made from; an equal stamp means nothing to redo.
type stamp struct {
	Setup    string `json:"setup"`
	GoSide   string `json:"go_side"`
	Gotch    string `json:"gotch"`
	Libtorch string `json:"libtorch"`
	Flags    string `json:"flags"`
}

func run(root string, force bool, jobs int) error {
	start := time.Now()
	root, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	lt, err := locateLibtorch(false)
	if err != nil {
		return err
	}
	if err := ensureFastBLAS(lt); err != nil {
		return err
	}
	if err := ensureGloo(lt); err != nil {
		return err
	}
	dest := filepath.Join(root, ".build", "gotch")
	native := filepath.Join(root, ".build", "native")
	// Two set-ups at once (two make targets, two shells) would rename over each other.
	unlock, err := lockFile(filepath.Join(root, ".build", "setup.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	want := stamp{Setup: setupVersion, GoSide: goSideVersion, Gotch: gotchVersion, Libtorch: lt.String(), Flags: strings.Join(lt.cgoDirectives(native), "\n")}
	stampPath := filepath.Join(dest, ".xspan-setup.json")
	goSide := "up to date"
	if force || !sameStamp(stampPath, want) {
		if err := patchGotch(root, dest, native, lt, want); err != nil {
			return err
		}
		goSide = "patched"
	}
	// xspan's own C++ changes with the repository, not with gotch.
	if err := syncOwnNative(filepath.Join(root, "native"), filepath.Join(native, "src")); err != nil {
		return err
	}
	if err := writeIfChanged(filepath.Join(root, nativeCgoFile), nativeCgoGo(native)); err != nil {
		return err
	}
	info, err := (&nativeBuild{Src: filepath.Join(native, "src"), Dir: native, Lib: lt, Jobs: jobs, Log: logf}).run()
	if err != nil {
		return err
	}
	if err := writeGoWork(root); err != nil {
		return err
	}
	if info.Rebuilt == 0 && goSide == "up to date" {
		fmt.Printf("torch set-up: up to date: %s, gotch %s in %s, native library %s\n", lt, gotchVersion, rel(root, dest), rel(root, filepath.Join(native, nativeLibFile)))
		return nil
	}
	fmt.Printf("torch set-up: native library %s: %d of %d units compiled, %d functions stubbed (list: %s)\n",
		rel(root, filepath.Join(native, nativeLibFile)), info.Rebuilt, info.Units, len(info.Stubbed), rel(root, filepath.Join(native, "STUBBED-OPS.txt")))
	fmt.Printf("torch set-up: done in %.1fs: gotch's Go side %s in %s, go.work points the build at it\n", time.Since(start).Seconds(), goSide, rel(root, dest))
	return nil
}

func logf(format string, a ...any) { fmt.Printf("torch set-up: "+format+"\n", a...) }

// patchGotch copies gotch from the module cache and patches its Go side into dest; its C++
// goes to native/src, from which the native library is built.
func patchGotch(root, dest, native string, lt *libtorch, want stamp) error {
	fmt.Printf("torch set-up: %s\n", lt)
	src, err := gotchSource(root)
	if err != nil {
		return err
	}
	// Build in a fresh folder and rename, so an interrupted set-up never leaves a copy
	// whose stamp claims it is complete.
	tmp := dest + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := copyModule(src, tmp); err != nil {
		return fmt.Errorf("copying gotch from %s: %v", src, err)
	}
	fmt.Printf("torch set-up: copied gotch %s from %s\n", gotchVersion, src)
	libtch := filepath.Join(tmp, "libtch")
	if err := moveNativeSources(libtch, filepath.Join(native, "src")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(libtch, "lib.go"), []byte(lt.libGo(native)), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(libtch, "xspan_extra.go"), []byte(extraGo()), 0o644); err != nil {
		return err
	}
	fmt.Printf("torch set-up: generated libtch/lib.go:\n    %s\n", strings.Join(lt.cgoDirectives(native), "\n    "))
	n, err := fixGoWrappers(filepath.Join(tmp, "ts"))
	if err != nil {
		return err
	}
	fmt.Printf("torch set-up: sized and freed %d C.malloc(0) output buffers in ts/*.go\n", n)
	if _, err := patchFile(filepath.Join(tmp, "ts", "tensor-generated.go"), func(s string) (string, error) {
		out, n := patchInPlaceHandles(s)
		if n == 0 {
			return "", errors.New("no in-place wrappers found")
		}
		return out, nil
	}); err != nil {
		return err
	}
	if _, err := patchFile(filepath.Join(tmp, "ts", "tensor.go"), patchTensorLifetime); err != nil {
		return err
	}
	if _, err := patchFile(filepath.Join(tmp, "ts", "tensor.go"), patchNoGrad); err != nil {
		return err
	}
	if _, err := patchFile(filepath.Join(libtch, "tensor.go"), patchGradSetEnabled); err != nil {
		return err
	}
	nk, err := patchKeepAliveTree(tmp)
	if err != nil {
		return err
	}
	nf, err := patchLogFatalTree(tmp)
	if err != nil {
		return err
	}
	fmt.Printf("torch set-up: %d functions keep their tensor and scalar arguments alive until they return; %d log.Fatal calls panic with libtch.PanicError instead\n", nk, nf)
	fmt.Println("torch set-up: in-place wrappers free the handle they replace; tensors carry no 100 kB ballast or name registry")
	if err := writeStamp(filepath.Join(tmp, ".xspan-setup.json"), want); err != nil {
		return err
	}
	if err := os.RemoveAll(dest); err != nil {
		return err
	}
	return os.Rename(tmp, dest)
}

// locateLibtorch returns $LIBTORCH's libtorch, or the system's, or (tryPython) python3's
// torch folder; failing those, it installs Debian's libtorch-dev when we are root.
func locateLibtorch(tryPython bool) (*libtorch, error) {
	if dir := os.Getenv("LIBTORCH"); dir != "" {
		return openLibtorchDir(dir)
	}
	lt, err := findSystemLibtorch()
	if err == nil {
		return lt, nil
	}
	if tryPython {
		if dir := pythonTorchDir(); dir != "" {
			fmt.Printf("torch set-up: using python3's torch in %s\n", dir)
			return openLibtorchDir(dir)
		}
	}
	const install = "apt-get install -y libtorch-dev"
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("libtorch is not installed; run 'sudo apt-get update && sudo %s' (or set LIBTORCH to a libtorch folder)", install)
	}
	fmt.Println("torch set-up: libtorch not found; installing Debian's libtorch-dev")
	if err := runVisible("apt-get", "install", "-y", "-q", "libtorch-dev"); err != nil {
		// The package lists may be missing or stale on a fresh machine.
		if err := runVisible("apt-get", "update", "-q"); err != nil {
			return nil, fmt.Errorf("apt-get update failed: %v", err)
		}
		if err := runVisible("apt-get", "install", "-y", "-q", "libtorch-dev"); err != nil {
			return nil, fmt.Errorf("'%s' failed: %v", install, err)
		}
	}
	return findSystemLibtorch()
}

// lockFile takes an exclusive lock on path, waiting for any other holder.
func lockFile(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %v", path, err)
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

func runVisible(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	return cmd.Run()
}

// gotchSource returns gotch's folder in the module cache, downloading it when missing.
func gotchSource(root string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", gotchModule+"@"+gotchVersion)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	_ = json.Unmarshal(out, &info)
	if err != nil || info.Dir == "" {
		msg := info.Error
		if msg == "" && err != nil {
			msg = err.Error()
		}
		return "", fmt.Errorf("cannot get %s@%s from the module cache or proxy: %s", gotchModule, gotchVersion, msg)
	}
	return info.Dir, nil
}

// copyModule copies the parts of gotch that xspan builds (not its examples, generator
// or tests) and makes them writable.
func copyModule(src, dst string) error {
	skip := map[string]bool{"example": true, "gen": true, "testdata": true, ".git": true}
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(src, path)
		if d.IsDir() {
			if skip[d.Name()] {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, r), 0o755)
		}
		if strings.HasSuffix(d.Name(), "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, r), b, 0o644)
	})
}

// patchFile rewrites one file of the copy with fn.
func patchFile(path string, fn func(string) (string, error)) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	out, err := fn(string(b))
	if err != nil {
		return false, fmt.Errorf("patching %s: %v (is this gotch %s?)", path, err, gotchVersion)
	}
	return true, os.WriteFile(path, []byte(out), 0o644)
}

// fixGoWrappers applies fixOutputBuffers to every Go file of gotch's ts package.
func fixGoWrappers(dir string) (int, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return 0, err
	}
	total := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		out, n := fixOutputBuffers(string(b))
		if n == 0 {
			continue
		}
		if err := os.WriteFile(f, []byte(out), 0o644); err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// firstErrors returns the first n "error:" lines of compiler output.
func firstErrors(out []byte, n int) string {
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "error:") {
			keep = append(keep, "    "+l)
			if len(keep) == n {
				break
			}
		}
	}
	return strings.Join(keep, "\n")
}

func sameStamp(path string, want stamp) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var got stamp
	return json.Unmarshal(b, &got) == nil && got == want
}

func writeStamp(path string, s stamp) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// writeGoWork writes go.work when its content would change; the replace points the whole
// build, tests included, at the patched copy.
func writeGoWork(root string) error {
	goVersion, err := goDirective(filepath.Join(root, "go.mod"))
	if err != nil {
		return err
	}
	text := "// Generated by xspan's internal/torchsetup; DO NOT EDIT. Ignored by git.\n\ngo " + goVersion + "\n\nuse .\n\nreplace " +
		gotchModule + " " + gotchVersion + " => ./.build/gotch\n"
	return writeIfChanged(filepath.Join(root, "go.work"), text)
}

// writeIfChanged writes text to path (through a temporary file) unless it holds it already.
func writeIfChanged(path, text string) error {
	if b, err := os.ReadFile(path); err == nil && string(b) == text {
		return nil
	}
	return writeFileAtomic(path, []byte(text))
}

// goDirective returns the version of go.mod's go line: go.work must not name an older one.
func goDirective(goMod string) (string, error) {
	b, err := os.ReadFile(goMod)
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "go "); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("%s has no go line", goMod)
}

func rel(root, p string) string {
	if r, err := filepath.Rel(root, p); err == nil {
		return r
	}
	return p
}
