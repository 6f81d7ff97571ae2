package lora

import (
	"fmt"
	"sort"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// This file registers LoRA and saves and loads it in HuggingFace PEFT's
// layout: peft_type "LORA" with use_dora false, and for a module with weight
// W (d×k)
//
//	base_model.model.<module>.lora_A.weight   A (r×k)
//	base_model.model.<module>.lora_B.weight   B (d×r)
//
// The rank and α most modules share become r and lora_alpha; the others go
// into rank_pattern and alpha_pattern, keyed by full module name.

func init() {
	peft.Register(peft.Method{
		Name:    "LoRA",
		Kind:    peft.AdapterMethod,
		Paper:   "Hu et al. 2021, LoRA: Low-Rank Adaptation of Large Language Models, arXiv:2106.09685; rsLoRA: Kalajdzievski 2023, arXiv:2312.03732",
		Package: "github.com/gopeft/gopeft/peft/lora",
		Summary: "W₀ + (α/r)·B·A with B (d×r) zero and A (r×k) random at init; α/√r with RSLoRA",
		Format: &peft.AdapterFormat{
			PEFTType: "LORA",
			Owns:     func(a peft.Adapter) bool { _, ok := a.(*LoRA); return ok },
			Claims:   func(c *peft.AdapterConfig) bool { return !c.Bool("use_dora", false) },
			Tensors:  []string{".lora_A.weight", ".lora_B.weight"},
			Save: func(w *peft.AdapterWriter) error {
				ls := As(w.Adapters)
				settings := make([]Settings, len(ls))
				for i, a := range ls {
					settings[i] = a.Settings()
					w.Put(w.Modules[i].Name, ".lora_A.weight", a.A.Value)
					w.Put(w.Modules[i].Name, ".lora_B.weight", a.B.Value)
				}
				return WriteConfig(w, settings, false)
			},
			Load: func(r *peft.AdapterReader, l *peft.Linear) (peft.Adapter, error) {
				s, a, b, err := ReadFactors(r, l)
				if err != nil {
					return nil, err
				}
				return FromFactors(l.Name, r.Name, a, b, Config{Alpha: s.Alpha, RSLoRA: s.RSLoRA, Dropout: s.Dropout}, r.Rand)
			},
		},
	})
}

// Settings are the hyperparameters of one layer's LoRA-style adapter that
// PEFT's LoraConfig records.
type Settings struct {
	R       int
	Alpha   float64
	RSLoRA  bool
	Dropout float64
}

// Settings returns a's rank, α, rsLoRA and dropout.
func (a *LoRA) Settings() Settings { return Settings{a.R, a.Alpha, a.RSLoRA, a.Dropout} }

// WriteConfig writes PEFT's LoraConfig fields for adapters with settings s
// (one per w.Modules), with use_dora as given: the format of LoRA and of
// methods saved as LoRA variants (DoRA). Modules must agree on rsLoRA and
// dropout, which PEFT sets once for all.
func WriteConfig(w *peft.AdapterWriter, s []Settings, useDoRA bool) error {
	mods := w.Modules
	for i, c := range s {
		if c.RSLoRA != s[0].RSLoRA {
			return fmt.Errorf("modules %s and %s differ in rsLoRA: PEFT's use_rslora is one setting for all", mods[0].Name, mods[i].Name)
		}
		if c.Dropout != s[0].Dropout {
			return fmt.Errorf("modules %s and %s differ in dropout (%g, %g): PEFT's lora_dropout is one setting for all", mods[0].Name, mods[i].Name, s[0].Dropout, c.Dropout)
		}
	}
	// The most common rank and α (the smaller on a tie).
	rCount := map[int]int{}
	aCount := map[float64]int{}
	for _, c := range s {
		rCount[c.R]++
		aCount[c.Alpha]++
	}
	r, alpha := s[0].R, s[0].Alpha
	for k, n := range rCount {
		if n > rCount[r] || (n == rCount[r] && k < r) {
			r = k
		}
	}
	for k, n := range aCount {
		if n > aCount[alpha] || (n == aCount[alpha] && k < alpha) {
			alpha = k
		}
	}
	rankPattern := map[string]int{}
	alphaPattern := map[string]float64{}
	targets := make([]string, len(mods))
	for i, c := range s {
		targets[i] = mods[i].Name
		if c.R != r {
			rankPattern[mods[i].Name] = c.R
		}
		if c.Alpha != alpha {
			alphaPattern[mods[i].Name] = c.Alpha
		}
	}
	sort.Strings(targets)
	for k, v := range map[string]any{
		"r":                   r,
		"lora_alpha":          alpha,
		"lora_dropout":        s[0].Dropout,
		"use_rslora":          s[0].RSLoRA,
		"use_dora":            useDoRA,
		"target_modules":      targets,
		"rank_pattern":        rankPattern,
		"alpha_pattern":       alphaPattern,
		"bias":                "none",
		"fan_in_fan_out":      false,
		"init_lora_weights":   true,
		"modules_to_save":     nil,
		"layers_to_transform": nil,
		"layers_pattern":      nil,
	} {
		w.Config[k] = v
	}
	return nil
}

// ReadSettings reads the LoraConfig fields that apply to module (r and α
// after rank_pattern and alpha_pattern) and refuses the options gopeft does
// not implement.
func ReadSettings(c *peft.AdapterConfig, module string) Settings {
	s := Settings{
		R:       c.Int("r", defaultR),
		Alpha:   c.Alpha("lora_alpha", 8),
		RSLoRA:  c.Bool("use_rslora", false),
		Dropout: c.Prob("lora_dropout", 0),
	}
	c.Bool("use_dora", false)
	c.Has("target_modules") // checked against the model by LoadAdapter
	var n float64
	if c.ModuleValue("rank_pattern", module, &n) {
		s.R = int(n)
		if n != float64(s.R) || n < 1 {
			c.Errorf("rank_pattern", "%v for module %s is not a rank ≥ 1", n, module)
		}
	}
	if c.ModuleValue("alpha_pattern", module, &s.Alpha) && !(s.Alpha >= 0) {
		c.Errorf("alpha_pattern", "%v for module %s is not a finite α ≥ 0", s.Alpha, module)
	}
	RefuseUnsupported(c, "LoRA")
	return s
}

// ReadFactors reads module l's LoraConfig settings and its A (r×k) and B
// (d×r), checking that r is what the config gives the module.
func ReadFactors(r *peft.AdapterReader, l *peft.Linear) (Settings, *mat.Dense, *mat.Dense, error) {
	d, k := l.W.Dims()
	s := ReadSettings(r.Config, l.Name)
	if err := r.Config.Err(); err != nil {
		return s, nil, nil, err
	}
	a, err := r.Tensor(".lora_A.weight", -1, k, fmt.Sprintf("lora_A of %s, whose weight is %s", l.Name, peft.ShapeOf(d, k)))
	if err != nil {
		return s, nil, nil, err
	}
	if a == nil {
		return s, nil, nil, r.Errorf(".lora_A.weight", "rank 0")
	}
	rank, _ := a.Dims()
	b, err := r.Tensor(".lora_B.weight", d, rank, fmt.Sprintf("lora_B of %s with lora_A %s", l.Name, peft.ShapeOf(rank, k)))
	if err != nil {
		return s, nil, nil, err
	}
	if rank != s.R {
		var n float64
		switch {
		case r.Config.ModuleValue("rank_pattern", l.Name, &n):
			return s, nil, nil, r.Errorf(".lora_A.weight", "rank %d, but the config's \"rank_pattern\" gives module %s rank %d", rank, l.Name, s.R)
		case !r.Config.Has("r"):
			return s, nil, nil, r.Config.Errorf("r", "missing, so PEFT's default r = %d applies to module %s, whose lora_A.weight has rank %d", defaultR, l.Name, rank)
		}
		return s, nil, nil, r.Errorf(".lora_A.weight", "rank %d, but the config's \"r\" gives module %s rank %d", rank, l.Name, s.R)
	}
	if rank > min(d, k) {
		return s, nil, nil, r.Errorf(".lora_A.weight", "rank %d out of range [1, %d] for the %s weight of %s", rank, min(d, k), peft.ShapeOf(d, k), l.Name)
	}
	return s, a, b, nil
}

// defaultR is LoraConfig's default rank, which a config without "r" gets.
const defaultR = 8

// RefuseUnsupported refuses the LoraConfig-family options gopeft does not
// implement and reads those a loaded adapter can ignore; method names the
// method in the messages. LoadAdapter refuses any other field it does not
// know, unless its value is PEFT's "nothing" (null, false, "", [], {}).
// Field by field (LoraConfig of PEFT 0.17–0.21; a "nothing" value is always
// accepted):
//
//	field                    gopeft on load
//	r, lora_alpha            honoured (rank checked against the tensors; a
//	                         missing r is PEFT's 8, an error naming "r" when
//	                         the tensors disagree)
//	rank_pattern,            honoured, keys tried in file order as PEFT's
//	alpha_pattern            get_pattern_key
//	lora_dropout, use_rslora honoured
//	use_dora                 honoured: selects DoRA
//	target_modules           honoured: every entry must match a module of
//	                         the model and every module with tensors must
//	                         be matched (peft.LoadAdapter)
//	bias                     "none" only: error otherwise
//	fan_in_fan_out           error if true (Conv1D weights)
//	lora_bias                error if true
//	modules_to_save          error if set
//	layers_to_transform,     error if set (the modules they select are
//	layers_pattern,          given by target_modules and the tensors)
//	exclude_modules
//	layer_replication        error if set
//	megatron_config          error if set
//	trainable_token_indices  error if set
//	target_parameters        error if set
//	use_qalora               error if true (QALoRA pools the input)
//	qalora_group_size        ignored (used only with use_qalora)
//	alora_invocation_tokens  error if set (aLoRA changes the forward)
//	arrow_config             error if set (Arrow routing)
//	ensure_weight_tying      error if true
//	use_bdlora               error if set
//	init_lora_weights        true, false, "gaussian", "orthogonal", "eva":
//	                         ignored, the saved weights are the init; any
//	                         other ("pissa…", "olora", "corda", "loftq",
//	                         "lora_ga", …) is an error: those inits change
//	                         the base weights, so the factors belong to a
//	                         residual base, not to the model loaded onto
//	loftq_config, eva_config, ignored (init only)
//	corda_config,
//	lora_ga_config
//	runtime_config           ignored (PyTorch device placement)
//	peft_type, task_type, …  file metadata (see peft.LoadAdapter)
func RefuseUnsupported(c *peft.AdapterConfig, method string) {
	c.Require("bias", "gopeft's "+method+" trains no bias", `"none"`)
	c.Require("fan_in_fan_out", "Conv1D-style weights")
	c.Require("lora_bias", "a trained bias on lora_B")
	c.Require("modules_to_save", "gopeft saves no full modules beside an adapter")
	c.Require("layers_to_transform", "give the modules in target_modules instead")
	c.Require("layers_pattern", "give the modules in target_modules instead")
	c.Require("exclude_modules", "give the modules in target_modules instead")
	c.Require("layer_replication", "layer replication")
	c.Require("megatron_config", "Megatron layers")
	c.Require("trainable_token_indices", "trainable token embeddings")
	c.Require("target_parameters", "adapters on bare parameters")
	c.Require("use_qalora", "QALoRA's pooled input")
	c.Int("qalora_group_size", 16) // PEFT ≥ 0.18 writes 16; used only with use_qalora
	c.Require("alora_invocation_tokens", "activated LoRA, which applies only after its invocation tokens")
	c.Require("arrow_config", "Arrow routing between adapters")
	c.Require("ensure_weight_tying", "tied adapters")
	c.Require("use_bdlora", "block-diagonal LoRA")
	// The init of a loaded adapter is its saved weights, unless the init
	// also rewrote the base weights.
	c.Require("init_lora_weights", "this init changes the base weights, so the saved factors apply to the residual base PEFT made, not to the base model they are loaded onto; "+
		"convert the adapter in PEFT (save_pretrained with path_initial_model_for_weight_conversion), or set init_lora_weights to true if the model already holds that residual",
		"true", `"gaussian"`, `"orthogonal"`, `"eva"`)
	c.Has("runtime_config")
	c.Has("loftq_config")
	c.Has("eva_config")
	c.Has("corda_config")
	c.Has("lora_ga_config")
}
