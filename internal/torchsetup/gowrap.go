package main

import (
	"fmt"
	"regexp"
	"strings"
)

// gotch's Go wrappers take the output slots of a C call from C.malloc(0):
//
//	ptr := (*lib.Ctensor)(unsafe.Pointer(C.malloc(0)))
//	ctensorPtr1 := (*lib.Ctensor)(unsafe.Pointer(uintptr(unsafe.Pointer(ctensorPtr0)) + unsafe.Sizeof(ctensorPtr0)))
//
// The buffer is never freed (a leak on every op) and is too small for ops that write four
// or more outputs (a heap overflow). fixOutputBuffers sizes each buffer for the slots that
// the function derives from it and frees it when the function returns, after the outputs
// have been copied into Go values.
var (
	mallocZero = regexp.MustCompile(`^(\s*)(\w+) := \(\*lib\.Ctensor\)\(unsafe\.Pointer\(C\.malloc\(0\)\)\)\s*$`)
	derivedPtr = regexp.MustCompile(`^\s*(\w+) := \(\*lib\.Ctensor\)\(unsafe\.Pointer\(uintptr\(unsafe\.Pointer\((\w+)\)\) \+ unsafe\.Sizeof\(\w+\)\)\)\s*$`)
	funcStart  = regexp.MustCompile(`^func[ (]`)
)

// fixOutputBuffers rewrites one Go source file; it returns the new text and how many
// buffers it fixed.
func fixOutputBuffers(src string) (string, int) {
	lines := strings.Split(src, "\n")
	fixed := 0
	for i, line := range lines {
		m := mallocZero.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		indent, name := m[1], m[2]
		// Count the slots derived from this buffer, following the chain p0 -> p1 -> p2 ...
		slots := 1
		chain := map[string]bool{name: true}
		alreadyFreed := false
		for j := i + 1; j < len(lines) && !funcStart.MatchString(lines[j]); j++ {
			if d := derivedPtr.FindStringSubmatch(lines[j]); d != nil && chain[d[2]] {
				chain[d[1]] = true
				slots++
			}
			if strings.Contains(lines[j], "C.free(unsafe.Pointer("+name+"))") {
				alreadyFreed = true
			}
		}
		repl := fmt.Sprintf("%s%s := (*lib.Ctensor)(C.malloc(C.size_t(%d) * C.size_t(unsafe.Sizeof(uintptr(0)))))", indent, name, slots)
		if !alreadyFreed {
			repl += fmt.Sprintf("\n%sdefer C.free(unsafe.Pointer(%s))", indent, name)
		}
		lines[i] = repl
		fixed++
	}
	return strings.Join(lines, "\n"), fixed
}
