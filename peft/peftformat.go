package peft

// This file saves and loads adapters in HuggingFace PEFT's layout, so that a
// PEFT user can load what gopeft trained and the other way round. An adapter
// is a directory holding
//
//	adapter_config.json        the LoraConfig / AdaLoraConfig as JSON
//	adapter_model.safetensors  the adapter's tensors, metadata {"format": "pt"}
//
// with PEFT's tensor names (the adapter's own name is not in them) and
// shapes, for a module with weight W (out×in):
//
//	LoRA     base_model.model.<module>.lora_A.weight        A (r×in)
//	         base_model.model.<module>.lora_B.weight        B (out×r)
//	DoRA     the two above and
//	         base_model.model.<module>.lora_magnitude_vector  M, 1-D [out]
//	AdaLoRA  base_model.model.<module>.lora_A               Q (r×in)
//	         base_model.model.<module>.lora_B               P (out×r)
//	         base_model.model.<module>.lora_E               λ (r×1)
//
// PEFT does not save AdaLoRA's ranknum (it holds r_init and only scales);
// LoadAdapter accepts one if present. After AdaLoRA's final allocation PEFT
// saves only the kept triplets, with the kept mask per module in the config's
// rank_pattern ({"<module>.lora_E": [true, false, …]}); SaveAdapter does the
// same when the triplets it drops have λ = 0, and LoadAdapter puts the kept
// triplets back in place among r_init (the dropped ones zero), so the outputs
// are unchanged either way.
//
// SaveAdapter writes target_modules as the full names of the adapted modules
// and, when modules differ in rank or α, rank_pattern and alpha_pattern keyed
// by full module names. LoadAdapter puts the adapter on exactly the modules
// its tensors name: a module that target_modules matches but that has no
// tensors would get, in PEFT, a freshly initialized adapter whose output is
// zero, so leaving it out changes nothing. Keys of rank_pattern and
// alpha_pattern match a module as in PEFT: the key, a regular expression,
// matches the whole name or a dotted suffix of it.
//
// Tensors are saved as float64 unless AdapterOptions.DType says otherwise;
// PyTorch's load_state_dict converts them to the model's dtype. A PiSSA
// adapter is relative to PiSSA's residual weight, so save the base model too
// (SaveModel) or convert it with PiSSAToLoRA first.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"gonum.org/v1/gonum/mat"
)

// The files of an adapter directory, and the prefix of PEFT's tensor names.
const (
	AdapterConfigFile  = "adapter_config.json"
	AdapterWeightsFile = "adapter_model.safetensors"
	peftPrefix         = "base_model.model."
)

// AdapterOptions tunes SaveAdapterWith.
type AdapterOptions struct {
	// DType is the element type of the tensors: "F64" (the default, exact),
	// "F32", "F16" or "BF16".
	DType string
	// BaseModel is written as base_model_name_or_path (null if "").
	BaseModel string
	// AdaLoRA, if set, is the controller whose schedule (target_r, tinit,
	// tfinal, deltaT, beta1, beta2, orth_reg_weight, total_step) the config
	// records. Without it, PEFT's defaults are written with total_step = 1,
	// which lets PEFT load the adapter for inference.
	AdaLoRA *AdaLoRA
}

// SaveAdapter writes the adapter named name ("" for "default") of every
// module of m that has one to the directory dir (created if needed) in
// PEFT's layout, with float64 tensors. The adapters must all be LoRA (rsLoRA
// included), all DoRA, or all AdaLoRA layers. Each file is written
// atomically.
func SaveAdapter(dir string, m Model, name string) error {
	return SaveAdapterWith(dir, m, name, AdapterOptions{})
}

// SaveAdapterWith is SaveAdapter with options.
func SaveAdapterWith(dir string, m Model, name string, opt AdapterOptions) error {
	if name == "" {
		name = "default"
	}
	if opt.DType == "" {
		opt.DType = "F64"
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("peft: SaveAdapter %s: "+format, append([]any{dir}, args...)...)
	}
	var mods []*Linear
	var ads []Adapter
	for _, l := range m.Modules() {
		if a, ok := l.Adapters[name]; ok {
			mods = append(mods, l)
			ads = append(ads, a)
		}
	}
	if len(mods) == 0 {
		return fail("no module has an adapter named %q", name)
	}
	tensors := map[string]*mat.Dense{}
	shapes := map[string][]int{}
	var cfg map[string]any
	var err error
	switch ads[0].(type) {
	case *LoRA, *DoRA:
		cfg, err = loraConfigJSON(mods, ads, tensors, shapes)
	case *AdaLoRALayer:
		cfg, err = adaLoRAConfigJSON(mods, ads, tensors, shapes, opt.AdaLoRA)
	default:
		err = fmt.Errorf("module %s: a %T adapter cannot be saved in PEFT's format (LoRA, DoRA and AdaLoRA can)", mods[0].Name, ads[0])
	}
	if err != nil {
		return fail("%v", err)
	}
	cfg["base_model_name_or_path"] = nil
	if opt.BaseModel != "" {
		cfg["base_model_name_or_path"] = opt.BaseModel
	}
	for k, v := range map[string]any{
		"task_type": nil, "inference_mode": true, "revision": nil, "bias": "none",
		"fan_in_fan_out": false, "init_lora_weights": true, "modules_to_save": nil,
		"layers_to_transform": nil, "layers_pattern": nil, "auto_mapping": nil,
	} {
		cfg[k] = v
	}
	js, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fail("%v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail("%v", err)
	}
	if err := WriteSafetensorsShaped(filepath.Join(dir, AdapterWeightsFile), tensors, shapes, opt.DType, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, AdapterConfigFile), func(w io.Writer) error {
		_, err := w.Write(append(js, '\n'))
		return err
	})
}

// loraConfigJSON fills tensors (and shapes) with the LoRA or DoRA adapters
// ads of mods and returns their LoraConfig. The rank and α shared by most
// modules become r and lora_alpha; other modules' go into rank_pattern and
// alpha_pattern, keyed by module name.
func loraConfigJSON(mods []*Linear, ads []Adapter, tensors map[string]*mat.Dense, shapes map[string][]int) (map[string]any, error) {
	type common struct {
		r       int
		alpha   float64
		rslora  bool
		dropout float64
	}
	cs := make([]common, len(ads))
	_, isDoRA := ads[0].(*DoRA)
	for i, a := range ads {
		l := mods[i]
		p := peftPrefix + l.Name
		switch a := a.(type) {
		case *LoRA:
			if isDoRA {
				return nil, fmt.Errorf("module %s has LoRA, others DoRA: PEFT's use_dora is one setting for all", l.Name)
			}
			cs[i] = common{a.R, a.Alpha, a.RSLoRA, a.Dropout}
			tensors[p+".lora_A.weight"] = a.A.Value
			tensors[p+".lora_B.weight"] = a.B.Value
		case *DoRA:
			if !isDoRA {
				return nil, fmt.Errorf("module %s has DoRA, others LoRA: PEFT's use_dora is one setting for all", l.Name)
			}
			cs[i] = common{a.R, a.Alpha, a.RSLoRA, a.Dropout}
			tensors[p+".lora_A.weight"] = a.A.Value
			tensors[p+".lora_B.weight"] = a.B.Value
			_, out := a.M.Dims()
			tensors[p+".lora_magnitude_vector"] = a.M.Value
			shapes[p+".lora_magnitude_vector"] = []int{out}
		default:
			return nil, fmt.Errorf("module %s has a %T adapter, others LoRA or DoRA", l.Name, a)
		}
		if cs[i].rslora != cs[0].rslora {
			return nil, fmt.Errorf("modules %s and %s differ in rsLoRA: PEFT's use_rslora is one setting for all", mods[0].Name, l.Name)
		}
		if cs[i].dropout != cs[0].dropout {
			return nil, fmt.Errorf("modules %s and %s differ in dropout (%g, %g): PEFT's lora_dropout is one setting for all", mods[0].Name, l.Name, cs[0].dropout, cs[i].dropout)
		}
	}
	// The most common rank and α (the smaller on a tie).
	rCount := map[int]int{}
	aCount := map[float64]int{}
	for _, c := range cs {
		rCount[c.r]++
		aCount[c.alpha]++
	}
	r, alpha := cs[0].r, cs[0].alpha
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
	for i, c := range cs {
		targets[i] = mods[i].Name
		if c.r != r {
			rankPattern[mods[i].Name] = c.r
		}
		if c.alpha != alpha {
			alphaPattern[mods[i].Name] = c.alpha
		}
	}
	sort.Strings(targets)
	return map[string]any{
		"peft_type":      "LORA",
		"r":              r,
		"lora_alpha":     alpha,
		"lora_dropout":   cs[0].dropout,
		"use_rslora":     cs[0].rslora,
		"use_dora":       isDoRA,
		"target_modules": targets,
		"rank_pattern":   rankPattern,
		"alpha_pattern":  alphaPattern,
	}, nil
}

// adaLoRAConfigJSON fills tensors (and shapes) with the AdaLoRA layers ads of
// mods and returns their AdaLoraConfig, with the schedule of ctl if not nil.
func adaLoRAConfigJSON(mods []*Linear, ads []Adapter, tensors map[string]*mat.Dense, shapes map[string][]int, ctl *AdaLoRA) (map[string]any, error) {
	layers := make([]*AdaLoRALayer, len(ads))
	for i, a := range ads {
		al, ok := a.(*AdaLoRALayer)
		if !ok {
			return nil, fmt.Errorf("module %s has a %T adapter, others AdaLoRA", mods[i].Name, a)
		}
		layers[i] = al
		if al.RInit != layers[0].RInit {
			return nil, fmt.Errorf("modules %s and %s differ in r_init (%d, %d): PEFT's init_r is one setting for all", mods[0].Name, mods[i].Name, layers[0].RInit, al.RInit)
		}
		if al.Dropout != layers[0].Dropout || al.Scaling() != layers[0].Scaling() {
			return nil, fmt.Errorf("modules %s and %s differ in dropout or α: PEFT has one setting for all", mods[0].Name, mods[i].Name)
		}
		if er, _ := al.E.Dims(); er != al.RInit || len(al.kept) != al.RInit {
			return nil, fmt.Errorf("module %s: AdaLoRA layer holds %d triplets (mask of %d) for r_init = %d", mods[i].Name, er, len(al.kept), al.RInit)
		}
	}
	// Truncate to the kept triplets, as PEFT does after its final
	// allocation, only if that changes no output: every dropped λ is 0.
	truncate, anyDropped := true, false
	for _, al := range layers {
		for i, k := range al.kept {
			if !k {
				anyDropped = true
				if al.E.Value.At(i, 0) != 0 {
					truncate = false
				}
			}
		}
	}
	for _, al := range layers {
		if al.Rank() == 0 {
			truncate = false // keep the file free of empty tensors
		}
	}
	truncate = truncate && anyDropped
	var rankPattern map[string][]bool
	if truncate {
		rankPattern = map[string][]bool{}
	}
	targets := make([]string, len(mods))
	for i, al := range layers {
		l := mods[i]
		targets[i] = l.Name
		p := peftPrefix + l.Name
		q, lam, pm := al.Q.Value, al.E.Value, al.P.Value
		if truncate {
			rankPattern[l.Name+".lora_E"] = al.Kept()
			var idx []int
			for j, k := range al.kept {
				if k {
					idx = append(idx, j)
				}
			}
			q, lam, pm = pickRows(q, idx), pickRows(lam, idx), pickCols(pm, idx)
		}
		tensors[p+".lora_A"] = q
		tensors[p+".lora_B"] = pm
		tensors[p+".lora_E"] = lam
	}
	sort.Strings(targets)
	al := layers[0]
	alpha := al.Alpha
	if alpha <= 0 {
		alpha = float64(al.RInit)
	}
	cfg := map[string]any{
		"peft_type":       "ADALORA",
		"init_r":          al.RInit,
		"target_r":        8,
		"lora_alpha":      alpha,
		"lora_dropout":    al.Dropout,
		"use_rslora":      false,
		"use_dora":        false,
		"target_modules":  targets,
		"rank_pattern":    rankPattern,
		"alpha_pattern":   map[string]float64{},
		"tinit":           0,
		"tfinal":          0,
		"deltaT":          1,
		"beta1":           0.85,
		"beta2":           0.85,
		"orth_reg_weight": 0.5,
		"total_step":      1,
	}
	if ctl != nil {
		c := ctl.Config()
		cfg["target_r"], cfg["tinit"], cfg["tfinal"], cfg["deltaT"] = c.TargetR, c.TInit, c.TFinal, c.DeltaT
		cfg["beta1"], cfg["beta2"], cfg["orth_reg_weight"], cfg["total_step"] = c.Beta1, c.Beta2, c.OrthRegWeight, c.TotalStep
	} else if al.RInit < 8 {
		cfg["target_r"] = al.RInit
	}
	return cfg, nil
}

// pickRows returns the rows idx of m; pickCols its columns idx.
func pickRows(m *mat.Dense, idx []int) *mat.Dense {
	_, c := m.Dims()
	out := mat.NewDense(len(idx), c, nil)
	for i, j := range idx {
		out.SetRow(i, m.RawRowView(j))
	}
	return out
}

func pickCols(m *mat.Dense, idx []int) *mat.Dense {
	r, _ := m.Dims()
	out := mat.NewDense(r, len(idx), nil)
	for i := 0; i < r; i++ {
		for k, j := range idx {
			out.Set(i, k, m.At(i, j))
		}
	}
	return out
}

// peftConfig holds the fields of adapter_config.json that LoadAdapter uses.
type peftConfig struct {
	file         string
	peftType     string
	r            int
	alpha        float64
	dropout      float64
	rslora, dora bool
	initR        int
	loraRanks    map[string]int    // LORA's rank_pattern
	adaKept      map[string][]bool // ADALORA's rank_pattern
	alphaPattern map[string]float64
}

// readPeftConfig reads and checks adapter_config.json.
func readPeftConfig(path string) (*peftConfig, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("peft: LoadAdapter: %w", err)
	}
	return parsePeftConfig(path, raw)
}

// parsePeftConfig parses and checks the adapter_config.json raw, named path
// in errors.
func parsePeftConfig(path string, raw []byte) (*peftConfig, error) {
	c := &peftConfig{file: path}
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("peft: LoadAdapter %s: field %q: %s", path, field, fmt.Sprintf(format, args...))
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("peft: LoadAdapter %s: not a JSON object: %w", path, err)
	}
	get := func(field string, dst any) error {
		v, ok := fields[field]
		if !ok || string(v) == "null" {
			return nil
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return bad(field, "%s is not %s", v, kindOf(dst))
		}
		return nil
	}
	var rf, initRf float64 = 8, 12
	c.alpha = 8
	var bias string
	var fanInFanOut, loraBias bool
	var modulesToSave []string
	var rankPattern map[string]json.RawMessage
	for _, g := range []struct {
		field string
		dst   any
	}{
		{"peft_type", &c.peftType}, {"r", &rf}, {"lora_alpha", &c.alpha}, {"lora_dropout", &c.dropout},
		{"use_rslora", &c.rslora}, {"use_dora", &c.dora}, {"init_r", &initRf}, {"bias", &bias},
		{"fan_in_fan_out", &fanInFanOut}, {"modules_to_save", &modulesToSave}, {"lora_bias", &loraBias},
		{"rank_pattern", &rankPattern}, {"alpha_pattern", &c.alphaPattern},
	} {
		if err := get(g.field, g.dst); err != nil {
			return nil, err
		}
	}
	c.r, c.initR = int(rf), int(initRf)
	switch {
	case c.peftType != "LORA" && c.peftType != "ADALORA":
		return nil, bad("peft_type", "%q is not supported (want \"LORA\" or \"ADALORA\")", c.peftType)
	case rf != math.Trunc(rf) || c.r < 1:
		return nil, bad("r", "%v is not a rank ≥ 1", rf)
	case initRf != math.Trunc(initRf) || c.initR < 1:
		return nil, bad("init_r", "%v is not a rank ≥ 1", initRf)
	case math.IsNaN(c.alpha) || math.IsInf(c.alpha, 0) || c.alpha < 0:
		return nil, bad("lora_alpha", "%v is not a finite α ≥ 0", c.alpha)
	case !(c.dropout >= 0 && c.dropout < 1):
		return nil, bad("lora_dropout", "%v is outside [0, 1)", c.dropout)
	case bias != "" && bias != "none":
		return nil, bad("bias", "%q is not supported (only \"none\")", bias)
	case fanInFanOut:
		return nil, bad("fan_in_fan_out", "true is not supported (Conv1D-style weights)")
	case loraBias:
		return nil, bad("lora_bias", "true is not supported")
	case len(modulesToSave) > 0:
		return nil, bad("modules_to_save", "%q is not supported", modulesToSave)
	case c.peftType == "ADALORA" && (c.dora || c.rslora):
		return nil, bad("use_dora", "AdaLoRA with DoRA or rsLoRA is not supported")
	}
	for k, v := range rankPattern {
		if c.peftType == "LORA" {
			var n float64
			if json.Unmarshal(v, &n) != nil || n != math.Trunc(n) || n < 1 {
				return nil, bad("rank_pattern", "%q: %s is not a rank ≥ 1", k, v)
			}
			if c.loraRanks == nil {
				c.loraRanks = map[string]int{}
			}
			c.loraRanks[k] = int(n)
			continue
		}
		var kept []bool
		if json.Unmarshal(v, &kept) != nil || len(kept) != c.initR {
			return nil, bad("rank_pattern", "%q: %s is not a list of init_r = %d booleans", k, v, c.initR)
		}
		if c.adaKept == nil {
			c.adaKept = map[string][]bool{}
		}
		c.adaKept[k] = kept
	}
	for k, v := range c.alphaPattern {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return nil, bad("alpha_pattern", "%q: %v is not a finite α ≥ 0", k, v)
		}
	}
	return c, nil
}

func kindOf(dst any) string {
	switch dst.(type) {
	case *string:
		return "a string"
	case *float64:
		return "a number"
	case *bool:
		return "a boolean"
	case *[]string:
		return "a list of strings"
	}
	return "an object of the expected form"
}

// patternValue returns the value of the first key of pattern (sorted) that
// matches module as PEFT matches rank_pattern and alpha_pattern keys: the
// key, a regular expression, matches the whole module name or a dotted
// suffix of it.
func patternValue[V any](pattern map[string]V, module string) (v V, key string, ok bool, err error) {
	keys := make([]string, 0, len(pattern))
	for k := range pattern {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		re, err := regexp.Compile(`^(?:.*\.)?(?:` + k + `)$`)
		if err != nil {
			return v, k, false, err
		}
		if re.MatchString(module) {
			return pattern[k], k, true, nil
		}
	}
	return v, "", false, nil
}

// LoadAdapter reads the PEFT adapter in the directory dir and attaches it to
// m under name ("" for "default") as it was saved: LoRA (with rsLoRA's
// scaling if use_rslora), DoRA (use_dora) or AdaLoRA layers, on the modules
// its tensors name, and makes it active; m's base weights are frozen, the
// adapter's parameters trainable. Nothing is attached unless the whole
// adapter is well-formed and fits m: an unknown module, a missing or extra
// tensor, or a shape that does not fit the module is an error naming the
// file, the tensor and both shapes.
func LoadAdapter(dir string, m Model, name string) error {
	if name == "" {
		name = "default"
	}
	cfg, err := readPeftConfig(filepath.Join(dir, AdapterConfigFile))
	if err != nil {
		return err
	}
	wpath := filepath.Join(dir, AdapterWeightsFile)
	if _, err := os.Stat(wpath); errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(dir, "adapter_model.bin")); err == nil {
			return fmt.Errorf("peft: LoadAdapter %s: only adapter_model.bin (a PyTorch pickle) is there; gopeft reads %s", dir, AdapterWeightsFile)
		}
	}
	f, err := OpenSafetensors(wpath)
	if err != nil {
		return err
	}
	defer f.Close()
	return loadAdapter(cfg, f, m, name)
}

// LoadAdapterBytes is LoadAdapter reading the adapter from the contents of
// its two files (for example embedded with go:embed).
func LoadAdapterBytes(config, weights []byte, m Model, name string) error {
	if name == "" {
		name = "default"
	}
	cfg, err := parsePeftConfig("("+AdapterConfigFile+")", config)
	if err != nil {
		return err
	}
	f, err := ParseSafetensors(weights)
	if err != nil {
		return err
	}
	return loadAdapter(cfg, f, m, name)
}

// loadAdapter attaches the adapter of config cfg and tensors f to m.
func loadAdapter(cfg *peftConfig, f *SafetensorsFile, m Model, name string) error {
	fail := func(tensor, format string, args ...any) error {
		return &SafetensorsError{File: f.name, Tensor: tensor, Msg: fmt.Sprintf(format, args...)}
	}

	// Group the tensors by module.
	suffixes := []string{".lora_A.weight", ".lora_B.weight", ".lora_magnitude_vector", ".lora_A", ".lora_B", ".lora_E", ".ranknum"}
	if cfg.peftType == "ADALORA" {
		suffixes = []string{".lora_A", ".lora_B", ".lora_E", ".ranknum"}
	}
	byModule := map[string]map[string]string{} // module → suffix → tensor name
	var order []string
	for _, tname := range f.Names() {
		rest, ok := strings.CutPrefix(tname, peftPrefix)
		if !ok {
			return fail(tname, "name does not start with %q, as PEFT's adapter tensors do", peftPrefix)
		}
		found := false
		for _, s := range suffixes {
			if mod, ok := strings.CutSuffix(rest, s); ok && mod != "" {
				if byModule[mod] == nil {
					byModule[mod] = map[string]string{}
					order = append(order, mod)
				}
				byModule[mod][s] = tname
				found = true
				break
			}
		}
		if !found {
			return fail(tname, "not a tensor of a %s adapter (want a name ending in one of %s)", cfg.peftType, strings.Join(suffixes, ", "))
		}
	}
	if len(byModule) == 0 {
		return fail("", "the adapter has no tensors")
	}
	sort.Strings(order)
	built := map[string]Adapter{}
	var targets []string
	for i, mod := range order {
		l, err := Module(m, mod)
		if err != nil {
			return fmt.Errorf("peft: LoadAdapter %s: tensors of module %q: %w", f.name, mod, err)
		}
		if _, ok := l.Adapters[name]; ok {
			return fmt.Errorf("peft: LoadAdapter %s: %s already has an adapter named %q", f.name, mod, name)
		}
		rng := rand.New(rand.NewSource(int64(i) + 1)) // dropout masks
		var a Adapter
		if cfg.peftType == "ADALORA" {
			a, err = loadAdaLoRALayer(f, cfg, l, name, byModule[mod], rng)
		} else {
			a, err = loadLoRALayer(f, cfg, l, name, byModule[mod], rng)
		}
		if err != nil {
			return err
		}
		built[mod] = a
		targets = append(targets, "^"+regexp.QuoteMeta(mod)+"$")
	}
	_, err := AddAdapter(m, name, targets, func(l *Linear) (Adapter, error) { return built[l.Name], nil })
	return err
}

// readFitting reads tensor tname of f, which must be (r×c) (r or c < 0:
// any), with a stored shape of 2 dimensions, or 1 if oneD.
func readFitting(f *SafetensorsFile, tname string, r, c int, oneD bool, what string) (*mat.Dense, error) {
	s := f.Shape(tname)
	e := f.entries[tname]
	okDims := len(s) == 2
	if oneD {
		okDims = len(s) == 1
	}
	if !okDims || (r >= 0 && e.rows != r) || (c >= 0 && e.cols != c) {
		want := fmt.Sprintf("(%s×%s)", dimStr(r), dimStr(c))
		if oneD {
			want = fmt.Sprintf("[%s]", dimStr(c))
		}
		return nil, &SafetensorsError{File: f.name, Tensor: tname, Msg: fmt.Sprintf("shape %v does not fit %s: want %s", s, what, want)}
	}
	if e.rows == 0 || e.cols == 0 {
		return nil, nil // an AdaLoRA module with every triplet dropped
	}
	return f.Tensor(tname)
}

func dimStr(d int) string {
	if d < 0 {
		return "r"
	}
	return fmt.Sprint(d)
}

// loadLoRALayer builds module l's LoRA or DoRA adapter from its tensors ts.
func loadLoRALayer(f *SafetensorsFile, cfg *peftConfig, l *Linear, name string, ts map[string]string, rng *rand.Rand) (Adapter, error) {
	out, in := l.W.Dims()
	fail := func(format string, args ...any) error {
		return &SafetensorsError{File: f.name, Tensor: peftPrefix + l.Name, Msg: fmt.Sprintf(format, args...)}
	}
	for _, s := range []string{".lora_A", ".lora_B", ".lora_E", ".ranknum"} {
		if t, ok := ts[s]; ok {
			return nil, &SafetensorsError{File: f.name, Tensor: t, Msg: "an AdaLoRA tensor in a LORA adapter"}
		}
	}
	ta, okA := ts[".lora_A.weight"]
	tb, okB := ts[".lora_B.weight"]
	tm, okM := ts[".lora_magnitude_vector"]
	switch {
	case !okA || !okB:
		return nil, fail("module %s needs both lora_A.weight and lora_B.weight", l.Name)
	case cfg.dora && !okM:
		return nil, fail("use_dora is set but module %s has no lora_magnitude_vector", l.Name)
	case !cfg.dora && okM:
		return nil, &SafetensorsError{File: f.name, Tensor: tm, Msg: "a DoRA magnitude, but use_dora is not set"}
	}
	a, err := readFitting(f, ta, -1, in, false, fmt.Sprintf("lora_A of %s, whose weight is %s", l.Name, shapeOf(out, in)))
	if err != nil {
		return nil, err
	}
	if a == nil {
		return nil, &SafetensorsError{File: f.name, Tensor: ta, Msg: "rank 0"}
	}
	r, _ := a.Dims()
	b, err := readFitting(f, tb, out, r, false, fmt.Sprintf("lora_B of %s with lora_A %s", l.Name, shapeOf(r, in)))
	if err != nil {
		return nil, err
	}
	wantR, alpha := cfg.r, cfg.alpha
	if v, key, ok, err := patternValue(cfg.loraRanks, l.Name); err != nil {
		return nil, fmt.Errorf("peft: LoadAdapter %s: field \"rank_pattern\": key %q: %v", cfg.file, key, err)
	} else if ok {
		wantR = v
	}
	if v, key, ok, err := patternValue(cfg.alphaPattern, l.Name); err != nil {
		return nil, fmt.Errorf("peft: LoadAdapter %s: field \"alpha_pattern\": key %q: %v", cfg.file, key, err)
	} else if ok {
		alpha = v
	}
	if r != wantR {
		return nil, &SafetensorsError{File: f.name, Tensor: ta, Msg: fmt.Sprintf("rank %d, but the config gives module %s rank %d", r, l.Name, wantR)}
	}
	if r > min(out, in) {
		return nil, &SafetensorsError{File: f.name, Tensor: ta, Msg: fmt.Sprintf("rank %d out of range [1, %d] for the %s weight of %s", r, min(out, in), shapeOf(out, in), l.Name)}
	}
	pA := NewParam(l.Name+".lora_A."+name+".weight", a)
	pB := NewParam(l.Name+".lora_B."+name+".weight", b)
	if !cfg.dora {
		return &LoRA{A: pA, B: pB, R: r, Alpha: alpha, RSLoRA: cfg.rslora, Dropout: cfg.dropout, rng: rng}, nil
	}
	mv, err := readFitting(f, tm, 1, out, true, fmt.Sprintf("the magnitude of %s, whose weight is %s", l.Name, shapeOf(out, in)))
	if err != nil {
		return nil, err
	}
	return &DoRA{A: pA, B: pB, M: NewParam(l.Name+".lora_magnitude_vector."+name+".weight", mv),
		R: r, Alpha: alpha, RSLoRA: cfg.rslora, Dropout: cfg.dropout, rng: rng}, nil
}

// loadAdaLoRALayer builds module l's AdaLoRA layer from its tensors ts,
// putting back the triplets that rank_pattern says were dropped as zeros.
func loadAdaLoRALayer(f *SafetensorsFile, cfg *peftConfig, l *Linear, name string, ts map[string]string, rng *rand.Rand) (Adapter, error) {
	out, in := l.W.Dims()
	rInit := cfg.initR
	if rInit > min(out, in) {
		return nil, fmt.Errorf("peft: LoadAdapter %s: init_r = %d out of range [1, %d] for the %s weight of %s", cfg.file, rInit, min(out, in), shapeOf(out, in), l.Name)
	}
	fail := func(format string, args ...any) error {
		return &SafetensorsError{File: f.name, Tensor: peftPrefix + l.Name, Msg: fmt.Sprintf(format, args...)}
	}
	tq, okQ := ts[".lora_A"]
	tp, okP := ts[".lora_B"]
	te, okE := ts[".lora_E"]
	if !okQ || !okP || !okE {
		return nil, fail("module %s needs lora_A, lora_B and lora_E", l.Name)
	}
	// Which of the r_init triplets the file holds.
	kept := make([]bool, rInit)
	for i := range kept {
		kept[i] = true
	}
	if len(cfg.adaKept) > 0 {
		var ok bool
		if kept, ok = cfg.adaKept[l.Name+".lora_E"]; !ok {
			return nil, fmt.Errorf("peft: LoadAdapter %s: field \"rank_pattern\" has no key %q", cfg.file, l.Name+".lora_E")
		}
	}
	var idx []int
	for i, k := range kept {
		if k {
			idx = append(idx, i)
		}
	}
	k := len(idx)
	q, err := readFitting(f, tq, k, in, false, fmt.Sprintf("lora_A (Q) of %s with %d kept triplets", l.Name, k))
	if err != nil {
		return nil, err
	}
	p, err := readFitting(f, tp, out, k, false, fmt.Sprintf("lora_B (P) of %s with %d kept triplets", l.Name, k))
	if err != nil {
		return nil, err
	}
	e, err := readFitting(f, te, k, 1, false, fmt.Sprintf("lora_E (λ) of %s with %d kept triplets", l.Name, k))
	if err != nil {
		return nil, err
	}
	if tr, ok := ts[".ranknum"]; ok {
		if s := f.Shape(tr); !shapeFits(s, 1, 1) {
			return nil, &SafetensorsError{File: f.name, Tensor: tr, Msg: fmt.Sprintf("shape %v: want [1]", s)}
		}
	}
	full := func(rows, cols int, src *mat.Dense, byRow bool) *mat.Dense {
		d := mat.NewDense(rows, cols, nil)
		for j, i := range idx {
			if byRow {
				d.SetRow(i, src.RawRowView(j))
			} else {
				for r := 0; r < rows; r++ {
					d.Set(r, i, src.At(r, j))
				}
			}
		}
		return d
	}
	return &AdaLoRALayer{
		Q:       NewParam(l.Name+".lora_A."+name, full(rInit, in, q, true)),
		E:       NewParam(l.Name+".lora_E."+name, full(rInit, 1, e, true)),
		P:       NewParam(l.Name+".lora_B."+name, full(out, rInit, p, false)),
		Module:  l.Name,
		RInit:   rInit,
		Alpha:   cfg.alpha,
		Dropout: cfg.dropout,
		kept:    kept,
		rng:     rng,
	}, nil
}
