package osf_test

import (
	"context"
	"encoding/json"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/adaptertest"
	"github.com/gopeft/gopeft/peft/osf"
	"gonum.org/v1/gonum/mat"
)

var fileSizes = []int{10, 8, 6} // fc1 (8×10), fc2 (6×8)

// newFileMLP returns the test MLP with frozen biases: PEFT's OSF file holds
// weights only.
func newFileMLP() *peft.MLP {
	m := peft.NewMLP(fileSizes, 1)
	for _, l := range m.Layers {
		l.B.Freeze()
	}
	return m
}

// steps runs n OSF steps on random gradients (always the same seed).
func steps(o *osf.OSF, m *peft.MLP, seed int64, n int) {
	rng := rand.New(rand.NewSource(seed))
	ps := peft.TrainableOf(m)
	for i := 0; i < n; i++ {
		for _, p := range ps {
			r, c := p.Dims()
			p.Grad = adaptertest.RandDense(rng, r, c)
		}
		o.Step(ps, 0.02)
	}
}

// trained is a model trained on a task, protected, then trained on a
// second task; base holds each weight at the Protect.
type trained struct {
	m    *peft.MLP
	o    *osf.OSF
	base map[string]*mat.Dense
}

func trainTwoTasks(t *testing.T, cfg osf.Config) trained {
	t.Helper()
	m := newFileMLP()
	o := osf.New(cfg)
	steps(o, m, 1, 20)
	if err := o.Protect(context.Background(), peft.TrainableOf(m)); err != nil {
		t.Fatal(err)
	}
	base := map[string]*mat.Dense{}
	for _, l := range m.Layers {
		base[l.Name] = mat.DenseCopyOf(l.W.Value)
	}
	steps(o, m, 2, 30)
	return trained{m, o, base}
}

// baseModel returns the test MLP with tr's base weights.
func (tr trained) baseModel() *peft.MLP {
	f := newFileMLP()
	for _, l := range f.Layers {
		l.W.Value.Copy(tr.base[l.Name])
	}
	return f
}

func saveTrained(t *testing.T, tr trained, dtype string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "osf")
	if err := osf.SaveAdapter(context.Background(), dir, tr.m, tr.o, osf.SaveOptions{DType: dtype}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestFileRoundTrip: the base model plus the saved file gives the trained
// weights and outputs back, and the loaded OSF protects the same subspace.
func TestFileRoundTrip(t *testing.T) {
	tr := trainTwoTasks(t, osf.Config{Tasks: 3})
	x := adaptertest.RandDense(rand.New(rand.NewSource(9)), 5, fileSizes[0])
	want := tr.m.Forward(peft.NewConst(x)).Value
	for _, c := range []struct {
		dtype string
		tol   float64
	}{{"F64", 1e-12}, {"F32", 1e-5}} {
		dir := saveTrained(t, tr, c.dtype)
		f := tr.baseModel()
		if e := adaptertest.RelDiffMax(f.Layers[0].W.Value, tr.m.Layers[0].W.Value); e < 1e-3 {
			t.Fatalf("the second task moved fc1 by only %.2e: the test shows nothing", e)
		}
		o2 := osf.New(osf.Config{Tasks: 3})
		if err := osf.LoadAdapter(context.Background(), dir, f, o2); err != nil {
			t.Fatal(err)
		}
		for i, l := range f.Layers {
			tl := tr.m.Layers[i]
			if e := adaptertest.RelDiffMax(l.W.Value, tl.W.Value); e > c.tol {
				t.Errorf("%s %s: loaded weight off the trained one by %.2e (relative), want ≤ %g", c.dtype, l.Name, e, c.tol)
			}
			if o2.Rank(l.W) != tr.o.Rank(tl.W) {
				t.Errorf("%s %s: loaded protected rank %d, want %d", c.dtype, l.Name, o2.Rank(l.W), tr.o.Rank(tl.W))
			}
			u1, v1, _ := tr.o.Basis(tl.W)
			u2, v2, _ := o2.Basis(l.W)
			if e := maxAbs(sub(mul(u1, u1.T()), mul(u2, u2.T()))); e > 100*c.tol {
				t.Errorf("%s %s: |U₁U₁ᵀ − U₂U₂ᵀ| = %.2e: another protected subspace", c.dtype, l.Name, e)
			}
			if e := maxAbs(sub(mul(v1, v1.T()), mul(v2, v2.T()))); e > 100*c.tol {
				t.Errorf("%s %s: |V₁V₁ᵀ − V₂V₂ᵀ| = %.2e: another protected subspace", c.dtype, l.Name, e)
			}
		}
		if e := adaptertest.RelDiffMax(f.Forward(peft.NewConst(x)).Value, want); e > c.tol {
			t.Errorf("%s: outputs off by %.2e (relative), want ≤ %g", c.dtype, e, c.tol)
		}
		t.Logf("%s: round trip ok (ranks fc1 %d, fc2 %d)", c.dtype, tr.o.Rank(tr.m.Layers[0].W), tr.o.Rank(tr.m.Layers[1].W))
	}
}

func sub(a, b mat.Matrix) *mat.Dense {
	var c mat.Dense
	c.Sub(a, b)
	return &c
}

// TestFileLayout checks the file against what PEFT's code reads
// (huggingface/peft, src/peft/tuners/osf/):
//   - layer.py, OSFLayer.update_layer: the trainable factors live in the
//     ParameterDict osf_svd_params[adapter] as "U_low", "S_low", "V_low";
//     U_high, S_high, V_high (and later _osf_*_init) are BufferDicts,
//     non-persistent by default (tuners/_buffer_dict.py, BufferDict.__init__),
//     so not in the state dict;
//   - utils.py, decompose_weight_matrix: U_low = U[:, k:] (m×(p−k)),
//     S_low = S[k:] (p−k), V_low = Vt[k:, :] ((p−k)×n);
//   - utils/save_and_load.py, get_peft_model_state_dict: the generic branch
//     keeps keys containing the prefix "osf_" (model.py, OSFModel.prefix)
//     and remove_adapter_name drops ".default" before the last component;
//   - config.py, OSFConfig: effective_rank, target_modules, rank_pattern,
//     init_weights, modules_to_save, target_svd_config.
func TestFileLayout(t *testing.T) {
	tr := trainTwoTasks(t, osf.Config{Tasks: 3})
	dir := saveTrained(t, tr, "F64")
	f, err := peft.OpenSafetensors(filepath.Join(dir, peft.AdapterWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string][]int{}
	for _, l := range tr.m.Layers {
		r, c := l.W.Dims()
		q := min(r, c) - tr.o.Rank(l.W)
		pre := "base_model.model." + l.Name + ".osf_svd_params."
		want[pre+"U_low"] = []int{r, q}
		want[pre+"S_low"] = []int{q}
		want[pre+"V_low"] = []int{q, c}
	}
	if len(f.Names()) != len(want) {
		t.Errorf("tensors %v, want %d", f.Names(), len(want))
	}
	for n, s := range want {
		if !f.Has(n) {
			t.Errorf("no tensor %s", n)
			continue
		}
		if got := f.Shape(n); !equalInts(got, s) {
			t.Errorf("%s: shape %v, want %v", n, got, s)
		}
		if f.DType(n) != "F64" {
			t.Errorf("%s: dtype %s, want F64", n, f.DType(n))
		}
	}
	if f.Metadata()["format"] != "pt" {
		t.Errorf("metadata %v, want format pt", f.Metadata())
	}

	raw, err := os.ReadFile(filepath.Join(dir, peft.AdapterConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	peftFields := map[string]bool{ // OSFConfig's fields and PeftConfig's
		"effective_rank": true, "target_modules": true, "rank_pattern": true, "init_weights": true,
		"modules_to_save": true, "target_svd_config": true,
		"peft_type": true, "task_type": true, "inference_mode": true, "revision": true,
		"base_model_name_or_path": true, "auto_mapping": true,
	}
	for k := range cfg {
		if !peftFields[k] {
			t.Errorf("config field %q is not one of PEFT's OSFConfig", k)
		}
	}
	if cfg["peft_type"] != "OSF" || cfg["init_weights"] != true {
		t.Errorf("peft_type %v, init_weights %v; want OSF, true", cfg["peft_type"], cfg["init_weights"])
	}
	tm, _ := cfg["target_modules"].([]any)
	if len(tm) != 2 || tm[0] != "fc1" || tm[1] != "fc2" {
		t.Errorf("target_modules %v, want [fc1 fc2]", cfg["target_modules"])
	}
	// PEFT resolves each module's k with re.search over rank_pattern
	// (model.py, _create_and_replace), so each module must find its own.
	rp, _ := cfg["rank_pattern"].(map[string]any)
	for _, l := range tr.m.Layers {
		var got []float64
		for pat, v := range rp {
			if regexp.MustCompile(pat).MatchString(l.Name) {
				got = append(got, v.(float64))
			}
		}
		if len(got) != 1 || int(got[0]) != tr.o.Rank(l.W) {
			t.Errorf("%s: rank_pattern %v gives %v, want exactly [%d]", l.Name, rp, got, tr.o.Rank(l.W))
		}
	}
}

// TestFilePEFTFormula rebuilds each weight from the file as PEFT's OSF
// layer does, with an SVD of the base weight independent of the package's
// (gonum's): utils.py's decompose_weight_matrix and
// reconstruct_weight_matrix, W = U_high·diag(S_high)·V_high +
// U_low·diag(S_low)·V_low, and the delta form of later layer.py versions,
// W₀ + U_low·diag(S_low)·V_low − U_low₀·diag(S_low₀)·V_low₀.
func TestFilePEFTFormula(t *testing.T) {
	tr := trainTwoTasks(t, osf.Config{Tasks: 3})
	dir := saveTrained(t, tr, "F64")
	ts, _, err := peft.ReadSafetensors(filepath.Join(dir, peft.AdapterWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range tr.m.Layers {
		w0 := tr.base[l.Name]
		r, c := w0.Dims()
		k := tr.o.Rank(l.W)
		var svd mat.SVD
		if !svd.Factorize(w0, mat.SVDThin) {
			t.Fatal("SVD failed")
		}
		var u, v mat.Dense
		svd.UTo(&u)
		svd.VTo(&v)
		s := svd.Values(nil)
		p := min(r, c)
		uh, vh := u.Slice(0, r, 0, k), v.Slice(0, c, 0, k).T()
		ul0, vl0 := u.Slice(0, r, k, p), v.Slice(0, c, k, p).T()
		pre := "base_model.model." + l.Name + ".osf_svd_params."
		ul, sl, vl := ts[pre+"U_low"], ts[pre+"S_low"], ts[pre+"V_low"]
		high := scaledProduct(uh, s[:k], vh)
		low := scaledProduct(ul, sl.RawMatrix().Data, vl)
		var w mat.Dense
		w.Add(high, low)
		if e := adaptertest.RelDiffMax(&w, l.W.Value); e > 1e-12 {
			t.Errorf("%s: PEFT's rebuild off the trained weight by %.2e (relative), want ≤ 1e-12", l.Name, e)
		}
		var delta mat.Dense
		delta.Sub(low, scaledProduct(ul0, s[k:], vl0))
		delta.Add(&delta, w0)
		if e := adaptertest.RelDiffMax(&delta, l.W.Value); e > 1e-12 {
			t.Errorf("%s: PEFT's delta form off by %.2e (relative), want ≤ 1e-12", l.Name, e)
		}
		// The low factors stay orthogonal to the frozen directions, as
		// PEFT's gradient projection keeps them.
		if e := maxAbs(mul(uh.T(), ul)); e > 1e-12 {
			t.Errorf("%s: |U_highᵀ·U_low| = %.2e, want 0", l.Name, e)
		}
		if e := maxAbs(mul(vl, vh.T())); e > 1e-12 {
			t.Errorf("%s: |V_low·V_highᵀ| = %.2e, want 0", l.Name, e)
		}
	}
}

// scaledProduct returns U·diag(s)·V.
func scaledProduct(u mat.Matrix, s []float64, v mat.Matrix) *mat.Dense {
	var us mat.Dense
	us.Apply(func(_, j int, x float64) float64 { return x * s[j] }, u)
	return mul(&us, v)
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestFileRefusesLoad: bad files are refused with errors naming the file
// and the field or tensor, and leave the model as it was.
func TestFileRefusesLoad(t *testing.T) {
	tr := trainTwoTasks(t, osf.Config{Tasks: 3})
	orig := saveTrained(t, tr, "F64")
	k1 := tr.o.Rank(tr.m.Layers[0].W)
	const u1 = "base_model.model.fc1.osf_svd_params.U_low"
	const s2 = "base_model.model.fc2.osf_svd_params.S_low"
	cases := []struct {
		what string
		edit adaptertest.Edit
		want []string
	}{
		{"peft_type", func(c map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { c["peft_type"] = "LORA" },
			[]string{"adapter_config.json", `"peft_type"`, "LORA"}},
		{"rank off by one", func(c map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			c["rank_pattern"].(map[string]any)["^fc1$"] = k1 + 1
		}, []string{"adapter_model.safetensors", u1, "rank_pattern", "shape"}},
		{"rank 0", func(c map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			c["rank_pattern"].(map[string]any)["^fc1$"] = 0
		}, []string{"adapter_config.json", `"rank_pattern"`, "fc1", "effective rank 0"}},
		{"missing tensor", func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) { delete(ts, s2) },
			[]string{"adapter_model.safetensors", s2, "missing"}},
		{"extra tensor", func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) {
			ts["base_model.model.fc1.osf_svd_params.W_low"] = mat.NewDense(1, 1, nil)
		}, []string{"base_model.model.fc1.osf_svd_params.W_low", "not a tensor"}},
		{"unknown module", func(_ map[string]any, ts map[string]*mat.Dense, sh map[string][]int) {
			for _, n := range []string{"U_low", "S_low", "V_low"} {
				ts["base_model.model.fc9.osf_svd_params."+n] = ts["base_model.model.fc2.osf_svd_params."+n]
				sh["base_model.model.fc9.osf_svd_params."+n] = sh["base_model.model.fc2.osf_svd_params."+n]
			}
		}, []string{"adapter_model.safetensors", "fc9"}},
		{"unknown field", func(c map[string]any, _ map[string]*mat.Dense, _ map[string][]int) { c["use_dora"] = true },
			[]string{"adapter_config.json", `"use_dora"`}},
		{"modules_to_save", func(c map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			c["modules_to_save"] = []any{"fc1"}
		},
			[]string{"adapter_config.json", `"modules_to_save"`}},
		{"target_modules", func(c map[string]any, _ map[string]*mat.Dense, _ map[string][]int) {
			c["target_modules"] = []any{"fc2"}
		},
			[]string{"adapter_config.json", `"target_modules"`, "fc1"}},
		{"NaN", func(_ map[string]any, ts map[string]*mat.Dense, _ map[string][]int) { ts[u1].Set(0, 0, math.NaN()) },
			[]string{u1, "NaN"}},
	}
	for _, c := range cases {
		dir := adaptertest.CopyAdapter(t, orig)
		adaptertest.RewriteAdapter(t, dir, c.edit)
		f := tr.baseModel()
		err := osf.LoadAdapter(context.Background(), dir, f, nil)
		if e := adaptertest.ErrorMentions(err, c.want...); e != nil {
			t.Errorf("%s: %v", c.what, e)
		} else {
			t.Logf("%s: %v", c.what, err)
		}
		for _, l := range f.Layers {
			if !mat.Equal(l.W.Value, tr.base[l.Name]) {
				t.Errorf("%s: %s's weight changed by a failed load", c.what, l.Name)
			}
		}
	}
}

// TestFileRefusesSave: weights PEFT could not rebuild are refused, naming
// the module.
func TestFileRefusesSave(t *testing.T) {
	cases := []struct {
		what string
		cfg  osf.Config
		skip bool // no Protect
		want []string
	}{
		{"no Protect", osf.Config{}, true, []string{"fc1", "Protect"}},
		{"gradient only", osf.Config{Tasks: 3, GradientOnly: true}, false, []string{"fc1", "moved", "GradientOnly"}},
		{"weight decay", osf.Config{Tasks: 3, WeightDecay: 0.1}, false, []string{"fc1", "moved"}},
	}
	for _, c := range cases {
		var m *peft.MLP
		var o *osf.OSF
		if c.skip {
			m, o = newFileMLP(), osf.New(c.cfg)
			steps(o, m, 1, 5)
		} else {
			tr := trainTwoTasks(t, c.cfg)
			m, o = tr.m, tr.o
		}
		dir := filepath.Join(t.TempDir(), "osf")
		err := osf.SaveAdapter(context.Background(), dir, m, o, osf.SaveOptions{})
		if e := adaptertest.ErrorMentions(err, c.want...); e != nil {
			t.Errorf("%s: %v", c.what, e)
		} else {
			t.Logf("%s: %v", c.what, err)
		}
		if _, err := os.Stat(filepath.Join(dir, peft.AdapterConfigFile)); err == nil {
			t.Errorf("%s: a refused save wrote %s", c.what, peft.AdapterConfigFile)
		}
	}
}

// torchRebuild is run by /usr/bin/python3: it reads the adapter, the base
// and the trained weights (safetensors, parsed by hand), rebuilds each
// weight as PEFT's OSF layer does (torch.linalg.svd of the base, split at
// the rank re.search finds in rank_pattern), in float64 and, as PEFT does,
// in float32, and prints the largest relative differences.
const torchRebuild = `
import json, re, struct, sys, torch
def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        t = torch.frombuffer(bytearray(data[a:b]), dtype=torch.float64)
        out[k] = t.reshape(v["shape"])
    return out
d = sys.argv[1]
cfg = json.load(open(d + "/adapter/adapter_config.json"))
ad = load(d + "/adapter/adapter_model.safetensors")
base = load(d + "/base.safetensors")
want = load(d + "/want.safetensors")
res = {}
for mod, w0 in base.items():
    k = None
    for pat, r in cfg["rank_pattern"].items():
        if re.search(pat, mod):
            k = int(r)
            break
    pre = "base_model.model." + mod + ".osf_svd_params."
    for dt in (torch.float64, torch.float32):
        U, S, Vt = torch.linalg.svd(w0.to(dt), full_matrices=False)
        hi = torch.mm(U[:, :k] * S[:k].unsqueeze(0), Vt[:k, :])
        lo = torch.mm(ad[pre + "U_low"].to(dt) * ad[pre + "S_low"].to(dt).unsqueeze(0), ad[pre + "V_low"].to(dt))
        w = (hi + lo).to(torch.float64)
        res[mod + "/" + str(dt)] = ((w - want[mod]).abs().max() / want[mod].abs().max()).item()
print(json.dumps(res))
`

// TestFileTorch rebuilds the weights with torch from the saved file by
// PEFT's formula; skipped without Debian's python3-torch.
func TestFileTorch(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import torch").Run(); err != nil {
		t.Skip("no /usr/bin/python3 with torch (apt-get install python3-torch)")
	}
	tr := trainTwoTasks(t, osf.Config{Tasks: 3})
	root := t.TempDir()
	dir := filepath.Join(root, "adapter")
	if err := osf.SaveAdapter(context.Background(), dir, tr.m, tr.o, osf.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	want := map[string]*mat.Dense{}
	for _, l := range tr.m.Layers {
		want[l.Name] = l.W.Value
	}
	if err := peft.WriteSafetensors(filepath.Join(root, "base.safetensors"), tr.base, "F64", nil); err != nil {
		t.Fatal(err)
	}
	if err := peft.WriteSafetensors(filepath.Join(root, "want.safetensors"), want, "F64", nil); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "rebuild.py")
	if err := os.WriteFile(script, []byte(torchRebuild), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/usr/bin/python3", script, root).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var res map[string]float64
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, l := range tr.m.Layers {
		for dt, tol := range map[string]float64{"torch.float64": 1e-12, "torch.float32": 1e-5} {
			e, ok := res[l.Name+"/"+dt]
			if !ok || e > tol {
				t.Errorf("%s, %s: torch rebuild off by %v (relative), want ≤ %g", l.Name, dt, e, tol)
			}
		}
	}
	t.Logf("torch: %v", res)
}
