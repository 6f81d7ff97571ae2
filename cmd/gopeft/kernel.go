package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/gopeft/gopeft/kernel"
)

// kernelMain runs `gopeft kernel -f CONNECTION_FILE`.
func kernelMain(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("gopeft kernel", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var file string
	fs.StringVar(&file, "f", "", "Jupyter connection file")
	fs.StringVar(&file, "connection-file", "", "Jupyter connection file (same as -f)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if file == "" && fs.NArg() == 1 {
		file = fs.Arg(0)
	}
	if file == "" {
		fmt.Fprintln(stderr, "usage: gopeft kernel -f CONNECTION_FILE")
		return 2
	}
	if err := kernel.Run(file); err != nil {
		fmt.Fprintf(stderr, "gopeft kernel: %v\n", err)
		return 1
	}
	return 0
}
