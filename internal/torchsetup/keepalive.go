package main

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// gotch frees tensors and scalars in finalizers, and its wrappers pass the C handle
// (ts.ctensor, other.cscalar) to libtorch without touching the Go object again. Once the
// handle is read, the object is garbage: a collection that starts while libtorch runs the
// op may finalize it and free the tensor that libtorch is reading (seen as SIGSEGV in
// atg_add and as "INTERNAL ASSERT FAILED" errors under concurrent generation). The patch
// makes every function of the copy that takes tensors or scalars keep them reachable
// until it returns:
//
//	func (ts *Tensor) Ge(other *Scalar, del bool) (retVal *Tensor, err error) {
//		defer runtime.KeepAlive(ts)
//		defer runtime.KeepAlive(other)
//		...
//
// A slice of tensors is kept alive through its backing array, a struct (an IValue, a
// named tensor) through its fields.

// keepAliveType matches the parameter types whose values must outlive the C call.
var keepAliveType = regexp.MustCompile(`^(\.\.\.|\[\])?\*?(ts\.)?(Tensor|Scalar|IValue|NamedTensor)$`)

// patchKeepAlive inserts the defers into one Go source file and returns the new text and
// the number of functions changed.
func patchKeepAlive(src []byte) ([]byte, int, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "", src, parser.SkipObjectResolution)
	if err != nil {
		return nil, 0, err
	}
	type insert struct {
		at   int
		text string
	}
	var ins []insert
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Body == nil {
			continue
		}
		var names []string
		fields := fn.Type.Params.List
		if fn.Recv != nil {
			fields = append(append([]*ast.Field{}, fn.Recv.List...), fields...)
		}
		for _, fld := range fields {
			if !keepAliveType.MatchString(typeString(src, fset, fld.Type)) {
				continue
			}
			for _, n := range fld.Names {
				if n.Name != "_" {
					names = append(names, n.Name)
				}
			}
		}
		if len(names) == 0 {
			continue
		}
		var b strings.Builder
		for _, n := range names {
			fmt.Fprintf(&b, "\n\tdefer runtime.KeepAlive(%s)", n)
		}
		ins = append(ins, insert{at: fset.Position(fn.Body.Lbrace).Offset + 1, text: b.String()})
	}
	if len(ins) == 0 {
		return src, 0, nil
	}
	sort.Slice(ins, func(i, j int) bool { return ins[i].at < ins[j].at })
	var out bytes.Buffer
	prev := 0
	for _, in := range ins {
		out.Write(src[prev:in.at])
		out.WriteString(in.text)
		prev = in.at
	}
	out.Write(src[prev:])
	res := out.Bytes()
	if !importsPackage(f, "runtime") {
		res, err = addImport(res, f, fset, "runtime")
		if err != nil {
			return nil, 0, err
		}
	}
	return res, len(ins), nil
}

// typeString returns a type expression as written in the source.
func typeString(src []byte, fset *token.FileSet, e ast.Expr) string {
	return strings.Join(strings.Fields(string(src[fset.Position(e.Pos()).Offset:fset.Position(e.End()).Offset])), "")
}

func importsPackage(f *ast.File, path string) bool {
	for _, im := range f.Imports {
		if strings.Trim(im.Path.Value, `"`) == path && im.Name == nil {
			return true
		}
	}
	return false
}

// addImport adds an import after the package clause of src (parsed as f).
func addImport(src []byte, f *ast.File, fset *token.FileSet, path string) ([]byte, error) {
	at := fset.Position(f.Name.End()).Offset
	return append(append(append([]byte{}, src[:at]...), []byte("\n\nimport "+fmt.Sprintf("%q", path)+"\n")...), src[at:]...), nil
}

// keepAliveDirs are the packages of gotch whose functions pass C handles to libtorch.
var keepAliveDirs = []string{"ts"}

// patchKeepAliveTree applies patchKeepAlive to every Go file of the copy's ts package.
func patchKeepAliveTree(root string) (int, error) {
	total := 0
	for _, dir := range keepAliveDirs {
		files, err := filepath.Glob(filepath.Join(root, dir, "*.go"))
		if err != nil {
			return 0, err
		}
		for _, path := range files {
			src, err := os.ReadFile(path)
			if err != nil {
				return 0, err
			}
			out, n, err := patchKeepAlive(src)
			if err != nil {
				return 0, fmt.Errorf("keep-alive patch of %s: %v", path, err)
			}
			if n == 0 {
				continue
			}
			if err := os.WriteFile(path, out, 0o644); err != nil {
				return 0, err
			}
			total += n
		}
	}
	return total, nil
}
