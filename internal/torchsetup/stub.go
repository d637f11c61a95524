package main

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// A generated wrapper in gotch's torch_api_generated.cpp.h looks like
//
//	void atg_foo(tensor *out__, tensor self) {
//	  PROTECT(
//	    ...
//	  )
//	}
//
// with the signature on one line and the closing brace alone at the start of a line.
var wrapperStart = regexp.MustCompile(`^(void|int|int64_t|double|bool|tensor|scalar)\s+\*?\s*(atg_\w+)\s*\(.*\)\s*\{\s*$`)

// diagLines returns the line numbers in file that the compiler's diagnostics point at:
// errors, and the "required from here" lines of template errors whose error itself stands
// in a system header. file is matched by base name, as gcc prints it relative to the
// directory of the including file.
func diagLines(compilerOutput []byte, file string) []int {
	seen := map[int]bool{}
	sc := bufio.NewScanner(bytes.NewReader(compilerOutput))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		// "In file included from X:12," and "from X:12:" name includers, not faults.
		if strings.HasPrefix(line, "In file included from") || strings.HasPrefix(line, "from ") {
			continue
		}
		i := strings.Index(line, file+":")
		if i < 0 || (i > 0 && line[i-1] != '/') {
			continue
		}
		rest := line[i+len(file)+1:]
		j := strings.IndexByte(rest, ':')
		if j <= 0 {
			continue
		}
		n, err := strconv.Atoi(rest[:j])
		if err != nil {
			continue
		}
		seen[n] = true
	}
	lines := make([]int, 0, len(seen))
	for n := range seen {
		lines = append(lines, n)
	}
	sort.Ints(lines)
	return lines
}

// wrapper is one generated atg_* function: its name, return type and 1-based line span.
type wrapper struct {
	name       string
	returnType string
	start, end int
}

// findWrappers lists the atg_* functions of a generated source file.
func findWrappers(src []byte) []wrapper {
	var ws []wrapper
	lines := strings.Split(string(src), "\n")
	for i := 0; i < len(lines); i++ {
		m := wrapperStart.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		w := wrapper{name: m[2], returnType: m[1], start: i + 1}
		for j := i + 1; j < len(lines); j++ {
			if strings.HasPrefix(lines[j], "}") {
				w.end = j + 1
				break
			}
		}
		if w.end == 0 {
			continue
		}
		ws = append(ws, w)
		i = w.end - 1
	}
	return ws
}

// enclosing maps line numbers to the wrappers that contain them. Lines outside every
// wrapper are returned separately: a fault there cannot be stubbed away.
func enclosing(ws []wrapper, lines []int) (hit []wrapper, outside []int) {
	picked := map[string]bool{}
	for _, n := range lines {
		k := sort.Search(len(ws), func(i int) bool { return ws[i].end >= n })
		if k < len(ws) && ws[k].start <= n && n <= ws[k].end {
			if !picked[ws[k].name] {
				picked[ws[k].name] = true
				hit = append(hit, ws[k])
			}
			continue
		}
		outside = append(outside, n)
	}
	return hit, outside
}

// stubWrappers rewrites the bodies of the named wrappers so that calling one sets
// gotch's last-error slot to a message naming the op and the libtorch version, instead
// of calling an op that the installed libtorch lacks.
func stubWrappers(src []byte, stub []wrapper, torchVersion string) []byte {
	byStart := map[int]wrapper{}
	for _, w := range stub {
		byStart[w.start] = w
	}
	lines := strings.Split(string(src), "\n")
	var out strings.Builder
	out.Grow(len(src))
	for i := 0; i < len(lines); i++ {
		w, ok := byStart[i+1]
		if !ok {
			out.WriteString(lines[i])
			if i < len(lines)-1 {
				out.WriteByte('\n')
			}
			continue
		}
		out.WriteString(lines[i])
		out.WriteByte('\n')
		op := strings.TrimPrefix(w.name, "atg_")
		fmt.Fprintf(&out, "  // xspan set-up: stubbed, libtorch %s cannot compile this wrapper.\n", torchVersion)
		fmt.Fprintf(&out, "  torch_last_err = strdup(%s);\n",
			strconv.Quote(fmt.Sprintf("op %s is not available: gotch's wrapper %s was stubbed by xspan's set-up because the installed libtorch %s lacks it", op, w.name, torchVersion)))
		if w.returnType != "void" {
			out.WriteString("  return 0;\n")
		}
		out.WriteString("}")
		if w.end < len(lines) {
			out.WriteByte('\n')
		}
		i = w.end - 1
	}
	return []byte(out.String())
}
