// Command ckptgen writes synthetic LLM-shaped checkpoints with
// ckpt.Generate and ckpt.GeneratePair, for measuring `gopeft analyze` on
// checkpoints of a realistic size:
//
//	go run ./peft/ckpt/internal/ckptgen -out /tmp/ck -mb 512 -pair
//	/usr/bin/time -v gopeft analyze /tmp/ck/base
//	/usr/bin/time -v gopeft analyze /tmp/ck/base /tmp/ck/tuned
//
// It prints the paths, the size and the time taken.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gopeft/gopeft/peft/ckpt"
)

func main() {
	out := flag.String("out", "", "folder to write into (base/ and, with -pair, tuned/)")
	mb := flag.Int64("mb", 512, "size of a checkpoint in MB (10⁶ bytes), rounded up to whole layers")
	hidden := flag.Int("hidden", 1024, "model width")
	dtype := flag.String("dtype", "BF16", "BF16, F16, F32 or F64")
	shards := flag.Int("shards", 1, "number of shard files (> 1 writes an index)")
	pair := flag.Bool("pair", false, "also write tuned/: the base plus a sparse low-rank update")
	rank := flag.Int("rank", 8, "rank of the update (-pair)")
	seed := flag.Uint64("seed", 1, "seed")
	flag.Parse()
	if *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	cfg := ckpt.GenConfig{
		Layers: ckpt.LayersFor(*mb*1_000_000, *hidden, 0, *dtype),
		Hidden: *hidden, DType: *dtype, Shards: *shards, Seed: *seed,
	}
	t0 := time.Now()
	var paths []string
	if *pair {
		p1, p2, err := ckpt.GeneratePair(filepath.Join(*out, "base"), filepath.Join(*out, "tuned"), cfg, ckpt.UpdateConfig{Rank: *rank})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		paths = []string{p1, p2}
	} else {
		p, err := ckpt.Generate(filepath.Join(*out, "base"), cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		paths = []string{p}
	}
	for _, p := range paths {
		c, err := ckpt.Open(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("%s: %d layers, %d tensors, %.1f MB in %d file(s)\n", p, cfg.Layers, len(c.Tensors()), float64(c.TotalBytes())/1e6, len(c.Files()))
		c.Close()
	}
	fmt.Printf("written in %.1f s\n", time.Since(t0).Seconds())
}
