// Command gopeft is the gopeft binary: a Jupyter kernel for Go in which
// parameter-efficient fine-tuning is the subject.
//
//	gopeft install [--user | --prefix DIR | --sys-prefix]   write the kernelspec
//	gopeft kernel -f CONNECTION_FILE                        run the kernel (Jupyter calls this)
//	gopeft run NOTEBOOK.ipynb [-o OUT.ipynb]                execute a notebook headlessly
//	gopeft analyze CKPT [CKPT2] [-top k] [-csv OUT.csv] [-md] rank analysis of checkpoints
//	gopeft version                                          print the version
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/gopeft/gopeft/kernel"
)

func main() {
	os.Exit(mainArgs(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: gopeft <command> [arguments]

commands:
  install [--user | --prefix DIR | --sys-prefix] [--name NAME]
                 write the Jupyter kernelspec "Go (gopeft)"
  kernel -f CONNECTION_FILE
                 run the kernel (Jupyter starts it from the kernelspec)
  run NOTEBOOK.ipynb [-o OUT.ipynb]
                 execute a notebook headlessly, without Jupyter or Python
  analyze CKPT [CKPT2] [-top k] [-csv OUT.csv] [-md]
                 rank analysis of a safetensors checkpoint, or of the update
                 between two (streamed tensor by tensor)
  version        print the version
`

func mainArgs(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "install":
		return installMain(args[1:], stdout, stderr)
	case "kernel":
		return kernelMain(args[1:], stderr)
	case "run":
		return runMain(args[1:])
	case "analyze":
		return analyzeMain(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "gopeft %s (%s %s/%s)\n", kernel.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "gopeft: unknown command %q\n\n%s", args[0], usage)
	return 2
}
