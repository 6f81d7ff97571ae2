//go:build !gopeft_norun

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/gopeft/gopeft/kernel/nbrun"
)

// runMain runs `gopeft run NOTEBOOK.ipynb [-o OUT.ipynb] [--timeout D]`:
// it executes the notebook's code cells in order with the kernel's engine,
// no Python and no Jupyter, and writes the outputs (images included) in
// nbformat 4.5. It exits 1 naming the cell when one fails, 2 on bad usage.
func runMain(args []string) int {
	fs := flag.NewFlagSet("gopeft run", flag.ContinueOnError)
	out := fs.String("o", "", "write the executed notebook to `OUT.ipynb` (default: replace NOTEBOOK)")
	timeout := fs.Duration("timeout", 0, "interrupt a cell that runs longer than `D` (e.g. 2m; 0: no limit)")
	quiet := fs.Bool("q", false, "do not print a line per cell on stderr")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: gopeft run NOTEBOOK.ipynb [-o OUT.ipynb] [--timeout D] [-q]")
		fs.PrintDefaults()
	}
	// Flags may come before or after the notebook.
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return 2
	}
	in := rest[0]
	if err := fs.Parse(rest[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	opt := nbrun.Options{CellTimeout: *timeout}
	if !*quiet {
		opt.Log = os.Stderr
	}
	t0 := time.Now()
	err := nbrun.RunFile(ctx, in, *out, opt)
	dest := *out
	if dest == "" {
		dest = in
	}
	var ce *nbrun.CellError
	switch {
	case errors.As(err, &ce):
		fmt.Fprintf(os.Stderr, "gopeft run: %s: %v\n(outputs up to the failing cell written to %s)\n", in, err, dest)
		return 1
	case err != nil:
		fmt.Fprintf(os.Stderr, "gopeft run: %v\n", err)
		return 1
	}
	if !*quiet {
		fmt.Fprintf(os.Stderr, "gopeft run: %s executed in %s, written to %s\n", in, time.Since(t0).Round(time.Millisecond), dest)
	}
	return 0
}
