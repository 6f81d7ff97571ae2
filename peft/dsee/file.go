package dsee

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// This file registers DSEE and saves and loads it. HuggingFace PEFT has no
// DSEE, so the layout is gopeft's own: peft_type "GOPEFT_DSEE", and for a
// module with weight W (d×k)
//
//	base_model.model.<module>.lora_A.weight   A (r×k)
//	base_model.model.<module>.lora_B.weight   B (d×r)
//	base_model.model.<module>.dsee_S2         s₂ [N], S₂'s values in Ω's order
//	base_model.model.<module>.dsee_mask       M (d×k) of 0s and 1s, only once pruned
//
// with adapter_config.json's fields
//
//	r, lora_alpha, lora_dropout   as LoraConfig's
//	n_sparse                      N (for the reader; Ω's length rules)
//	sparse_selection              "decomposition" or "magnitude": how Ω was picked
//	sparse_indices                {"<module>": [Ω's flat indices i·k + j, increasing], …}
//	prune_ratio                   p of Prune, 0 if not pruned
//	target_modules                the adapted modules
//
// Ω goes into the JSON config, not the safetensors file, because gopeft
// writes every tensor in one floating-point dtype and F16 or BF16 cannot
// hold indices above 2048 or 256 exactly; a 0/1 mask they hold exactly.
// On load Ω is taken from the file, never picked again from the model's W₀.

func init() {
	peft.Register(peft.Method{
		Name:    "DSEE",
		Kind:    peft.AdapterMethod,
		Paper:   "Chen et al. 2021, DSEE: Dually Sparsity-embedded Efficient Tuning of Pre-trained Language Models, arXiv:2111.00160",
		Package: "github.com/gopeft/gopeft/peft/dsee",
		Summary: "W₀ + (α/r)·(B·A + S₂) with S₂ trained on a fixed support Ω of N entries picked from W₀ (GreBsmo-style split or magnitude); optionally the merged weight magnitude-pruned at ratio p",
		Format: &peft.AdapterFormat{
			PEFTType: "GOPEFT_DSEE",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*DSEE); return ok },
			Tensors:  []string{".lora_A.weight", ".lora_B.weight", ".dsee_S2", ".dsee_mask"},
			Save:     save,
			Load:     load,
		},
	})
}

// save writes the config fields and the tensors of w's adapters, which must
// agree on what the config sets once for all (r, α, dropout, N, the
// selection and the prune ratio).
func save(w *peft.AdapterWriter) error {
	ds := As(w.Adapters)
	a0, m0 := ds[0], w.Modules[0].Name
	indices := map[string][]int{}
	targets := make([]string, len(ds))
	for i, a := range ds {
		mi := w.Modules[i].Name
		switch {
		case a.R != a0.R:
			return fmt.Errorf("modules %s and %s differ in rank (%d, %d): gopeft's DSEE config has one r", m0, mi, a0.R, a.R)
		case a.Alpha != a0.Alpha:
			return fmt.Errorf("modules %s and %s differ in alpha (%g, %g): gopeft's DSEE config has one lora_alpha", m0, mi, a0.Alpha, a.Alpha)
		case a.Dropout != a0.Dropout:
			return fmt.Errorf("modules %s and %s differ in dropout (%g, %g): gopeft's DSEE config has one lora_dropout", m0, mi, a0.Dropout, a.Dropout)
		case a.N() != a0.N():
			return fmt.Errorf("modules %s and %s differ in N (%d, %d): gopeft's DSEE config has one n_sparse", m0, mi, a0.N(), a.N())
		case a.Selection != a0.Selection:
			return fmt.Errorf("modules %s and %s differ in selection (%v, %v): gopeft's DSEE config has one sparse_selection", m0, mi, a0.Selection, a.Selection)
		case a.pruneRatio != a0.pruneRatio || (a.mask == nil) != (a0.mask == nil):
			return fmt.Errorf("modules %s and %s differ in pruning (p = %g, %g): gopeft's DSEE config has one prune_ratio", m0, mi, a0.pruneRatio, a.pruneRatio)
		}
		targets[i] = mi
		indices[mi] = a.Support()
		w.Put(mi, ".lora_A.weight", a.A.Value)
		w.Put(mi, ".lora_B.weight", a.B.Value)
		w.PutVector(mi, ".dsee_S2", a.S2.Value)
		if a.mask != nil {
			w.Put(mi, ".dsee_mask", a.mask)
		}
	}
	sort.Strings(targets)
	for k, v := range map[string]any{
		"r":                a0.R,
		"lora_alpha":       a0.Alpha,
		"lora_dropout":     a0.Dropout,
		"n_sparse":         a0.N(),
		"sparse_selection": a0.Selection.String(),
		"sparse_indices":   indices,
		"prune_ratio":      a0.pruneRatio,
		"target_modules":   targets,
	} {
		w.Config[k] = v
	}
	return nil
}

// settings are the config fields that apply to every module.
type settings struct {
	cfg        Config
	n          int
	pruneRatio float64
}

// readSettings reads the config fields every module shares.
func readSettings(c *peft.AdapterConfig) settings {
	for _, f := range []string{"r", "n_sparse", "sparse_indices"} {
		if !c.Has(f) {
			c.Errorf(f, "missing: gopeft writes it in every DSEE adapter")
		}
	}
	s := settings{
		cfg: Config{
			R:       c.Rank("r", 1),
			Alpha:   c.Alpha("lora_alpha", 0),
			Dropout: c.Prob("lora_dropout", 0),
		},
		n:          c.Int("n_sparse", 1),
		pruneRatio: c.Prob("prune_ratio", 0),
	}
	switch sel := c.String("sparse_selection", "decomposition"); sel {
	case "decomposition":
		s.cfg.Selection = Decomposition
	case "magnitude":
		s.cfg.Selection = Magnitude
	default:
		c.Errorf("sparse_selection", "%q is neither \"decomposition\" nor \"magnitude\"", sel)
	}
	c.Has("target_modules") // checked against the model by LoadAdapter
	return s
}

// supports returns the sparse_indices of the file r reads, decoded once per
// LoadAdapter call (kept in r.Load), each module's list still undecoded.
func supports(r *peft.AdapterReader) map[string]json.RawMessage {
	if idx, ok := r.Load["dsee.sparse_indices"].(map[string]json.RawMessage); ok {
		return idx
	}
	idx := map[string]json.RawMessage{}
	r.Config.Decode("sparse_indices", &idx)
	r.Load["dsee.sparse_indices"] = idx
	return idx
}

// supportOf returns module's Ω from the sparse_indices of r's file.
func supportOf(r *peft.AdapterReader, module string) ([]int, error) {
	raw, ok := supports(r)[module]
	if err := r.Config.Err(); err != nil {
		return nil, err
	}
	if !ok {
		return nil, r.Config.Errorf("sparse_indices", "no entry for module %s, whose tensors the file holds", module)
	}
	var fs []float64
	if err := json.Unmarshal(raw, &fs); err != nil {
		return nil, r.Config.Errorf("sparse_indices", "module %s: not a list of indices", module)
	}
	omega := make([]int, len(fs))
	for t, f := range fs {
		if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return nil, r.Config.Errorf("sparse_indices", "module %s: Ω[%d] = %v is not an integer index", module, t, f)
		}
		omega[t] = int(f)
	}
	return omega, nil
}

// load rebuilds module l's DSEE adapter from r, through New.
func load(r *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
	d, k := l.W.Dims()
	s := readSettings(r.Config)
	omega, err := supportOf(r, l.Name)
	if err != nil {
		return nil, err
	}
	if err := peft.CheckSupport(omega, d, k); err != nil {
		return nil, r.Config.Errorf("sparse_indices", "module %s: %v", l.Name, err)
	}
	if len(omega) != s.n {
		return nil, r.Config.Errorf("sparse_indices", "module %s has %d entries, but n_sparse is %d", l.Name, len(omega), s.n)
	}
	a, err := r.Tensor(".lora_A.weight", -1, k, fmt.Sprintf("lora_A of %s, whose weight is %s", l.Name, peft.ShapeOf(d, k)))
	if err != nil {
		return nil, err
	}
	if a == nil {
		return nil, r.Errorf(".lora_A.weight", "rank 0")
	}
	if rank, _ := a.Dims(); rank != s.cfg.R {
		return nil, r.Errorf(".lora_A.weight", "rank %d, but the config's \"r\" is %d", rank, s.cfg.R)
	}
	b, err := r.Tensor(".lora_B.weight", d, s.cfg.R, fmt.Sprintf("lora_B of %s with r = %d", l.Name, s.cfg.R))
	if err != nil {
		return nil, err
	}
	s2, err := r.Vector(".dsee_S2", len(omega), fmt.Sprintf("dsee_S2 of %s, one value per entry of its sparse_indices", l.Name))
	if err != nil {
		return nil, err
	}
	var mask *mat.Dense
	if r.Has(".dsee_mask") {
		if s.pruneRatio == 0 {
			return nil, r.Errorf(".dsee_mask", "a pruning mask, but the config's prune_ratio is 0")
		}
		if mask, err = r.Tensor(".dsee_mask", d, k, fmt.Sprintf("the pruning mask of %s, whose weight is %s", l.Name, peft.ShapeOf(d, k))); err != nil {
			return nil, err
		}
		if err := checkMask(mask, s.pruneRatio); err != nil {
			return nil, r.Errorf(".dsee_mask", "%v", err)
		}
	} else if s.pruneRatio != 0 {
		return nil, r.Errorf("", "module %s has no tensor dsee_mask, but the config's prune_ratio is %g", l.Name, s.pruneRatio)
	}
	alpha := s.cfg.Alpha
	ad, err := New(l.Name, r.Name, d, k, omega, s.cfg, r.Rand)
	if err != nil {
		return nil, err
	}
	ad.Alpha = alpha // as the file has it, 0 included
	ad.A.Value.Copy(a)
	ad.B.Value.Copy(b)
	ad.S2.Value.Copy(s2)
	if mask != nil {
		ad.mask, ad.pruneRatio = mask, s.pruneRatio
	}
	return ad, nil
}

// checkMask returns an error unless m holds only 0s and 1s, with the
// ⌊p·d·k⌋ zeros Prune leaves.
func checkMask(m *mat.Dense, p float64) error {
	d, k := m.Dims()
	zeros := 0
	for i := 0; i < d; i++ {
		for j := 0; j < k; j++ {
			switch v := m.At(i, j); v {
			case 0:
				zeros++
			case 1:
			default:
				return fmt.Errorf("entry (%d, %d) is %v: a mask holds only 0 and 1", i, j, v)
			}
		}
	}
	if want := pruned(p, d, k); zeros != want {
		return fmt.Errorf("%d zeros, but prune ratio %g leaves ⌊p·d·k⌋ = %d", zeros, p, want)
	}
	return nil
}
