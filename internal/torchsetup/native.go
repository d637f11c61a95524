package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
)

// The native library is every line of C++ that xspan runs, gotch's and ours, built into
// one shared library against the libtorch that the machine has. The Go binary then needs
// only gotch's C header and links the library, so the two are built apart: a binary made
// here runs on a machine without Go once the library is built there (by this same
// program, from the source bundle that make build writes).
//
// The build, in a native folder:
//
//	src/                 the sources as they travel: gotch's torch_api.cpp, its generated
//	                     wrappers, headers, and xspan's own C++ (native/ in the repository)
//	work/                the translation units as compiled: the generated wrappers split
//	                     into parts, each stubbed where this libtorch cannot compile it
//	obj/UNIT.o           one object per unit, with UNIT.key (what it was built from) and
//	                     UNIT.stubs (the functions stubbed in it)
//	libxspantorch.so     the library
//	STUBBED-OPS.txt      every stubbed function, and the libtorch it was built against
//	build-info.json      the same for programs, with the build's time
const (
	nativeLibName  = "xspantorch"
	nativeLibFile  = "lib" + nativeLibName + ".so"
	generatedUnits = "torch_api_generated.cpp.h"
	generatedPart  = "torch_api_generated-part%02d.cpp"
	handWritten    = "torch_api.cpp"
	maxStubPasses  = 8
)

// nativeBuild is one build of the native library.
type nativeBuild struct {
	Src, Dir string    // the source folder and the native folder
	Lib      *libtorch // what to build against
	Jobs     int       // compilers at once (0: one per core)
	Parts    int       // parts of the generated wrappers (0: one per job)
	Log      func(format string, a ...any)
}

// NativeInfo is build-info.json: what the library was built against and what it lacks.
type NativeInfo struct {
	Libtorch string   `json:"libtorch"`
	Version  string   `json:"libtorch_version"`
	CUDA     bool     `json:"cuda"`
	Stubbed  []string `json:"stubbed"`
	Units    int      `json:"units"`
	Rebuilt  int      `json:"rebuilt"`
	Seconds  float64  `json:"seconds"`
	Built    string   `json:"built"`
}

// unit is one translation unit: its pristine text, where it is compiled from, and how its
// failing functions are found.
type unit struct {
	name     string // file name in work/
	text     []byte
	findFunc func([]byte) []wrapper
	stubbed  []string
	rebuilt  bool
}

// run builds the library; nothing changes in Dir's library unless the build succeeds.
func (b *nativeBuild) run() (*NativeInfo, error) {
	start := time.Now()
	if b.Log == nil {
		b.Log = func(string, ...any) {}
	}
	if b.Jobs <= 0 {
		b.Jobs = runtime.NumCPU()
	}
	if b.Parts <= 0 {
		b.Parts = max(2, b.Jobs)
	}
	if _, err := exec.LookPath("g++"); err != nil {
		return nil, errors.New("g++ is not installed; it builds the native library: run 'apt-get install -y g++'")
	}
	units, err := b.units()
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"work", "obj"} {
		if err := os.MkdirAll(filepath.Join(b.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	key := b.flagsKey()
	// Units in decreasing size, so the longest compiles start first.
	sort.SliceStable(units, func(i, j int) bool { return len(units[i].text) > len(units[j].text) })
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	sem := make(chan struct{}, b.Jobs)
	for _, u := range units {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := b.compile(u, key); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	info := &NativeInfo{Libtorch: b.Lib.String(), Version: b.Lib.Version, CUDA: b.Lib.CUDA, Units: len(units), Built: time.Now().UTC().Format(time.RFC3339)}
	var objs []string
	relink := false
	for _, u := range units {
		objs = append(objs, filepath.Join(b.Dir, "obj", strings.TrimSuffix(u.name, ".cpp")+".o"))
		info.Stubbed = append(info.Stubbed, u.stubbed...)
		if u.rebuilt {
			info.Rebuilt++
			relink = true
		}
	}
	sort.Strings(info.Stubbed)
	lib := filepath.Join(b.Dir, nativeLibFile)
	if _, err := os.Stat(lib); err != nil || relink || len(units) != b.linkedUnits() {
		if err := b.link(objs, lib); err != nil {
			return nil, err
		}
	}
	info.Seconds = time.Since(start).Seconds()
	if err := b.writeInfo(info); err != nil {
		return nil, err
	}
	return info, nil
}

// units reads the sources: the generated wrappers in Parts parts, the hand-written part of
// gotch and every .cpp file of xspan's own.
func (b *nativeBuild) units() ([]*unit, error) {
	gen, err := os.ReadFile(filepath.Join(b.Src, generatedUnits))
	if err != nil {
		return nil, err
	}
	hw, err := os.ReadFile(filepath.Join(b.Src, handWritten))
	if err != nil {
		return nil, err
	}
	var units []*unit
	for i, part := range splitWrappers(gen, b.Parts) {
		units = append(units, &unit{name: fmt.Sprintf(generatedPart, i), text: part, findFunc: findWrappers})
	}
	units = append(units, &unit{name: handWritten, text: hw, findFunc: findFunctions})
	own, _ := filepath.Glob(filepath.Join(b.Src, "xspan_*.cpp"))
	for _, f := range own {
		text, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		units = append(units, &unit{name: filepath.Base(f), text: text, findFunc: findFunctions})
	}
	return units, nil
}

// splitWrappers cuts gotch's generated wrappers into n translation units of about equal
// size, each including torch_api.h (which declares the helpers they share).
func splitWrappers(gen []byte, n int) [][]byte {
	ws := findWrappers(gen)
	lines := strings.SplitAfter(string(gen), "\n")
	if len(ws) == 0 || n < 1 {
		return [][]byte{append([]byte("#include \"torch_api.h\"\n"), gen...)}
	}
	n = min(n, len(ws))
	parts := make([][]byte, 0, n)
	per := (len(ws) + n - 1) / n
	for i := 0; i < len(ws); i += per {
		last := min(i+per, len(ws)) - 1
		from, to := ws[i].start-1, ws[last].end
		if i == 0 {
			from = 0 // keep whatever stands before the first wrapper
		}
		if last == len(ws)-1 {
			to = len(lines)
		}
		var sb strings.Builder
		fmt.Fprintf(&sb, "// Part of gotch's %s (%s to %s), cut by xspan's set-up.\n#include \"torch_api.h\"\n", generatedUnits, ws[i].name, ws[last].name)
		sb.WriteString(strings.Join(lines[from:to], ""))
		parts = append(parts, []byte(sb.String()))
	}
	return parts
}

// compilerFlagsForObjects are the flags of every unit's compilation.
func (b *nativeBuild) compileFlags() []string {
	flags := b.Lib.compilerFlags(filepath.Join(b.Dir, "work"))
	out := []string{"-O1", "-fPIC", "-I" + b.Src}
	for _, f := range flags {
		if f != "-fsyntax-only" {
			out = append(out, f)
		}
	}
	if b.Lib.CUDA {
		out = append(out, "-DXSPAN_CUDA=1")
		for _, d := range cudaIncludeDirs() {
			out = append(out, "-I"+d)
		}
		if d := ncclIncludeDir(b.Lib); d != "" {
			out = append(out, "-DXSPAN_NCCL=1", "-I"+d)
		}
	}
	// c10d's Gloo process group needs gloo's headers, which Debian ships apart
	// (libgloo-dev); the flag is part of every unit's key, so installing them rebuilds.
	if d := glooIncludeDir(b.Lib); d != "" {
		out = append(out, "-DXSPAN_GLOO=1", "-I"+d)
	}
	return out
}

// glooIncludeDir returns the folder that holds gloo/context.h for this libtorch, or "".
func glooIncludeDir(lt *libtorch) string {
	dirs := append([]string{}, lt.IncludeDirs...)
	if lt.Dir != "" {
		dirs = append(dirs, filepath.Join(lt.Dir, "include"))
	}
	dirs = append(dirs, "/usr/include", "/usr/local/include")
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "gloo", "context.h")); err == nil {
			return d
		}
	}
	return ""
}

// ncclIncludeDir returns the folder that holds nccl.h for a CUDA libtorch (a Python
// install keeps it in the nvidia packages beside torch), or "".
func ncclIncludeDir(lt *libtorch) string {
	var dirs []string
	if lt.Dir != "" {
		dirs = append(dirs, filepath.Join(lt.Dir, "include"))
		more, _ := filepath.Glob(filepath.Join(lt.Dir, "..", "nvidia", "*", "include"))
		dirs = append(dirs, more...)
	}
	dirs = append(dirs, cudaIncludeDirs()...)
	dirs = append(dirs, "/usr/include", "/usr/local/include")
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "nccl.h")); err == nil {
			return filepath.Clean(d)
		}
	}
	return ""
}

// cudaIncludeDirs are CUDA toolkit header folders found on this machine, for xspan's own
// CUDA statistics (the caching allocator's header includes cuda_runtime_api.h).
func cudaIncludeDirs() []string {
	var dirs []string
	for _, d := range []string{os.Getenv("CUDA_HOME"), os.Getenv("CUDA_PATH"), "/usr/local/cuda"} {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "include", "cuda_runtime_api.h")); err == nil {
			dirs = append(dirs, filepath.Join(d, "include"))
			break
		}
	}
	return dirs
}

// flagsKey identifies the compiler, its flags and the libtorch: part of every unit's key.
func (b *nativeBuild) flagsKey() string {
	ver, _ := exec.Command("g++", "--version").Output()
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n", setupVersion, ver, strings.Join(b.compileFlags(), " "), b.Lib)
	return hex.EncodeToString(h.Sum(nil))
}

// compile builds one unit's object, stubbing the functions that this libtorch cannot
// compile, unless an object built from the same text and flags is already there.
func (b *nativeBuild) compile(u *unit, flagsKey string) error {
	base := strings.TrimSuffix(u.name, ".cpp")
	obj := filepath.Join(b.Dir, "obj", base+".o")
	h := sha256.Sum256(append([]byte(flagsKey+"\n"), u.text...))
	key := hex.EncodeToString(h[:])
	if old, err := os.ReadFile(obj + ".key"); err == nil && string(old) == key {
		if _, err := os.Stat(obj); err == nil {
			if s, err := os.ReadFile(obj + ".stubs"); err == nil {
				u.stubbed = strings.Fields(string(s))
				return nil
			}
		}
	}
	u.rebuilt = true
	src := filepath.Join(b.Dir, "work", u.name)
	text := u.text
	tmpObj := obj + ".tmp"
	var extra []string // a fallback's flags
	for pass := 1; pass <= maxStubPasses; pass++ {
		if err := os.WriteFile(src, text, 0o644); err != nil {
			return err
		}
		t := time.Now()
		cmd := exec.Command("g++", append(append(b.compileFlags(), extra...), "-fmax-errors=0", "-c", src, "-o", tmpObj)...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			b.Log("compiled %s (%.0fs)", u.name, time.Since(t).Seconds())
			if err := os.WriteFile(obj+".stubs", []byte(strings.Join(u.stubbed, "\n")), 0o644); err != nil {
				return err
			}
			if err := os.Rename(tmpObj, obj); err != nil {
				return err
			}
			return os.WriteFile(obj+".key", []byte(key), 0o644)
		}
		if _, ok := err.(*exec.ExitError); !ok {
			return fmt.Errorf("running g++: %v", err)
		}
		hit, _ := enclosing(u.findFunc(text), diagLines(out, u.name))
		if fb, ok := unitFallbacks[u.name]; ok && len(hit) == 0 && extra == nil {
			// Headers that this libtorch cannot compile: the unit's other build.
			extra = []string{fb.flag}
			u.stubbed = append(u.stubbed, fb.name)
			b.Log("%s does not compile against %s outside its functions; building it with %s (calls say so); first errors:\n%s", u.name, b.Lib, fb.flag, firstErrors(out, 4))
			continue
		}
		if len(hit) == 0 {
			return fmt.Errorf("%s does not compile against %s, and not inside a function that can be stubbed; first compiler errors:\n%s", u.name, b.Lib, firstErrors(out, 8))
		}
		for _, w := range hit {
			u.stubbed = append(u.stubbed, w.name)
		}
		text = stubWrappers(text, hit, b.Lib.Version)
		b.Log("%s: stubbed %d functions that %s cannot compile (%.0fs)", u.name, len(hit), b.Lib, time.Since(t).Seconds())
	}
	return fmt.Errorf("%s still does not compile against %s after %d passes", u.name, b.Lib, maxStubPasses)
}

// unitFallbacks are xspan's own units that have a second build for a libtorch whose
// headers they cannot compile at all (not a function that can be stubbed): the flag
// selects it, and the name goes to the list of what is stubbed.
var unitFallbacks = map[string]struct{ flag, name string }{
	"xspan_dist.cpp": {"-DXSPAN_NO_C10D", "xspan_dist_c10d"},
}

// link writes the library under a temporary name and renames it into place.
func (b *nativeBuild) link(objs []string, lib string) error {
	t := time.Now()
	tmp := lib + ".tmp"
	args := []string{"-shared", "-o", tmp, "-Wl,-soname," + nativeLibFile}
	args = append(args, objs...)
	if b.Lib.Dir != "" {
		args = append(args, "-L"+b.Lib.LibDir, "-Wl,-rpath,"+b.Lib.LibDir)
	}
	// Nothing in the library calls into libtorch_cuda directly: without --no-as-needed
	// the linker would drop it, and libtorch would find no CUDA device at run time.
	args = append(args, "-Wl,--no-as-needed", "-ltorch", "-ltorch_cpu", "-lc10")
	if b.Lib.CUDA {
		args = append(args, "-ltorch_cuda", "-lc10_cuda")
	}
	args = append(args, "-Wl,--as-needed", "-ldl", "-lpthread")
	if out, err := exec.Command("g++", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("linking %s: %v\n%s", lib, err, firstErrors(out, 8)+string(out[:min(len(out), 2000)]))
	}
	if err := os.Rename(tmp, lib); err != nil {
		return err
	}
	b.Log("linked %s from %d objects (%.0fs)", nativeLibFile, len(objs), time.Since(t).Seconds())
	return os.WriteFile(filepath.Join(b.Dir, "obj", "linked-units"), []byte(fmt.Sprint(len(objs))), 0o644)
}

// linkedUnits returns how many objects the present library was linked from.
func (b *nativeBuild) linkedUnits() int {
	s, err := os.ReadFile(filepath.Join(b.Dir, "obj", "linked-units"))
	if err != nil {
		return -1
	}
	var n int
	fmt.Sscan(string(s), &n)
	return n
}

// writeInfo writes STUBBED-OPS.txt and build-info.json beside the library.
func (b *nativeBuild) writeInfo(info *NativeInfo) error {
	header := fmt.Sprintf("# Functions of gotch %s and xspan stubbed by xspan's set-up: %s cannot compile them.\n# Calling one returns an error naming it.\n", gotchVersion, b.Lib)
	if err := writeFileAtomic(filepath.Join(b.Dir, "STUBBED-OPS.txt"), []byte(header+strings.Join(info.Stubbed, "\n")+"\n")); err != nil {
		return err
	}
	js, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(b.Dir, "build-info.json"), append(js, '\n'))
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// nativeSourceFiles are gotch's C++ files that move from its libtch package into the
// native library's sources. The Go side keeps torch_api.h and torch_api_generated.h: cgo
// reads only their C declarations.
var nativeSourceFiles = []string{"torch_api.cpp", "torch_api.h", generatedUnits, "torch_api_generated.h", "stb_image.h", "stb_image_write.h", "stb_image_resize.h"}

// torch_api.h defines gotch's thread-local error slot; included by several translation
// units, it must only declare it, and torch_api.cpp defines it.
const (
	lastErrDefinition  = "thread_local char *torch_last_err = nullptr;"
	lastErrDeclaration = "extern thread_local char *torch_last_err;"
	generatedInclude   = `#include "torch_api_generated.cpp.h"`
)

// moveNativeSources writes gotch's C++ sources, patched to be compiled as several
// translation units, into src (replaced whole), and removes from libtch what cgo must not
// compile.
func moveNativeSources(libtch, src string) error {
	tmp := src + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	for _, name := range nativeSourceFiles {
		b, err := os.ReadFile(filepath.Join(libtch, name))
		if err != nil {
			return err
		}
		text := string(b)
		switch name {
		case "torch_api.h":
			if !strings.Contains(text, lastErrDefinition) {
				return fmt.Errorf("%s: no %q to turn into a declaration (is this gotch %s?)", name, lastErrDefinition, gotchVersion)
			}
			text = strings.Replace(text, lastErrDefinition, lastErrDeclaration, 1)
			// The Go side reads the same header.
			if err := os.WriteFile(filepath.Join(libtch, name), []byte(text), 0o644); err != nil {
				return err
			}
		case "torch_api.cpp":
			if !strings.Contains(text, generatedInclude) || !strings.Contains(text, "using namespace std;\n") {
				return fmt.Errorf("%s: not laid out as gotch %s's (no %s)", name, gotchVersion, generatedInclude)
			}
			text = strings.Replace(text, generatedInclude, "// The generated wrappers are compiled as parts of their own (xspan's set-up).", 1)
			text = strings.Replace(text, "using namespace std;\n", "using namespace std;\n\n"+lastErrDefinition+"\n", 1)
		}
		if err := os.WriteFile(filepath.Join(tmp, name), []byte(text), 0o644); err != nil {
			return err
		}
		if name != "torch_api.h" && name != "torch_api_generated.h" {
			if err := os.Remove(filepath.Join(libtch, name)); err != nil {
				return err
			}
		}
	}
	if err := os.RemoveAll(src); err != nil {
		return err
	}
	return os.Rename(tmp, src)
}

// syncOwnNative copies xspan's own C++ (the repository's native/ folder) into the native
// sources, writing only what changed. (internal/native's cgo reads its headers there.)
func syncOwnNative(repoNative, src string) error {
	files, err := filepath.Glob(filepath.Join(repoNative, "xspan_*"))
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		name := filepath.Base(f)
		keep[name] = true
		if err := writeIfChanged(filepath.Join(src, name), string(b)); err != nil {
			return err
		}
	}
	stale, _ := filepath.Glob(filepath.Join(src, "xspan_*"))
	for _, f := range stale {
		if !keep[filepath.Base(f)] {
			if err := os.Remove(f); err != nil {
				return err
			}
		}
	}
	return nil
}

// pythonTorchDir returns the folder of python3's torch package, or "".
func pythonTorchDir() string {
	out, err := exec.Command("python3", "-c", "import os, torch; print(os.path.dirname(torch.__file__))").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// bundleBesideExecutable returns the folder of this program when it is a source bundle's
// builder (the folder holds src/torch_api.cpp), else "".
func bundleBesideExecutable() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	dir := filepath.Dir(exe)
	if _, err := os.Stat(filepath.Join(dir, "src", handWritten)); err != nil {
		return ""
	}
	return dir
}

// runBundle builds the native library of a source bundle into the bundle's folder.
func runBundle(dir string, jobs int) error {
	start := time.Now()
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "src", handWritten)); err != nil {
		return fmt.Errorf("%s is not a native-source bundle: no src/%s in it", dir, handWritten)
	}
	lt, err := locateLibtorch(true)
	if err != nil {
		return err
	}
	fmt.Printf("torch set-up: %s\n", lt)
	info, err := (&nativeBuild{Src: filepath.Join(dir, "src"), Dir: dir, Lib: lt, Jobs: jobs, Log: logf}).run()
	if err != nil {
		return err
	}
	fmt.Printf("torch set-up: %s in %.1fs (%d of %d units compiled, %d jobs); %d functions stubbed (list: %s)\n",
		filepath.Join(dir, nativeLibFile), time.Since(start).Seconds(), info.Rebuilt, info.Units, max(jobs, 0), len(info.Stubbed), filepath.Join(dir, "STUBBED-OPS.txt"))
	return nil
}
