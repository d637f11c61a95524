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

// wrapper is one function of a C++ file: its name, return type and 1-based line span;
// body is the line of the brace that opens its body.
type wrapper struct {
	name             string
	returnType       string
	start, body, end int
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
		w := wrapper{name: m[2], returnType: m[1], start: i + 1, body: i + 1, end: closingLine(lines, i+1)}
		if w.end == 0 {
			continue
		}
		ws = append(ws, w)
		i = w.end - 1
	}
	return ws
}

// closingLine is the 1-based number of the first line from index from on that starts
// with "}" (a body's end at column 0), or 0 if none does.
func closingLine(lines []string, from int) int {
	for j := from; j < len(lines); j++ {
		if strings.HasPrefix(lines[j], "}") {
			return j + 1
		}
	}
	return 0
}

// A hand-written function (gotch's torch_api.cpp, xspan's own C++) starts at column 0 with
// its return type, may spread its parameters over several lines, and ends with a line
// that starts with "}" (or on its first line, for a one-liner).
var (
	functionStart = regexp.MustCompile(`^(template\s*<[^>]*>\s*)?([A-Za-z_][\w:<>, ]*?[\s*&]+)(\w+)\s*\(`)
	notFunction   = regexp.MustCompile(`^(using|typedef|struct|class|namespace|extern|return|if|else|for|while|switch|#)\b`)
)

// cReturnType matches the return types of functions that Go calls: set the error slot and
// return the zero value.
var cReturnType = regexp.MustCompile(`^(int|int64_t|int32_t|double|float|bool|size_t|tensor|scalar|optimizer|module|ivalue|.*\*)$`)

// findFunctions lists the top-level functions of a hand-written C++ file.
func findFunctions(src []byte) []wrapper {
	var ws []wrapper
	lines := strings.Split(string(src), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if line == "" || line[0] == ' ' || line[0] == '\t' || notFunction.MatchString(line) {
			continue
		}
		m := functionStart.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		// The body opens on the first line with a "{" before any ";" (a declaration).
		body := -1
		for j := i; j < len(lines) && j < i+12; j++ {
			o, semi := strings.Index(lines[j], "{"), strings.Index(lines[j], ";")
			if o >= 0 && (semi < 0 || o < semi) {
				body = j
				break
			}
			if semi >= 0 {
				break
			}
		}
		if body < 0 {
			continue
		}
		w := wrapper{name: m[3], returnType: strings.TrimSpace(m[2]), start: i + 1, body: body + 1}
		if strings.HasSuffix(strings.TrimSpace(lines[body]), "}") && strings.Count(lines[body], "{") == strings.Count(lines[body], "}") {
			w.end = body + 1 // a one-liner
		} else {
			w.end = closingLine(lines, body+1)
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

// stubWrappers rewrites the bodies of the given functions so that calling one sets
// gotch's last-error slot to a message naming it and the libtorch version, instead of
// calling what the installed libtorch lacks. A function that returns a value returns its
// zero value (a null tensor, 0, false); a C++ helper throws instead.
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
		body := w.body
		if body == 0 {
			body = w.start
		}
		for j := i; j < body-1; j++ {
			out.WriteString(lines[j])
			out.WriteByte('\n')
		}
		open := lines[body-1]
		out.WriteString(open[:strings.Index(open, "{")+1])
		out.WriteByte('\n')
		what := "function " + w.name
		if op, ok := strings.CutPrefix(w.name, "atg_"); ok {
			what = "op " + op
		}
		msg := strconv.Quote(fmt.Sprintf("%s is not available: %s was stubbed by xspan's set-up because the installed libtorch %s cannot compile it", what, w.name, torchVersion))
		fmt.Fprintf(&out, "  // xspan set-up: stubbed, libtorch %s cannot compile this function.\n", torchVersion)
		switch rt := strings.TrimSpace(w.returnType); {
		case rt == "void":
			fmt.Fprintf(&out, "  torch_last_err = strdup(%s);\n", msg)
		case cReturnType.MatchString(rt):
			fmt.Fprintf(&out, "  torch_last_err = strdup(%s);\n  return {};\n", msg)
		default:
			// A C++ helper, called from inside another function's PROTECT.
			fmt.Fprintf(&out, "  throw std::runtime_error(%s);\n", msg)
		}
		out.WriteString("}")
		if w.end < len(lines) {
			out.WriteByte('\n')
		}
		i = w.end - 1
	}
	return []byte(out.String())
}
