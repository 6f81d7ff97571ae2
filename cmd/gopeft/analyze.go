package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/gopeft/gopeft/peft/ckpt"
	"github.com/gopeft/gopeft/viz"
)

const analyzeUsage = `usage: gopeft analyze CKPT [CKPT2] [-top k] [-csv OUT.csv] [-md] [-png OUT.png] [-atol A] [-rtol R] [-q]

With one checkpoint, prints for every 2-D weight its shape, norms, effective
and stable rank, the power-law α of its ESD and its Marchenko–Pastur outliers.
With two (a base and its fine-tune, same names and shapes), prints for every
update ΔW = W2 − W1 its sparsity, rank and the similarity φ_k of W1's and W2's
top-k singular subspaces. CKPT is a .safetensors file, a
model.safetensors.index.json, or a folder holding either. Tensors are
streamed one at a time; progress goes to stderr.

flags:
`

// analyzeMain runs `gopeft analyze`. It exits 0 on success, 1 when a
// checkpoint cannot be read or analysed (or on interrupt), 2 on bad usage.
func analyzeMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gopeft analyze", flag.ContinueOnError)
	fs.SetOutput(stderr)
	top := fs.Int("top", 16, "compare the top `k` singular subspaces (two checkpoints)")
	csvOut := fs.String("csv", "", "also write the table as CSV to `OUT.csv`")
	md := fs.Bool("md", false, "print the table as Markdown instead of text")
	pngOut := fs.String("png", "", "draw the MP outliers (one checkpoint) or the update rank (two) per layer as bars in `OUT.png`")
	atol := fs.Float64("atol", 0, "absolute tolerance of the second sparsity: |ΔW| ≤ atol + rtol·|W1|")
	rtol := fs.Float64("rtol", 1e-6, "relative tolerance of the second sparsity")
	quiet := fs.Bool("q", false, "print no progress on stderr")
	fs.Usage = func() {
		fmt.Fprint(stderr, analyzeUsage)
		fs.PrintDefaults()
	}
	// Flags may come before, between or after the checkpoints.
	var paths []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		paths = append(paths, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(paths) < 1 || len(paths) > 2 {
		fs.Usage()
		return 2
	}
	if *top < 1 {
		fmt.Fprintf(stderr, "gopeft analyze: -top %d, want ≥ 1\n", *top)
		return 2
	}
	opt := &ckpt.Options{TopK: *top, Atol: *atol, Rtol: *rtol}
	if *rtol == 0 {
		opt.Rtol = -1 // Options reads 0 as the default
	}
	if !*quiet {
		opt.Progress = progressPrinter(stderr)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	type report interface {
		Text() string
		Markdown() string
		WriteCSV(io.Writer) error
	}
	var r report
	var chart func() (*viz.Chart, error)
	if len(paths) == 1 {
		rep, err := ckpt.Analyze(ctx, paths[0], opt)
		if err != nil {
			fmt.Fprintf(stderr, "gopeft analyze: %v\n", err)
			return 1
		}
		r = rep
		chart = func() (*viz.Chart, error) {
			tr, err := rep.RankTrace("mp_outliers")
			if err != nil {
				return nil, err
			}
			return viz.FinalRanks(viz.RankOptions{Title: "Marchenko–Pastur outliers per weight: " + paths[0]}, tr)
		}
	} else {
		rep, err := ckpt.Compare(ctx, paths[0], paths[1], opt)
		if err != nil {
			fmt.Fprintf(stderr, "gopeft analyze: %v\n", err)
			return 1
		}
		r = rep
		chart = func() (*viz.Chart, error) {
			tr, err := rep.RankTrace("rank")
			if err != nil {
				return nil, err
			}
			return viz.FinalRanks(viz.RankOptions{Title: "numerical rank of ΔW per weight"}, tr)
		}
	}
	if *md {
		fmt.Fprint(stdout, r.Markdown())
	} else {
		fmt.Fprint(stdout, r.Text())
	}
	if *csvOut != "" {
		if err := writeFileWith(*csvOut, r.WriteCSV); err != nil {
			fmt.Fprintf(stderr, "gopeft analyze: %v\n", err)
			return 1
		}
	}
	if *pngOut != "" {
		c, err := chart()
		if err == nil {
			err = writeFileWith(*pngOut, func(w io.Writer) error {
				b := c.PNG()
				if b == nil {
					return errors.New("chart could not be rendered")
				}
				_, err := w.Write(b)
				return err
			})
		}
		if err != nil {
			fmt.Fprintf(stderr, "gopeft analyze: -png %s: %v\n", *pngOut, err)
			return 1
		}
	}
	return 0
}

// writeFileWith creates path and fills it with write.
func writeFileWith(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

// progressPrinter prints progress on w: one line rewritten in place on a
// terminal, else one line per tensor.
func progressPrinter(w io.Writer) func(ckpt.Progress) {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return func(p ckpt.Progress) {
		switch {
		case !tty:
			fmt.Fprintln(w, p.String())
		case p.Name == "":
			fmt.Fprintf(w, "\r%s\033[K\n", p.String())
		default:
			fmt.Fprintf(w, "\r%s\033[K", p.String())
		}
	}
}
