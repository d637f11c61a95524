package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// libtorch describes the libtorch that gotch is built against.
type libtorch struct {
	// Dir is the folder named by $LIBTORCH, or "" for the system's (Debian's) libtorch.
	Dir string
	// IncludeDirs and LibDir are where its headers and shared libraries are.
	IncludeDirs []string
	LibDir      string
	Version     string // e.g. "1.13.0", from torch/version.h
	CXX11ABI    bool   // the C++ ABI it was built with (_GLIBCXX_USE_CXX11_ABI)
	CUDA        bool   // it ships libtorch_cuda
}

// systemLibDirs are where Debian installs libtorch's shared libraries.
var systemLibDirs = []string{"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib", "/usr/local/lib"}

var errNoLibtorch = errors.New("no libtorch found")

// findSystemLibtorch looks for Debian's libtorch-dev (headers and libtorch.so).
func findSystemLibtorch() (*libtorch, error) {
	hdr := "/usr/include/torch/csrc/api/include/torch/version.h"
	if _, err := os.Stat(hdr); err != nil {
		return nil, errNoLibtorch
	}
	lt := &libtorch{IncludeDirs: []string{"/usr/include/torch/csrc/api/include"}}
	for _, d := range systemLibDirs {
		if _, err := os.Stat(filepath.Join(d, "libtorch.so")); err == nil {
			lt.LibDir = d
			break
		}
	}
	if lt.LibDir == "" {
		return nil, errNoLibtorch
	}
	return lt, lt.fill(hdr)
}

// openLibtorchDir describes the libtorch folder dir ($LIBTORCH): a libtorch archive or
// the torch folder of a Python install, both laid out as include/ and lib/.
func openLibtorchDir(dir string) (*libtorch, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	hdr := filepath.Join(abs, "include/torch/csrc/api/include/torch/version.h")
	if _, err := os.Stat(hdr); err != nil {
		return nil, fmt.Errorf("LIBTORCH=%s: no libtorch headers there (expected %s)", dir, hdr)
	}
	lib := filepath.Join(abs, "lib")
	if _, err := os.Stat(filepath.Join(lib, "libtorch.so")); err != nil {
		return nil, fmt.Errorf("LIBTORCH=%s: no libtorch.so in %s", dir, lib)
	}
	lt := &libtorch{
		Dir:         abs,
		IncludeDirs: []string{filepath.Join(abs, "include"), filepath.Join(abs, "include/torch/csrc/api/include")},
		LibDir:      lib,
	}
	_, cudaErr := os.Stat(filepath.Join(lib, "libtorch_cuda.so"))
	lt.CUDA = cudaErr == nil
	return lt, lt.fill(hdr)
}

var versionDefine = regexp.MustCompile(`#define\s+TORCH_VERSION_(MAJOR|MINOR|PATCH)\s+(\d+)`)

// fill reads the version from version.h and the C++ ABI from libc10.so.
func (lt *libtorch) fill(versionHeader string) error {
	b, err := os.ReadFile(versionHeader)
	if err != nil {
		return err
	}
	v, err := parseTorchVersion(b)
	if err != nil {
		return fmt.Errorf("%s: %v", versionHeader, err)
	}
	lt.Version = v
	if env := os.Getenv("LIBTORCH_CXX11_ABI"); env == "0" || env == "1" {
		lt.CXX11ABI = env == "1"
		return nil
	}
	c10 := filepath.Join(lt.LibDir, "libc10.so")
	lib, err := os.ReadFile(c10)
	if err != nil {
		return fmt.Errorf("reading %s to find its C++ ABI: %v (set LIBTORCH_CXX11_ABI=0 or 1)", c10, err)
	}
	lt.CXX11ABI = usesCXX11ABI(lib)
	return nil
}

// parseTorchVersion reads TORCH_VERSION_MAJOR/MINOR/PATCH from torch/version.h.
func parseTorchVersion(header []byte) (string, error) {
	parts := map[string]string{}
	for _, m := range versionDefine.FindAllSubmatch(header, -1) {
		parts[string(m[1])] = string(m[2])
	}
	if parts["MAJOR"] == "" || parts["MINOR"] == "" {
		return "", errors.New("no TORCH_VERSION_MAJOR/MINOR defines")
	}
	if parts["PATCH"] == "" {
		parts["PATCH"] = "0"
	}
	return parts["MAJOR"] + "." + parts["MINOR"] + "." + parts["PATCH"], nil
}

// usesCXX11ABI tells from a shared library's symbol names whether it was built with the
// C++11 ABI of libstdc++: its std::string parameters then mangle as std::__cxx11::basic_string.
func usesCXX11ABI(sharedLib []byte) bool {
	return bytes.Contains(sharedLib, []byte("St7__cxx1112basic_string"))
}

// cgoDirectives returns the #cgo lines of libtch/lib.go: the Go side needs only gotch's C
// header and links the native library in the folder native. The binary looks for the
// library beside itself, in xspan-native/ beside itself (make build's bundle), then in
// native (RUNPATH, so LD_LIBRARY_PATH overrides all three).
func (lt *libtorch) cgoDirectives(native string) []string {
	return []string{"#cgo CFLAGS: -I${SRCDIR} -O1 -w", nativeLDFLAGS(native)}
}

// nativeLDFLAGS is the #cgo line that links the native library in the folder native.
func nativeLDFLAGS(native string) string {
	return "#cgo LDFLAGS: -L" + native + " -l" + nativeLibName + " -Wl,-rpath,$ORIGIN -Wl,-rpath,$ORIGIN/xspan-native -Wl,-rpath," + native + " -Wl,--enable-new-dtags"
}

// libGo returns the text of libtch/lib.go.
func (lt *libtorch) libGo(native string) string {
	return cgoFile("libtch", lt.cgoDirectives(native))
}

// nativeCgoGo returns the text of the repository's internal/native/cgo_flags.go: xspan's
// own bindings read gotch's C header and xspan's from the native sources (where the
// set-up keeps both) and link the same library as libtch.
func nativeCgoGo(native string) string {
	return cgoFile("native", []string{"#cgo CFLAGS: -I" + filepath.Join(native, "src") + " -O1 -w", nativeLDFLAGS(native)})
}

// nativeCgoFile is where the set-up writes nativeCgoGo, relative to the repository.
const nativeCgoFile = "internal/native/cgo_flags.go"

// cgoFile is a Go file of package pkg that holds only #cgo lines.
func cgoFile(pkg string, directives []string) string {
	var b strings.Builder
	b.WriteString("// Code generated by xspan's internal/torchsetup for this machine; DO NOT EDIT.\n\n")
	b.WriteString("package " + pkg + "\n\n")
	for _, l := range directives {
		b.WriteString("// " + l + "\n")
	}
	b.WriteString("import \"C\"\n")
	return b.String()
}

// compilerFlags are the flags for checking torch_api.cpp with g++ -fsyntax-only: those of
// the cgo CXXFLAGS, with ${SRCDIR} replaced by the libtch folder.
func (lt *libtorch) compilerFlags(srcDir string) []string {
	flags := []string{"-std=c++17", "-fsyntax-only", "-w", "-fmax-errors=0", "-I" + srcDir}
	if lt.CXX11ABI {
		flags = append(flags, "-D_GLIBCXX_USE_CXX11_ABI=1")
	} else {
		flags = append(flags, "-D_GLIBCXX_USE_CXX11_ABI=0")
	}
	for _, d := range lt.IncludeDirs {
		flags = append(flags, "-I"+d)
	}
	return flags
}

func (lt *libtorch) String() string {
	where := "system (Debian libtorch-dev)"
	if lt.Dir != "" {
		where = lt.Dir
	}
	dev := "CPU"
	if lt.CUDA {
		dev = "CUDA"
	}
	abi := 0
	if lt.CXX11ABI {
		abi = 1
	}
	return fmt.Sprintf("libtorch %s (%s, %s, C++11 ABI %d)", lt.Version, where, dev, abi)
}
