package peft_test

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
)

// killModel returns an MLP 16→16→16 with a rank-r LoRA on both layers whose
// lora_A[0][0] of fc1 is gen, so that a loaded adapter tells which save it
// came from.
func killModel(t testing.TB, r int, gen float64) *peft.MLP {
	m := peft.NewMLP([]int{16, 16, 16}, 1)
	ls, err := lora.Add(m, lora.Config{R: r, Alpha: 2 * float64(r), Targets: []string{"fc1", "fc2"}, Seed: int64(r)})
	if err != nil {
		t.Fatal(err)
	}
	ls[0].A.Value.Set(0, 0, gen)
	return m
}

// saveGen saves killModel(r, gen) to dir, with "save-<gen>" as the base
// model name, so that the config also tells which save it came from.
func saveGen(t testing.TB, dir string, gen int) error {
	r := 4
	if gen%2 == 1 {
		r = 8
	}
	return peft.SaveAdapterWith(dir, killModel(t, r, float64(gen)), "", peft.AdapterOptions{BaseModel: fmt.Sprint("save-", gen)})
}

// checkWhole loads dir and checks that its config and its tensors come
// from one save: the rank of the config (the load checks it against the
// tensors) and the generation of both. It returns the generation.
func checkWhole(t *testing.T, dir string) int {
	t.Helper()
	m := peft.NewMLP([]int{16, 16, 16}, 1)
	if err := peft.LoadAdapter(dir, m, ""); err != nil {
		t.Fatalf("load: %v", err)
	}
	cfg := readConfig(t, dir)
	var gen int
	if _, err := fmt.Sscanf(fmt.Sprint(cfg["base_model_name_or_path"]), "save-%d", &gen); err != nil {
		t.Fatalf("config from no save: %v", cfg["base_model_name_or_path"])
	}
	a := m.Layers[0].Adapters["default"].(*lora.LoRA)
	wantR := 4
	if gen%2 == 1 {
		wantR = 8
	}
	if got := a.A.Value.At(0, 0); got != float64(gen) || a.R != wantR || cfg["r"] != float64(wantR) {
		t.Fatalf("config of save %d (r = %v), tensors of save %g with rank %d", gen, cfg["r"], got, a.R)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("the adapter directory holds %d entries, want its 2 files", len(ents))
	}
	return gen
}

// leftovers returns the names in dir's parent other than dir's.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Name() != filepath.Base(dir) {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestSaveAdapterKilled: a child process (this test binary, re-run) saves
// adapters of rank 8 and 4 in turn into one directory, and is SIGKILLed at
// random moments. After every kill the directory loads, and its config and
// tensors come from one save; what is left beside it is at most one hidden
// ".adapter.tmp-*" directory; the next successful save removes it.
func TestSaveAdapterKilled(t *testing.T) {
	if dir := os.Getenv("GOPEFT_TEST_SAVE_LOOP"); dir != "" {
		var first int
		fmt.Sscan(os.Getenv("GOPEFT_TEST_SAVE_GEN"), &first)
		fmt.Println("ready")
		for gen := first; ; gen++ {
			if err := saveGen(t, dir, gen); err != nil {
				fmt.Println("error:", err)
				os.Exit(3)
			}
			fmt.Println("saved", gen)
		}
	}
	kills := 30
	if testing.Short() {
		kills = 8
	}
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := saveGen(t, dir, 0); err != nil {
		t.Fatal(err)
	}
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	gen, saves, withLeftover := 1, 0, 0
	ranks := map[int]int{}
	for k := 0; k < kills; k++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSaveAdapterKilled$")
		cmd.Env = append(os.Environ(), "GOPEFT_TEST_SAVE_LOOP="+dir, fmt.Sprint("GOPEFT_TEST_SAVE_GEN=", gen))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		ready := false
		for !ready && lines.Scan() {
			ready = lines.Text() == "ready"
		}
		if !ready {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("the child never got going")
		}
		done := make(chan int)
		go func() { // count the saves the child finished
			n := 0
			for lines.Scan() {
				if strings.HasPrefix(lines.Text(), "saved ") {
					n++
				} else if strings.HasPrefix(lines.Text(), "error:") {
					t.Error("child:", lines.Text())
				}
			}
			done <- n
		}()
		time.Sleep(time.Duration(rng.Int63n(int64(25 * time.Millisecond))))
		cmd.Process.Signal(syscall.SIGKILL)
		err = cmd.Wait()
		n := <-done
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("kill %d: the child ended by itself: %v", k, err)
		}
		saves += n
		// The directory is one whole save, the last finished or the one
		// being written.
		g := checkWhole(t, dir)
		if g != gen+n-1 && g != gen+n {
			t.Fatalf("kill %d: loaded save %d, but the child started at %d and finished %d", k, g, gen, n)
		}
		ranks[g%2]++
		gen = g + 1
		left := leftovers(t, dir)
		for _, l := range left {
			if !strings.HasPrefix(l, ".adapter.tmp-") {
				t.Fatalf("kill %d: left %s beside the adapter", k, l)
			}
		}
		if len(left) > 1 {
			t.Fatalf("kill %d: left %v", k, left)
		}
		withLeftover += len(left)
	}
	t.Logf("seed %d: %d kills, %d saves finished, %d kills left a temporary directory; loaded %d even and %d odd saves",
		seed, kills, saves, withLeftover, ranks[0], ranks[1])
	if saves == 0 || ranks[1] == 0 {
		t.Errorf("the child saved too little to test anything (%d saves, ranks %v)", saves, ranks)
	}
	if err := saveGen(t, dir, gen); err != nil {
		t.Fatal(err)
	}
	if g := checkWhole(t, dir); g != gen {
		t.Errorf("loaded save %d, want %d", g, gen)
	}
	if left := leftovers(t, dir); len(left) != 0 {
		t.Errorf("after a successful save %v are left", left)
	}
}

// TestSaveAdapterLeftovers: what interrupted saves leave beside the
// directory is removed by the next successful save and by nothing else,
// with both ways of replacing a directory; a save killed between the two
// renames of the aside way leaves the old adapter whole, which LoadAdapter
// points to.
func TestSaveAdapterLeftovers(t *testing.T) {
	for _, exchange := range []bool{true, false} {
		t.Run(fmt.Sprint("exchange=", exchange), func(t *testing.T) {
			defer peft.SetExchangeDirs(peft.SetExchangeDirs(exchange))
			root := t.TempDir()
			dir := filepath.Join(root, "adapter")
			for gen := 0; gen < 3; gen++ {
				if err := saveGen(t, dir, gen); err != nil {
					t.Fatal(err)
				}
				if left := leftovers(t, dir); len(left) != 0 {
					t.Fatalf("save %d left %v", gen, left)
				}
				checkWhole(t, dir)
			}
			// Leftovers of killed saves, and files that only look alike.
			for _, d := range []string{".adapter.tmp-123", ".adapter.old-456"} {
				os.MkdirAll(filepath.Join(root, d), 0o755)
				os.WriteFile(filepath.Join(root, d, peft.AdapterConfigFile), []byte("{"), 0o644)
			}
			keep := []string{".adapter.tmp", ".other.tmp-1", "adapter.old-2"}
			for _, f := range keep {
				os.WriteFile(filepath.Join(root, f), nil, 0o644)
			}
			checkWhole(t, dir)
			if left := leftovers(t, dir); len(left) != 5 {
				t.Fatalf("LoadAdapter removed something: %v", left)
			}
			if err := saveGen(t, dir, 3); err != nil {
				t.Fatal(err)
			}
			left := leftovers(t, dir)
			if strings.Join(left, " ") != strings.Join(keep, " ") {
				t.Errorf("after a save %v are left, want %v", left, keep)
			}
			// A kill between the aside renames: no adapter, the old one whole.
			old := filepath.Join(root, ".adapter.old-789")
			if err := os.Rename(dir, old); err != nil {
				t.Fatal(err)
			}
			err := peft.LoadAdapter(dir, peft.NewMLP([]int{16, 16, 16}, 1), "")
			if err == nil || !strings.Contains(err.Error(), old) {
				t.Errorf("loading the missing adapter: %v, want it to name %s", err, old)
			}
			checkWhole(t, old)
			if err := saveGen(t, dir, 4); err != nil {
				t.Fatal(err)
			}
			checkWhole(t, dir)
			if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the save left %s: %v", old, err)
			}
		})
	}
}

// TestSaveAdapterConcurrent: saves into one directory at once all succeed
// (one never removes another's temporary directory) and leave one whole
// adapter and nothing else.
func TestSaveAdapterConcurrent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "adapter")
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if err := saveGen(t, dir, 2*i+w%2); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkWhole(t, dir)
	if left := leftovers(t, dir); len(left) != 0 {
		t.Errorf("left %v", left)
	}
}

// TestSaveAdapterSymlink: saving through a symbolic link to a directory
// replaces the directory it points to and keeps the link, with a trailing
// slash, through a relative link from another directory, a chain of links,
// and a dangling link (whose target is created).
func TestSaveAdapterSymlink(t *testing.T) {
	for _, c := range []struct {
		name string
		// setup makes the link under root and returns the path to save to
		// and the directory that must receive the adapter.
		setup func(root string) (save, target string)
	}{
		{"absolute, trailing slash", func(root string) (string, string) {
			target := filepath.Join(root, "real", "adapter")
			os.MkdirAll(target, 0o755)
			os.Symlink(target, filepath.Join(root, "link"))
			return filepath.Join(root, "link") + "/", target
		}},
		{"relative from another directory", func(root string) (string, string) {
			os.MkdirAll(filepath.Join(root, "runs", "1", "adapter"), 0o755)
			os.MkdirAll(filepath.Join(root, "serve"), 0o755)
			os.Symlink(filepath.Join("..", "runs", "1", "adapter"), filepath.Join(root, "serve", "current"))
			return filepath.Join(root, "serve", "current"), filepath.Join(root, "runs", "1", "adapter")
		}},
		{"relative through a linked directory", func(root string) (string, string) {
			// root/d → root/x/y, and root/d/link → ../z: ".." is x, not root.
			os.MkdirAll(filepath.Join(root, "x", "y"), 0o755)
			os.MkdirAll(filepath.Join(root, "x", "z"), 0o755)
			os.Symlink(filepath.Join("x", "y"), filepath.Join(root, "d"))
			os.Symlink(filepath.Join("..", "z"), filepath.Join(root, "x", "y", "link"))
			return filepath.Join(root, "d", "link"), filepath.Join(root, "x", "z")
		}},
		{"chain", func(root string) (string, string) {
			os.MkdirAll(filepath.Join(root, "real"), 0o755)
			os.Symlink("real", filepath.Join(root, "one"))
			os.Symlink("one", filepath.Join(root, "two"))
			return filepath.Join(root, "two"), filepath.Join(root, "real")
		}},
		{"dangling", func(root string) (string, string) {
			os.Symlink(filepath.Join("later", "adapter"), filepath.Join(root, "latest"))
			return filepath.Join(root, "latest"), filepath.Join(root, "later", "adapter")
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			save, target := c.setup(root)
			link := strings.TrimSuffix(save, "/")
			text, err := os.Readlink(link)
			if err != nil {
				t.Fatal(err)
			}
			for gen := 0; gen < 2; gen++ {
				if err := saveGen(t, save, gen); err != nil {
					t.Fatal(err)
				}
				fi, err := os.Lstat(link)
				if err != nil || fi.Mode()&os.ModeSymlink == 0 {
					t.Fatalf("save %d replaced the link: %v %v", gen, fi.Mode(), err)
				}
				if now, _ := os.Readlink(link); now != text {
					t.Fatalf("the link now points to %q, not %q", now, text)
				}
				if g := checkWhole(t, target); g != gen {
					t.Errorf("the target holds save %d, want %d", g, gen)
				}
				if g := checkWhole(t, save); g != gen {
					t.Errorf("the link shows save %d, want %d", g, gen)
				}
				for _, l := range leftovers(t, target) {
					if strings.HasPrefix(l, ".") {
						t.Errorf("left %s beside the target", l)
					}
				}
			}
		})
	}
}
