// Command gendocs writes docs.json.gz, the doc comments and declarations
// of the packages a gopeft notebook imports, for the kernel's inspect
// (shift-tab) and `name?` help. It runs from `go generate ./kernel/symbols`.
//
// Usage: go run ./gendocs -o docs.json.gz importpath...
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/build"
	"go/doc"
	"go/parser"
	"go/printer"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Entry is one documented name.
type Entry struct {
	Kind string `json:"k"` // func, method, type, var, const
	Decl string `json:"d"` // declaration without body
	Doc  string `json:"c,omitempty"`
}

// Package is one package's documentation.
type Package struct {
	Name    string           `json:"name"`
	Doc     string           `json:"doc"`
	Members map[string]Entry `json:"members"` // "Name" or "Type.Method"
}

const (
	maxDoc  = 2000
	maxDecl = 800
)

func main() {
	out := flag.String("o", "docs.json.gz", "output file")
	flag.Parse()
	dirs, err := packageDirs(flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err)
		os.Exit(1)
	}
	all := map[string]Package{}
	for _, p := range flag.Args() {
		dir, ok := dirs[p]
		if !ok {
			fmt.Fprintf(os.Stderr, "gendocs: %s not found, skipped\n", p)
			continue
		}
		pkg, err := document(p, dir)
		if err != nil {
			fmt.Fprintf(os.Stderr, "gendocs: %s: %v (skipped)\n", p, err)
			continue
		}
		all[p] = pkg
	}
	js, err := json.Marshal(all) // maps marshal sorted: the output is stable
	if err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err)
		os.Exit(1)
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(js)
	zw.Close()
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err)
		os.Exit(1)
	}
}

// packageDirs asks the go command where the packages are.
func packageDirs(paths []string) (map[string]string, error) {
	args := append([]string{"list", "-e", "-f", "{{.ImportPath}} {{.Dir}}"}, paths...)
	out, err := exec.Command("go", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	dirs := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if p, d, ok := strings.Cut(l, " "); ok && d != "" {
			dirs[p] = d
		}
	}
	return dirs, nil
}

func document(path, dir string) (Package, error) {
	fset := token.NewFileSet()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return Package{}, err
	}
	var files []*ast.File
	for _, e := range ents {
		n := e.Name()
		if !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		if ok, _ := build.Default.MatchFile(dir, n); !ok {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, parser.ParseComments)
		if err != nil {
			return Package{}, err
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		return Package{}, fmt.Errorf("no Go files")
	}
	d, err := doc.NewFromFiles(fset, files, path)
	if err != nil {
		return Package{}, err
	}
	pkg := Package{Name: d.Name, Doc: clip(d.Doc, maxDoc), Members: map[string]Entry{}}
	add := func(name, kind string, decl any, text string) {
		pkg.Members[name] = Entry{Kind: kind, Decl: clip(declText(fset, decl), maxDecl), Doc: clip(text, maxDoc)}
	}
	values := func(vs []*doc.Value, kind string) {
		for _, v := range vs {
			for _, n := range v.Names {
				if token.IsExported(n) {
					add(n, kind, v.Decl, v.Doc)
				}
			}
		}
	}
	funcs := func(fs []*doc.Func, recv string) {
		for _, f := range fs {
			if !token.IsExported(f.Name) {
				continue
			}
			name, kind := f.Name, "func"
			if recv != "" && f.Recv != "" {
				name, kind = recv+"."+f.Name, "method"
			}
			add(name, kind, f.Decl, f.Doc)
		}
	}
	values(d.Consts, "const")
	values(d.Vars, "var")
	funcs(d.Funcs, "")
	for _, t := range d.Types {
		if !token.IsExported(t.Name) {
			continue
		}
		add(t.Name, "type", t.Decl, t.Doc)
		values(t.Consts, "const")
		values(t.Vars, "var")
		funcs(t.Funcs, "")
		funcs(t.Methods, t.Name)
	}
	return pkg, nil
}

func declText(fset *token.FileSet, decl any) string {
	if f, ok := decl.(*ast.FuncDecl); ok {
		c := *f
		c.Body = nil
		c.Doc = nil
		decl = &c
	}
	if g, ok := decl.(*ast.GenDecl); ok {
		c := *g
		c.Doc = nil
		decl = &c
	}
	var b bytes.Buffer
	cfg := printer.Config{Mode: printer.UseSpaces | printer.TabIndent, Tabwidth: 8}
	if err := cfg.Fprint(&b, fset, decl); err != nil {
		return ""
	}
	return b.String()
}

// clip cuts s to about n bytes at a line end.
func clip(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	cut := strings.LastIndexByte(s[:n], '\n')
	if cut < n/2 {
		cut = n
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
	}
	return s[:cut] + "\n…"
}
