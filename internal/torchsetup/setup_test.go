package main

import (
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func copyFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := copyModule("testdata/fixture", dir); err != nil {
		t.Fatal(err)
	}
	// The fixture's files are named apart from gotch's; the build expects gotch's names.
	for from, to := range map[string]string{"mini_api.cpp": handWritten, "mini_api.h": "torch_api.h", "mini_wrappers.cpp.h": generatedUnits} {
		if err := os.Rename(filepath.Join(dir, from), filepath.Join(dir, to)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func needGxx(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("g++"); err != nil {
		t.Skip("g++ not installed")
	}
}

// The fixture fails the way a newer libtorch fails gotch: three generated wrappers (a
// missing op, a tuple index out of range whose error stands in a system header, a changed
// signature) and two hand-written functions (one with its parameters over two lines, one
// C++ helper). The build stubs exactly those, in parts compiled in parallel, links the
// library, and rebuilds only what changed.
func TestNativeBuildStubsExactlyTheBrokenFunctions(t *testing.T) {
	needGxx(t)
	src := copyFixture(t)
	out := t.TempDir()
	lt := &libtorch{Version: "9.9.9", CXX11ABI: true}
	b := &nativeBuild{Src: src, Dir: out, Lib: lt, Jobs: 2, Parts: 2}
	info, err := b.run()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"at_changed", "atg_count_changed", "atg_new_op", "atg_split5", "helper_changed"}
	if !reflect.DeepEqual(info.Stubbed, want) {
		t.Fatalf("stubbed %v, want %v", info.Stubbed, want)
	}
	if info.Units != 3 || info.Rebuilt != 3 {
		t.Errorf("units %d, rebuilt %d: want 3 and 3 (2 parts of wrappers + torch_api.cpp)", info.Units, info.Rebuilt)
	}
	list, err := os.ReadFile(filepath.Join(out, "STUBBED-OPS.txt"))
	if err != nil || !strings.Contains(string(list), "libtorch 9.9.9") || !strings.Contains(string(list), "at_changed\n") {
		t.Errorf("STUBBED-OPS.txt: %v\n%s", err, list)
	}
	// The library links and runs: compiled functions work, stubbed ones set the error.
	bin := filepath.Join(out, "main")
	if o, err := exec.Command("g++", "-std=c++17", "-w", "-I", src, "-o", bin, filepath.Join(src, "main.cpp"), "-L"+out, "-l"+nativeLibName, "-Wl,-rpath,"+out).CombinedOutput(); err != nil {
		t.Fatalf("linking a program to the library: %v\n%s", err, o)
	}
	o, err := exec.Command(bin).CombinedOutput()
	if err != nil {
		t.Fatalf("calling the library: %v\n%s", err, o)
	}
	for _, msg := range []string{"op new_op is not available", "function at_changed is not available", "function helper_changed is not available", "libtorch 9.9.9"} {
		if !strings.Contains(string(o), msg) {
			t.Errorf("errors lack %q:\n%s", msg, o)
		}
	}
	// Nothing changed: nothing compiled, the library stays.
	lib := filepath.Join(out, nativeLibFile)
	before, _ := os.Stat(lib)
	info, err = b.run()
	if err != nil || info.Rebuilt != 0 || !reflect.DeepEqual(info.Stubbed, want) {
		t.Fatalf("second build: rebuilt %d, stubbed %v, err %v", info.Rebuilt, info.Stubbed, err)
	}
	if after, _ := os.Stat(lib); !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("library relinked with nothing changed")
	}
	// One unit changed: only it is compiled again.
	f := filepath.Join(src, "torch_api.cpp")
	text, _ := os.ReadFile(f)
	if err := os.WriteFile(f, append(text, []byte("\nint at_new_one() { return 7; }\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	if info, err = b.run(); err != nil || info.Rebuilt != 1 {
		t.Fatalf("after changing torch_api.cpp: rebuilt %d, err %v", info.Rebuilt, err)
	}
}

func TestFindFunctions(t *testing.T) {
	src := []byte("#include \"x.h\"\nusing namespace std;\n\nchar *get_err() {\n  return 0;\n}\n\nvoid at_one(int64_t s) { seed(s); }\n\nvector<torch::Tensor> of_list(torch::Tensor **vs,\n                              int len) {\n  return {};\n}\n\ntemplate <class T> void set_lr(optimizer t, double lr) {\n  x;\n}\nint decl(int);\n")
	var got []string
	for _, w := range findFunctions(src) {
		got = append(got, fmt.Sprintf("%s %q %d-%d-%d", w.name, w.returnType, w.start, w.body, w.end))
	}
	want := []string{`get_err "char *" 4-4-6`, `at_one "void" 8-8-8`, `of_list "vector<torch::Tensor>" 10-11-13`, `set_lr "void" 15-15-17`}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	out := string(stubWrappers(src, findFunctions(src), "2.99"))
	for _, w := range []string{"char *get_err() {\n  // xspan", "return {};", "void at_one(int64_t s) {\n  // xspan", "                              int len) {\n  // xspan", "throw std::runtime_error(\"function of_list is not available", "int decl(int);"} {
		if !strings.Contains(out, w) {
			t.Errorf("stubbed text lacks %q:\n%s", w, out)
		}
	}
}

func TestSplitWrappers(t *testing.T) {
	gen, err := os.ReadFile("testdata/fixture/mini_wrappers.cpp.h")
	if err != nil {
		t.Fatal(err)
	}
	parts := splitWrappers(gen, 4)
	if len(parts) != 3 { // 6 wrappers, 2 a part
		t.Fatalf("%d parts", len(parts))
	}
	var all []string
	for _, p := range parts {
		if !strings.Contains(string(p), "#include \"torch_api.h\"") {
			t.Errorf("part without the header:\n%s", p)
		}
		for _, w := range findWrappers(p) {
			all = append(all, w.name)
		}
	}
	var orig []string
	for _, w := range findWrappers(gen) {
		orig = append(orig, w.name)
	}
	if !reflect.DeepEqual(all, orig) {
		t.Fatalf("parts hold %v, the file %v", all, orig)
	}
}

func TestDiagLinesMapsErrorsToWrappers(t *testing.T) {
	out := []byte(`In file included from torch_api.cpp:3:
torch_api_generated.cpp.h:12:29: error: 'x' is not a member of 'torch'
/usr/include/c++/12/tuple:1357:25: error: static assertion failed
libtch/torch_api_generated.cpp.h:26:3:   required from here
torch_api.h:20:5: note: in expansion of macro 'PROTECT'
                 from torch_api_generated.cpp.h:40,
other_torch_api_generated.cpp.h:99:1: error: not ours
`)
	got := diagLines(out, "torch_api_generated.cpp.h")
	if !reflect.DeepEqual(got, []int{12, 26}) {
		t.Fatalf("diagLines = %v, want [12 26]", got)
	}
	src, err := os.ReadFile("testdata/fixture/mini_wrappers.cpp.h")
	if err != nil {
		t.Fatal(err)
	}
	ws := findWrappers(src)
	if len(ws) != 6 {
		t.Fatalf("found %d wrappers, want 6", len(ws))
	}
	hit, outside := enclosing(ws, []int{1, 12, 13, 26})
	if len(hit) != 2 || hit[0].name != "atg_new_op" || hit[1].name != "atg_split5" {
		t.Fatalf("enclosing = %+v", hit)
	}
	if !reflect.DeepEqual(outside, []int{1}) {
		t.Fatalf("outside = %v, want [1]", outside)
	}
}

func TestStubKeepsReturnValueForNonVoid(t *testing.T) {
	src := []byte("int64_t atg_n(tensor self) {\n  PROTECT(\n    return f();\n  )\n  return 0;\n}\nvoid atg_v(tensor self) {\n  PROTECT(\n    g();\n  )\n}\n")
	ws := findWrappers(src)
	out := string(stubWrappers(src, ws, "1.0"))
	if strings.Count(out, "return {};") != 1 || strings.Contains(out, "f()") || strings.Contains(out, "g()") {
		t.Fatalf("stubbed text:\n%s", out)
	}
}

func TestFixOutputBuffers(t *testing.T) {
	src := `func(ts *Tensor) Four()(a, b, c, d *Tensor, err error) {
  ctensorPtr0 := (*lib.Ctensor)(unsafe.Pointer(C.malloc(0)))
  ctensorPtr1 := (*lib.Ctensor)(unsafe.Pointer(uintptr(unsafe.Pointer(ctensorPtr0)) + unsafe.Sizeof(ctensorPtr0)))
  ctensorPtr2 := (*lib.Ctensor)(unsafe.Pointer(uintptr(unsafe.Pointer(ctensorPtr1)) + unsafe.Sizeof(ctensorPtr0)))
  ctensorPtr3 := (*lib.Ctensor)(unsafe.Pointer(uintptr(unsafe.Pointer(ctensorPtr2)) + unsafe.Sizeof(ctensorPtr0)))
  lib.AtgFour(ctensorPtr0, ts.ctensor)
}

func(ts *Tensor) One()(err error) {
  ptr := (*lib.Ctensor)(unsafe.Pointer(C.malloc(0)))
  lib.AtgOne(ptr, ts.ctensor)
}

func Loop() {
	for i := 0; i < 2; i++ {
		outputPtr := (*lib.Ctensor)(unsafe.Pointer(C.malloc(0)))
		defer C.free(unsafe.Pointer(outputPtr))
	}
}
`
	out, n := fixOutputBuffers(src)
	if n != 3 {
		t.Fatalf("fixed %d buffers, want 3", n)
	}
	for _, want := range []string{
		"ctensorPtr0 := (*lib.Ctensor)(C.malloc(C.size_t(4) * C.size_t(unsafe.Sizeof(uintptr(0)))))\n  defer C.free(unsafe.Pointer(ctensorPtr0))",
		"ptr := (*lib.Ctensor)(C.malloc(C.size_t(1) * C.size_t(unsafe.Sizeof(uintptr(0)))))\n  defer C.free(unsafe.Pointer(ptr))",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	if strings.Count(out, "defer C.free(unsafe.Pointer(outputPtr))") != 1 {
		t.Errorf("an already freed buffer got a second free:\n%s", out)
	}
	if strings.Contains(out, "malloc(0)") {
		t.Errorf("malloc(0) left:\n%s", out)
	}
}

func TestLibGoLinksTheNativeLibrary(t *testing.T) {
	lt := &libtorch{IncludeDirs: []string{"/usr/include/torch/csrc/api/include"}, LibDir: "/usr/lib/x86_64-linux-gnu", Version: "1.13.0", CXX11ABI: true}
	got := lt.libGo("/r/.build/native")
	for _, want := range []string{
		"package libtch",
		"// #cgo CFLAGS: -I${SRCDIR} -O1 -w\n",
		"// #cgo LDFLAGS: -L/r/.build/native -lxspantorch -Wl,-rpath,$ORIGIN -Wl,-rpath,$ORIGIN/xspan-native -Wl,-rpath,/r/.build/native -Wl,--enable-new-dtags\n",
		"import \"C\"",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("lib.go lacks %q:\n%s", want, got)
		}
	}
	// The Go side compiles no C++ and links no libtorch: the native library does.
	for _, bad := range []string{"CXXFLAGS", "-ltorch", "/usr/include/torch"} {
		if strings.Contains(got, bad) {
			t.Errorf("lib.go mentions %q:\n%s", bad, got)
		}
	}
}

// xspan's own bindings (internal/native) read the headers from the native sources and
// link exactly what libtch links; their file holds nothing but #cgo lines.
func TestNativeCgoFile(t *testing.T) {
	lt := &libtorch{IncludeDirs: []string{"/usr/include/torch/csrc/api/include"}, LibDir: "/usr/lib/x86_64-linux-gnu", Version: "1.13.0", CXX11ABI: true}
	got := nativeCgoGo("/r/.build/native")
	ld := lt.cgoDirectives("/r/.build/native")[1]
	want := "// Code generated by xspan's internal/torchsetup for this machine; DO NOT EDIT.\n\npackage native\n\n" +
		"// #cgo CFLAGS: -I/r/.build/native/src -O1 -w\n// " + ld + "\nimport \"C\"\n"
	if got != want {
		t.Errorf("cgo_flags.go:\n%s\nwant:\n%s", got, want)
	}
	if !strings.HasPrefix(ld, "#cgo LDFLAGS: -L/r/.build/native -lxspantorch ") {
		t.Errorf("libtch's LDFLAGS: %s", ld)
	}
}

// fakeLibtorch lays out a libtorch folder as a CUDA Python install has it.
func fakeLibtorch(t *testing.T, cxx11, cuda bool) string {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "include/torch/csrc/api/include/torch"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "lib"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "include/torch/csrc/api/include/torch/version.h"),
		[]byte("#pragma once\n#define TORCH_VERSION_MAJOR 2\n#define TORCH_VERSION_MINOR 11\n#define TORCH_VERSION_PATCH 0\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "lib/libtorch.so"), []byte("\x7fELF"), 0o644))
	sym := "_ZN3c106detail14torchCheckFailEPKcS2_jRKSs" // pre-C++11 ABI std::string
	if cxx11 {
		sym = "_ZN3c106detail14torchCheckFailEPKcS2_jRKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE"
	}
	must(os.WriteFile(filepath.Join(dir, "lib/libc10.so"), []byte("\x7fELF\x00"+sym+"\x00"), 0o644))
	if cuda {
		must(os.WriteFile(filepath.Join(dir, "lib/libtorch_cuda.so"), []byte("\x7fELF"), 0o644))
	}
	return dir
}

func TestLibGoForLibtorchFolder(t *testing.T) {
	t.Setenv("LIBTORCH_CXX11_ABI", "")
	dir := fakeLibtorch(t, true, true)
	lt, err := openLibtorchDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if lt.Version != "2.11.0" || !lt.CXX11ABI || !lt.CUDA {
		t.Fatalf("detected %+v", lt)
	}
	b := &nativeBuild{Src: t.TempDir(), Dir: t.TempDir(), Lib: lt}
	flags := strings.Join(b.compileFlags(), " ")
	for _, want := range []string{"-D_GLIBCXX_USE_CXX11_ABI=1", "-I" + filepath.Join(dir, "include") + " -I" + filepath.Join(dir, "include/torch/csrc/api/include"), "-DXSPAN_CUDA=1", "-fPIC"} {
		if !strings.Contains(flags, want) {
			t.Errorf("compiler flags lack %q: %s", want, flags)
		}
	}

	old := fakeLibtorch(t, false, false)
	lt, err = openLibtorchDir(old)
	if err != nil {
		t.Fatal(err)
	}
	if lt.CXX11ABI || lt.CUDA {
		t.Fatalf("pre-C++11-ABI CPU folder detected as %+v", lt)
	}
	b = &nativeBuild{Src: t.TempDir(), Dir: t.TempDir(), Lib: lt}
	if flags := strings.Join(b.compileFlags(), " "); !strings.Contains(flags, "-D_GLIBCXX_USE_CXX11_ABI=0") || strings.Contains(flags, "CUDA") {
		t.Errorf("compiler flags: %s", flags)
	}
}

func TestOpenLibtorchDirErrors(t *testing.T) {
	if _, err := openLibtorchDir(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no libtorch headers") {
		t.Fatalf("empty folder: err = %v", err)
	}
	dir := fakeLibtorch(t, true, false)
	os.Remove(filepath.Join(dir, "lib/libtorch.so"))
	if _, err := openLibtorchDir(dir); err == nil || !strings.Contains(err.Error(), "no libtorch.so") {
		t.Fatalf("folder without libtorch.so: err = %v", err)
	}
}

func TestParseTorchVersion(t *testing.T) {
	v, err := parseTorchVersion([]byte("#define TORCH_VERSION_MAJOR 1\n#define TORCH_VERSION_MINOR 13\n#define TORCH_VERSION_PATCH 0\n"))
	if err != nil || v != "1.13.0" {
		t.Fatalf("got %q, %v", v, err)
	}
	if _, err := parseTorchVersion([]byte("nothing")); err == nil {
		t.Fatal("no error for a header without version")
	}
}

func TestPatchTensorLifetime(t *testing.T) {
	src := "package ts\n\nfunc newTensor(ctensor lib.Ctensor, nameOpt ...string) *Tensor {\n\tx.d = new(bigStruct)\n\tlock.Lock()\n}\n\nfunc keep() {}\n\nfunc freeCTensor(ts *Tensor) error {\n\tlock.Lock()\n\tdelete(ExistingTensors, ts.name)\n}\n\nfunc after() {}\n"
	out, err := patchTensorLifetime(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"bigStruct", "lock.Lock", "ExistingTensors"} {
		if strings.Contains(out, gone) {
			t.Errorf("%q still in patched text:\n%s", gone, out)
		}
	}
	for _, kept := range []string{"func keep() {}", "func after() {}", "lib.AtFree(ts.ctensor)", "runtime.SetFinalizer(x, freeCTensor)"} {
		if !strings.Contains(out, kept) {
			t.Errorf("%q missing from patched text:\n%s", kept, out)
		}
	}
	if _, err := patchTensorLifetime("package ts\n"); err == nil {
		t.Fatal("no error for a file without newTensor")
	}
}

func TestPatchInPlaceHandles(t *testing.T) {
	src := "func(ts *Tensor) Add_(o *Tensor)(err error) {\n  lib.AtgAdd_(ptr, ts.ctensor, o.ctensor)\n  ts.ctensor = *ptr\n  \n  return err\n}\n"
	out, n := patchInPlaceHandles(src)
	if n != 1 || !strings.Contains(out, "  lib.AtFree(ts.ctensor)\n  ts.ctensor = *ptr\n") {
		t.Fatalf("n=%d\n%s", n, out)
	}
}

func TestReferenceBLASDetection(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"blas", "openblas-openmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, sub, "libblas.so.3"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lib := filepath.Join(dir, "lib")
	os.MkdirAll(lib, 0o755)
	link := filepath.Join(lib, "libblas.so.3")
	if err := os.Symlink(filepath.Join(dir, "blas", "libblas.so.3"), link); err != nil {
		t.Fatal(err)
	}
	if slow, _ := referenceBLAS(lib); !slow {
		t.Fatal("netlib reference BLAS not detected")
	}
	os.Remove(link)
	os.Symlink(filepath.Join(dir, "openblas-openmp", "libblas.so.3"), link)
	if slow, p := referenceBLAS(lib); slow {
		t.Fatalf("OpenBLAS taken for the reference BLAS: %s", p)
	}
}

func TestPatchGradSetEnabled(t *testing.T) {
	src := "package libtch\n\nfunc AtGradSetEnabled(b int) int {\n\tcretVal := C.at_grad_set_enabled(cbool)\n\treturn *(*int)(unsafe.Pointer(&cretVal))\n}\n\nfunc Next() {}\n"
	out, err := patchGradSetEnabled(src)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "*(*int)") || !strings.Contains(out, "return int(C.at_grad_set_enabled(C.int(b)))") || !strings.Contains(out, "func Next() {}") {
		t.Fatalf("patched:\n%s", out)
	}
}

func TestPatchKeepAlive(t *testing.T) {
	src := `package ts

import "unsafe"

func (ts *Tensor) Ge(other *Scalar, del bool) (retVal *Tensor, err error) {
	lib.AtgGe(ptr, ts.ctensor, other.cscalar)
	return
}

func Cat(tensors []*Tensor, dim int64, opt ...*Tensor) {}

func Plain(n int64, s string) {}

func (co *COptimizer) AddParam(param *Tensor) {}
`
	out, n, err := patchKeepAlive([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("patched %d functions, want 3 (Ge, Cat, AddParam)", n)
	}
	text := string(out)
	for _, want := range []string{
		"del bool) (retVal *Tensor, err error) {\n\tdefer runtime.KeepAlive(ts)\n\tdefer runtime.KeepAlive(other)\n\tlib.AtgGe",
		"opt ...*Tensor) {\n\tdefer runtime.KeepAlive(tensors)\n\tdefer runtime.KeepAlive(opt)}",
		"func Plain(n int64, s string) {}",
		"(param *Tensor) {\n\tdefer runtime.KeepAlive(param)}",
		"package ts\n\nimport \"runtime\"\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in:\n%s", want, text)
		}
	}
	if _, err := parser.ParseFile(token.NewFileSet(), "", out, 0); err != nil {
		t.Fatalf("patched source does not parse: %v", err)
	}
}

func TestReplaceLogFatal(t *testing.T) {
	src := "package nn\n\nimport (\n\t\"fmt\"\n\t\"log\"\n)\n\n// log.Fatal(err) in a comment stays.\nfunc f(err error) {\n\tif err != nil {\n\t\tlog.Fatal(err)\n\t}\n\tlog.Fatalf(\"bad %v\", fmt.Sprint(1))\n}\n"
	out, n, err := replaceLogFatal(src, "xspanlib.")
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("replaced %d calls, want 2", n)
	}
	for _, want := range []string{"\t\txspanlib.XspanFatal(err)\n", "\txspanlib.XspanFatalf(\"bad %v\"", "// log.Fatal(err) in a comment stays."} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, `"log"`) {
		t.Errorf("unused log import kept:\n%s", out)
	}
	// A file that still logs keeps its import.
	out, _, _ = replaceLogFatal("package x\n\nimport \"log\"\n\nfunc g() { log.Println(1); log.Fatal(2) }\n", "")
	if !strings.Contains(out, `import "log"`) || !strings.Contains(out, "XspanFatal(2)") {
		t.Errorf("log still used, import dropped or call kept:\n%s", out)
	}
}
