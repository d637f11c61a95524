package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// gotch ends the process with log.Fatal wherever an op of a Must* wrapper fails (2,500
// sites) and in a few other places: one bad request would take a server down with every
// other request in flight. The patched copy panics with *libtch.PanicError instead, which
// xspan recovers at a training step or a request (torchrt.Recover) and reports as an error.

// panicErrorGo is added to the copy's libtch package (in xspan_extra.go).
const panicErrorGo = `
// PanicError is what this patched gotch panics with where gotch called log.Fatal: an op
// of a Must* wrapper failed, or gotch met a state it cannot go on from. Recover it at a
// step or request boundary (xspan's torchrt.Recover) and treat it as that unit's error.
type PanicError struct{ Err error }

func (e *PanicError) Error() string { return "libtorch: " + e.Err.Error() }
func (e *PanicError) Unwrap() error { return e.Err }

// XspanFatal replaces log.Fatal in the patched copy.
func XspanFatal(v ...any) {
	if len(v) == 1 {
		if err, ok := v[0].(error); ok {
			panic(&PanicError{Err: err})
		}
	}
	panic(&PanicError{Err: errors.New(strings.TrimSpace(fmt.Sprint(v...)))})
}

// XspanFatalf replaces log.Fatalf in the patched copy.
func XspanFatalf(format string, v ...any) {
	panic(&PanicError{Err: fmt.Errorf(strings.TrimSpace(format), v...)})
}

// XspanFatalln replaces log.Fatalln in the patched copy.
func XspanFatalln(v ...any) { XspanFatal(v...) }
`

var packageClause = regexp.MustCompile(`(?m)^package ([A-Za-z_][A-Za-z0-9_]*)`)

// replaceLogFatal rewrites the log.Fatal, log.Fatalf and log.Fatalln calls of one file
// (calls, not comments) into calls of prefix+"XspanFatal…", dropping the "log" import
// when nothing else uses it.
func replaceLogFatal(src, prefix string) (string, int, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "", src, parser.SkipObjectResolution)
	if err != nil {
		return "", 0, err
	}
	type edit struct {
		from, to int
		text     string
	}
	var edits []edit
	logUses := 0
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if id, ok := sel.X.(*ast.Ident); ok && id.Name == "log" {
			logUses++
			switch sel.Sel.Name {
			case "Fatal", "Fatalf", "Fatalln":
				edits = append(edits, edit{fset.Position(sel.Pos()).Offset, fset.Position(sel.End()).Offset, prefix + "Xspan" + sel.Sel.Name})
			}
		}
		return true
	})
	calls := len(edits)
	if calls == 0 {
		return src, 0, nil
	}
	if logUses == calls {
		for _, im := range f.Imports {
			if im.Path.Value == `"log"` && im.Name == nil {
				edits = append(edits, edit{fset.Position(im.Pos()).Offset, fset.Position(im.End()).Offset, ""})
			}
		}
	}
	sort.Slice(edits, func(i, j int) bool { return edits[i].from > edits[j].from })
	for _, e := range edits {
		src = src[:e.from] + e.text + src[e.to:]
	}
	// A single-spec import declaration left empty ("import ") is removed whole.
	src = strings.Replace(src, "\nimport \n", "\n", 1)
	return src, calls, nil
}

// patchLogFatalTree applies replaceLogFatal to every Go file of the copy; files outside
// libtch import it as xspanlib (a second import of a package under another name is legal).
func patchLogFatalTree(root string) (int, error) {
	total := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dir := filepath.Dir(path)
		inLibtch := filepath.Base(dir) == "libtch"
		prefix := "xspanlib."
		if inLibtch {
			prefix = ""
		}
		out, n, err := replaceLogFatal(string(b), prefix)
		if err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		if n == 0 {
			return nil
		}
		if !inLibtch {
			out = addNamedImport(out, "xspanlib", "github.com/sugarme/gotch/libtch")
		}
		total += n
		return os.WriteFile(path, []byte(out), 0o644)
	})
	return total, err
}

// addNamedImport adds `import name "path"` after the package clause of a Go file.
func addNamedImport(src, name, path string) string {
	loc := packageClause.FindStringIndex(src)
	if loc == nil {
		return src
	}
	return src[:loc[1]] + fmt.Sprintf("\n\nimport %s %q\n", name, path) + src[loc[1]:]
}
