// Command goconst prints the value of a string constant declared in a Go source file:
//
//	goconst FILE NAME
//
// The offline kind node image build uses it to read kind's default CNI and storage manifests
// (the constants defaultCNIManifest and defaultStorageManifest in kind's
// pkg/build/nodeimage) out of the kind module it builds, so that the node image carries exactly
// the manifests of the pinned kind release without a copy of them in this repository.
package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: goconst FILE NAME")
		os.Exit(2)
	}
	value, err := stringConstant(os.Args[1], os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "goconst:", err)
		os.Exit(1)
	}
	fmt.Print(value)
}

func stringConstant(path, name string) (string, error) {
	file, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		return "", err
	}
	constants := map[string]ast.Expr{}
	for _, declaration := range file.Decls {
		group, ok := declaration.(*ast.GenDecl)
		if !ok || group.Tok != token.CONST {
			continue
		}
		for _, spec := range group.Specs {
			values := spec.(*ast.ValueSpec)
			for i, ident := range values.Names {
				if i < len(values.Values) {
					constants[ident.Name] = values.Values[i]
				}
			}
		}
	}
	expression, ok := constants[name]
	if !ok {
		return "", fmt.Errorf("no constant %s in %s", name, path)
	}
	return evaluate(expression, constants, path)
}

// evaluate folds the constant string expressions kind writes: literals, "+" and other
// constants of the same file.
func evaluate(expression ast.Expr, constants map[string]ast.Expr, path string) (string, error) {
	switch e := expression.(type) {
	case *ast.BasicLit:
		if e.Kind == token.STRING {
			return strconv.Unquote(e.Value)
		}
	case *ast.ParenExpr:
		return evaluate(e.X, constants, path)
	case *ast.Ident:
		if referenced, ok := constants[e.Name]; ok {
			return evaluate(referenced, constants, path)
		}
	case *ast.BinaryExpr:
		if e.Op == token.ADD {
			left, err := evaluate(e.X, constants, path)
			if err != nil {
				return "", err
			}
			right, err := evaluate(e.Y, constants, path)
			return left + right, err
		}
	}
	return "", fmt.Errorf("%s: cannot evaluate %T as a constant string", path, expression)
}
