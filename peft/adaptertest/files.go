package adaptertest

import (
	"encoding/json"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// Adapters returns as as a []peft.Adapter, as a Case's Add returns them.
func Adapters[A peft.Adapter](as []A) []peft.Adapter {
	out := make([]peft.Adapter, len(as))
	for i, a := range as {
		out[i] = a
	}
	return out
}

// MaxAbs returns max |m_ij|.
func MaxAbs(m mat.Matrix) float64 { return math.Max(mat.Max(m), -mat.Min(m)) }

// RelDiffMax returns max |a − b| / max |b| (entrywise, not the
// row-sum norm).
func RelDiffMax(a, b mat.Matrix) float64 {
	var d mat.Dense
	d.Sub(a, b)
	return MaxAbs(&d) / math.Max(MaxAbs(b), 1e-300)
}

// Edit changes a saved adapter's config (adapter_config.json decoded into
// a map), its tensors and their stored shapes. A tensor deleted or set to
// nil is removed from the file; a tensor without a shape is stored 2-D.
type Edit = func(cfg map[string]any, ts map[string]*mat.Dense, shapes map[string][]int)

// RewriteAdapter rewrites the adapter saved in dir after edit has changed
// its config, tensors and shapes. A tensor stored as a vector stays one,
// of its new length, unless edit gave it another shape. Tensors are
// written as F64.
func RewriteAdapter(t testing.TB, dir string, edit Edit) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, peft.AdapterConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, peft.AdapterWeightsFile)
	f, err := peft.OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	ts, shapes := map[string]*mat.Dense{}, map[string][]int{}
	for _, n := range f.Names() {
		if ts[n], err = f.Tensor(n); err != nil {
			f.Close()
			t.Fatal(err)
		}
		shapes[n] = f.Shape(n)
	}
	f.Close()
	edit(cfg, ts, shapes)
	for n, v := range ts {
		switch {
		case v == nil:
			delete(ts, n)
		case len(shapes[n]) == 1:
			r, c := v.Dims()
			shapes[n] = []int{r * c} // a vector, maybe of a new length
		}
	}
	for n := range shapes {
		if ts[n] == nil {
			delete(shapes, n)
		}
	}
	if raw, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, peft.AdapterConfigFile), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := peft.WriteSafetensorsShaped(path, ts, shapes, "F64", map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
}

// CopyAdapter copies the adapter directory orig to a new temporary one and
// returns it.
func CopyAdapter(t testing.TB, orig string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := os.CopyFS(dir, os.DirFS(orig)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// SaveLoad saves m's adapters to a new temporary directory, loads them
// into fresh and returns the directory.
func SaveLoad(t testing.TB, m, fresh peft.Model) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := peft.SaveAdapter(dir, m, ""); err != nil {
		t.Fatal(err)
	}
	if err := peft.LoadAdapter(dir, fresh, ""); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Refusal is a case of RefusesLoad: a copy of an adapter directory,
// rewritten by Edit, that loading must refuse with an error mentioning
// each of Want.
type Refusal struct {
	What string
	// Dir is the saved adapter to copy; RefusesLoad's orig if empty.
	Dir string
	// Edit rewrites the copy (RewriteAdapter); nil leaves it as saved.
	Edit Edit
	// Model returns the model to load into; RefusesLoad's model if nil.
	Model func() *Chain
	Want  []string
}

// RefusesLoad checks each case: loading the edited copy into a fresh model
// fails with an error mentioning every Want string, and attaches no
// adapter to any of the model's layers.
func RefusesLoad(t *testing.T, orig string, model func() *Chain, cases []Refusal) {
	t.Helper()
	for _, c := range cases {
		src := c.Dir
		if src == "" {
			src = orig
		}
		dir := CopyAdapter(t, src)
		if c.Edit != nil {
			RewriteAdapter(t, dir, c.Edit)
		}
		m := model
		if c.Model != nil {
			m = c.Model
		}
		fresh := m()
		err := peft.LoadAdapter(dir, fresh, "")
		if e := ErrorMentions(err, c.Want...); e != nil {
			t.Errorf("%s: %v", c.What, e)
		} else {
			t.Logf("%s: %v", c.What, err)
		}
		for _, l := range fresh.Mods {
			if len(l.Adapters) != 0 {
				t.Errorf("%s: %s has an adapter after the failed load", c.What, l.Name)
			}
		}
	}
}

// Hexes returns m's entries, row by row, as exact hexadecimal floats.
func Hexes(m *mat.Dense) []string {
	r, c := m.Dims()
	out := make([]string, 0, r*c)
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			out = append(out, strconv.FormatFloat(m.At(i, j), 'x', -1, 64))
		}
	}
	return out
}

// FromHexes returns the r×c matrix of the floats hs, row by row.
func FromHexes(t testing.TB, hs []string, r, c int) *mat.Dense {
	t.Helper()
	if len(hs) != r*c {
		t.Fatalf("%d values, want %d×%d", len(hs), r, c)
	}
	d := make([]float64, len(hs))
	for i, h := range hs {
		v, err := strconv.ParseFloat(h, 64)
		if err != nil {
			t.Fatal(err)
		}
		d[i] = v
	}
	return mat.NewDense(r, c, d)
}

// TorchResult is what a cross-check script prints: each module's output
// on its input and its ΔW, as Hexes.
type TorchResult struct {
	Outputs map[string][]string `json:"outputs"`
	Deltas  map[string][]string `json:"deltas"`
}

// RunTorch skips t unless /usr/bin/python3 imports torch and numpy
// (Debian's python3-torch). Otherwise it draws, from seed, an input of
// rows rows for each of m's layers, writes root/io.json with the layers'
// W, bias and input, runs /usr/bin/python3 script root and returns the
// inputs and what the script printed.
func RunTorch(t *testing.T, m *Chain, script, root string, seed int64, rows int) (map[string]*mat.Dense, TorchResult) {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import torch, numpy").Run(); err != nil {
		t.Skip("no /usr/bin/python3 with torch and numpy (apt-get install python3-torch)")
	}
	rng := rand.New(rand.NewSource(seed))
	type module struct {
		W      []string `json:"W"`
		WShape []int    `json:"W_shape"`
		Bias   []string `json:"bias"`
		X      []string `json:"x"`
		XShape []int    `json:"x_shape"`
	}
	io := struct {
		Modules map[string]module `json:"modules"`
	}{map[string]module{}}
	xs := map[string]*mat.Dense{}
	for _, l := range m.Mods {
		d, k := l.W.Dims()
		xs[l.Name] = RandDense(rng, rows, k)
		io.Modules[l.Name] = module{Hexes(l.W.Value), []int{d, k}, Hexes(l.B.Value), Hexes(xs[l.Name]), []int{rows, k}}
	}
	raw, err := json.Marshal(io)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "io.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/bin/python3", script, root)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	name := filepath.Base(script)
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, stderr.String())
	}
	var res TorchResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%s printed %q: %v", name, out, err)
	}
	return xs, res
}
