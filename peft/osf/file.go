package osf

// This file saves and loads OSF-trained weights as a HuggingFace PEFT OSF
// adapter (peft_type "OSF"), which PEFT's PeftModel.from_pretrained loads.
//
// # PEFT's layout
//
// PEFT's OSF layer (peft/tuners/osf/layer.py, OSFLayer.update_layer) splits
// the base weight W₀ (m×n, nn.Linear's out×in) at the effective rank k by
// an SVD (utils.py, decompose_weight_matrix, in float32), p = min(m,n):
//
//	U_high (m×k), S_high (k), V_high (k×n)          the top k: frozen buffers
//	U_low (m×(p−k)), S_low (p−k), V_low ((p−k)×n)  the rest: trainable
//
// and its output is that of
//
//	W = U_high·diag(S_high)·V_high + U_low·diag(S_low)·V_low
//
// (reconstruct_weight_matrix; later versions compute the same W as
// W₀ + U_low·diag(S_low)·V_low − (the low part of W₀'s SVD)). The frozen
// parts are BufferDicts, which PEFT makes non-persistent, so the saved
// adapter holds only the trainable factors, under
// get_peft_model_state_dict's names (the adapter name removed):
//
//	base_model.model.<module>.osf_svd_params.U_low   [m, p−k]
//	base_model.model.<module>.osf_svd_params.S_low   [p−k]
//	base_model.model.<module>.osf_svd_params.V_low   [p−k, n]
//
// and loading recomputes the frozen part from the SVD of the base model's
// weight, at the k that adapter_config.json gives: rank_pattern (regular
// expressions, the first one re.search finds in the module's name) or
// else effective_rank (an integer, a float in (0, 1] as a fraction of p,
// or null for p//2; model.py, _create_and_replace).
//
// # What gopeft writes
//
// So an OSF file is relative to a base weight, and its frozen part must be
// the top k of that base. gopeft's OSF protects, at each Protect, the top
// singular triplets of the weight W_b it then has, and (with the step
// projected, the default) later steps leave U_kᵀ·W and W·V_k unchanged. So
// SaveAdapter writes each protected weight W relative to W_b, the weight
// at the last Protect, with k the protected rank:
//
//	W = U_k·diag(S_k)·V_kᵀ + L,   L = (I − U_kU_kᵀ)·W·(I − V_kV_kᵀ),   rank L ≤ p − k
//
// with U_low·diag(S_low)·V_low the thin SVD of L, and rank_pattern giving
// every module its k ("^<module>$"). PEFT, loading it onto W_b, rebuilds
// U_k·diag(S_k)·V_kᵀ from W_b's SVD and so gives W back (to its float32
// SVD's precision). A file saved right after Protect (as RunContinual
// leaves the optimizer) is relative to the final weights, and carries
// only the split; to carry a task's training, save before its Protect and
// keep the weights of the previous one as the base.
//
// SaveAdapter refuses, naming the module, a weight that has moved inside
// its protected subspace (Config.GradientOnly, or weight decay) or whose
// protected values were not the top k of W_b: PEFT could not rebuild it.
// Biases and tensors OSF does not protect are not in the file (PEFT's OSF
// trains only the low factors): save them with peft.SaveModel, or freeze
// them. A module whose whole rank is protected (k = p) has nothing to
// train and is left out, as its weight is W_b.
//
// LoadAdapter does what PEFT does: for each module in the file it takes
// the top k of the SVD of the model's current weight (in float64) and
// adds the file's low part, and it hands that frozen subspace to an OSF
// optimizer, so training can go on in gopeft where PEFT left it.
//
// The directory is written file by file, each replaced atomically (the
// weights first); peft's whole-directory replacement is not exported.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/gopeft/gopeft/accel"
	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// PEFTType is peft_type in adapter_config.json (PEFT's PeftType.OSF).
const PEFTType = "OSF"

// The names of an OSF module's tensors after "base_model.model.<module>".
const (
	tensorPrefix = "base_model.model."
	svdParams    = ".osf_svd_params."
)

var lowNames = []string{"U_low", "S_low", "V_low"}

// SaveOptions tunes SaveAdapter; zero fields select the defaults noted.
type SaveOptions struct {
	// DType is the tensors' element type: "F64" (default), "F32", "F16"
	// or "BF16".
	DType string
	// BaseModel is written as base_model_name_or_path (null if "").
	BaseModel string
	// Tolerance bounds, relative to max|W|, how far a weight may be from
	// U_k·diag(S_k)·V_kᵀ plus its unprotected part (default 1e-9).
	Tolerance float64
}

// SaveAdapter writes the weights of m that o protects to the directory dir
// as a PEFT OSF adapter (see this file's comment): adapter_config.json and
// adapter_model.safetensors. It returns an error naming the module if a
// weight cannot be written so that PEFT rebuilds it, or if no module has a
// protected subspace; ctx stops the SVDs.
func SaveAdapter(ctx context.Context, dir string, m peft.Model, o *OSF, opt SaveOptions) error {
	if opt.DType == "" {
		opt.DType = "F64"
	}
	if opt.Tolerance == 0 {
		opt.Tolerance = 1e-9
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("peft: osf.SaveAdapter %s: "+format, append([]any{dir}, args...)...)
	}
	mods := m.Modules()
	owned := map[*peft.Tensor]bool{}
	for _, l := range mods {
		owned[l.W] = true
	}
	var stray []string
	for p := range o.prot {
		if !owned[p] {
			stray = append(stray, p.Name)
		}
	}
	if len(stray) > 0 {
		sort.Strings(stray)
		return fail("%s: protected by OSF but not the weight of a Linear module; PEFT's OSF adapts nn.Linear weights only (restrict Config.Targets)", strings.Join(stray, ", "))
	}
	tensors := map[string]*mat.Dense{}
	shapes := map[string][]int{}
	ranks := map[string]int{}
	var names []string
	for _, l := range mods {
		sub := o.prot[l.W]
		if sub == nil {
			if l.W.Trainable && o.targets(l.W) {
				return fail("module %s: its weight has no protected subspace yet (call Protect, or OSF.AfterTask, first): PEFT's OSF needs an effective rank ≥ 1", l.Name)
			}
			continue
		}
		if l.Kernel != nil {
			return fail("module %s: a convolution (kernel %v); PEFT's OSF adapts nn.Linear only", l.Name, l.Kernel)
		}
		r, c := l.W.Dims()
		p, k := min(r, c), len(sub.s)
		smin := math.Inf(1)
		for _, s := range sub.s {
			smin = math.Min(smin, s)
		}
		switch {
		case !(smin > sub.next):
			return fail("module %s: its protected singular values (smallest %g) were not above the rest (largest %g) at the last Protect, so PEFT's SVD of that weight would freeze other directions", l.Name, smin, sub.next)
		case sub.leak > opt.Tolerance:
			return fail("module %s: at the last Protect the weight was %.3g (relative) off its protected triplets plus the rest (Config.GradientOnly, or weight decay, in the task before); PEFT's SVD of it would freeze another part", l.Name, sub.leak)
		}
		if e := leakOf(sub, l.W.Value); e > opt.Tolerance {
			return fail("module %s: the %s weight has moved %.3g (relative to max|W|) inside its protected subspace since Protect (Config.GradientOnly, or weight decay), which PEFT's OSF keeps frozen; tolerance %g", l.Name, peft.ShapeOf(r, c), e, opt.Tolerance)
		}
		if k == p {
			continue // nothing trainable; the weight is the base's
		}
		low := Project(sub.u, sub.v, l.W.Value) // L (m×n), rank ≤ p − k
		svd, err := accel.ThinSVD(ctx, low)
		if err != nil {
			return fail("module %s: SVD of the unprotected part: %w", l.Name, err)
		}
		q := p - k
		base := tensorPrefix + l.Name + svdParams
		tensors[base+"U_low"] = mat.DenseCopyOf(svd.U.Slice(0, r, 0, q))   // (m×(p−k))
		tensors[base+"S_low"] = mat.NewDense(1, q, slicesClone(svd.S[:q])) // [p−k]
		shapes[base+"S_low"] = []int{q}
		tensors[base+"V_low"] = mat.DenseCopyOf(svd.VT.Slice(0, q, 0, c)) // ((p−k)×n)
		ranks[l.Name] = k
		names = append(names, l.Name)
	}
	if len(names) == 0 {
		return fail("no module has a protected subspace with anything left to train")
	}
	sort.Strings(names)
	var pattern []patternRank
	uniform := true
	for _, n := range names {
		pattern = append(pattern, patternRank{"^" + regexp.QuoteMeta(n) + "$", ranks[n]})
		uniform = uniform && ranks[n] == ranks[names[0]]
	}
	cfg := map[string]any{
		"peft_type":               PEFTType,
		"effective_rank":          nil,
		"target_modules":          names,
		"rank_pattern":            orderedRanks(pattern),
		"init_weights":            true,
		"modules_to_save":         nil,
		"target_svd_config":       nil,
		"task_type":               nil,
		"inference_mode":          true,
		"revision":                nil,
		"auto_mapping":            nil,
		"base_model_name_or_path": nil,
	}
	if uniform {
		cfg["effective_rank"] = ranks[names[0]]
	}
	if opt.BaseModel != "" {
		cfg["base_model_name_or_path"] = opt.BaseModel
	}
	js, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fail("%v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail("%v", err)
	}
	if err := peft.WriteSafetensorsShaped(filepath.Join(dir, peft.AdapterWeightsFile), tensors, shapes, opt.DType, map[string]string{"format": "pt"}); err != nil {
		return fail("%v", err)
	}
	if err := writeFile(filepath.Join(dir, peft.AdapterConfigFile), append(js, '\n')); err != nil {
		return fail("%v", err)
	}
	return nil
}

// leakOf returns max|W − U_k·diag(s)·V_kᵀ − (I − U_kU_kᵀ)·W·(I − V_kV_kᵀ)| / max|W|:
// zero when the protected triplets are singular triplets of W.
func leakOf(sub *subspace, w *mat.Dense) float64 {
	var us, high mat.Dense
	us.Apply(func(_, j int, v float64) float64 { return v * sub.s[j] }, sub.u) // U_k·diag(s) (m×k)
	high.Mul(&us, sub.v.T())                                                   // (m×n)
	d := Project(sub.u, sub.v, w)
	d.Add(d, &high)
	d.Sub(w, d)
	return maxAbs(d) / math.Max(maxAbs(w), 1e-300)
}

func maxAbs(a mat.Matrix) float64 { return math.Max(mat.Max(a), -mat.Min(a)) }

func slicesClone(s []float64) []float64 { return append([]float64(nil), s...) }

// patternRank is one rank_pattern entry; orderedRanks writes them as a JSON
// object in order (PEFT takes the first pattern that matches).
type patternRank struct {
	pattern string
	rank    int
}

type orderedRanks []patternRank

func (o orderedRanks) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(e.pattern)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "%s:%d", k, e.rank)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// writeFile replaces path by data atomically: a new file beside it,
// fsynced, renamed into place.
func writeFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// osfFields are the adapter_config.json fields LoadAdapter reads or, as
// PEFT does, accepts and ignores (PeftConfig's own, and target_svd_config).
var osfFields = map[string]bool{
	"peft_type": true, "effective_rank": true, "target_modules": true, "rank_pattern": true,
	"init_weights": true, "modules_to_save": true, "target_svd_config": true,
	"peft_version": true, "task_type": true, "inference_mode": true, "revision": true,
	"base_model_name_or_path": true, "auto_mapping": true, "megatron_config": true, "megatron_core": true,
}

// loaded is one module's rebuilt weight and frozen subspace.
type loaded struct {
	l   *peft.Linear
	w   *mat.Dense
	sub *subspace
}

// LoadAdapter reads the PEFT OSF adapter in dir and applies it to m as
// PEFT's OSF layer does (see this file's comment): each module's weight
// W₀ becomes U_high·diag(S_high)·V_high + U_low·diag(S_low)·V_low, the
// first term the top k of W₀'s SVD, the second the file's. If o is not
// nil, the top-k singular vectors of W₀ become o's protected subspace of
// that weight. Nothing changes unless the whole adapter is well-formed and
// fits m: an unknown field with a value, a k that PEFT would refuse, an
// unknown module, a missing or extra tensor or one of the wrong shape is an
// error naming the file and the field or tensor; ctx stops the SVDs.
func LoadAdapter(ctx context.Context, dir string, m peft.Model, o *OSF) error {
	cpath := filepath.Join(dir, peft.AdapterConfigFile)
	raw, err := os.ReadFile(cpath)
	if err != nil {
		return fmt.Errorf("peft: osf.LoadAdapter: %w", err)
	}
	cfg, err := peft.ParseAdapterConfig(cpath, raw)
	if err != nil {
		return err
	}
	if t := cfg.String("peft_type", ""); cfg.Err() == nil && t != PEFTType {
		return cfg.Errorf("peft_type", "%q: osf.LoadAdapter reads %q adapters", t, PEFTType)
	}
	var fields map[string]json.RawMessage
	json.Unmarshal(raw, &fields) // ParseAdapterConfig has checked it
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !osfFields[k] && !isNothing(fields[k]) {
			return cfg.Errorf(k, "%s is not a field of PEFT's OSFConfig that gopeft reads (it would be ignored)", compact(fields[k]))
		}
	}
	cfg.Bool("init_weights", true) // how PEFT starts the low factors, which the file replaces
	cfg.Require("modules_to_save", "an OSF file holds the adapted modules' low factors only")
	var effRank, rankPat json.RawMessage
	hasRank := cfg.Decode("effective_rank", &effRank)
	var pats []patternValue
	if cfg.Decode("rank_pattern", &rankPat) {
		if pats, err = parsePatterns(rankPat); err != nil {
			cfg.Errorf("rank_pattern", "%v", err)
		}
	}
	var targets any
	cfg.Decode("target_modules", &targets)
	if err := cfg.Err(); err != nil {
		return err
	}
	matchTarget, err := targetMatcher(cfg, targets)
	if err != nil {
		return err
	}

	wpath := filepath.Join(dir, peft.AdapterWeightsFile)
	f, err := peft.OpenSafetensors(wpath)
	if err != nil {
		return err
	}
	defer f.Close()
	bad := func(tensor, format string, args ...any) error {
		return &peft.SafetensorsError{File: wpath, Tensor: tensor, Msg: fmt.Sprintf(format, args...)}
	}
	byModule := map[string]map[string]string{}
	for _, t := range f.Names() {
		rest, ok := strings.CutPrefix(t, tensorPrefix)
		i := strings.LastIndex(rest, svdParams)
		if !ok || i <= 0 || !contains(lowNames, rest[i+len(svdParams):]) {
			return bad(t, "not a tensor of a PEFT OSF adapter (want base_model.model.<module>.osf_svd_params.U_low, S_low or V_low)")
		}
		mod := rest[:i]
		if byModule[mod] == nil {
			byModule[mod] = map[string]string{}
		}
		byModule[mod][rest[i+len(svdParams):]] = t
	}
	if len(byModule) == 0 {
		return bad("", "the adapter has no tensors")
	}
	mods := make([]string, 0, len(byModule))
	for mod := range byModule {
		mods = append(mods, mod)
	}
	sort.Strings(mods)

	var out []loaded
	for _, mod := range mods {
		first := tensorPrefix + mod + svdParams + "U_low"
		l, err := peft.Module(m, mod)
		if err != nil {
			return bad(first, "%v", err)
		}
		if !matchTarget(mod) {
			return cfg.Errorf("target_modules", "%s does not take in module %q, whose tensors the file holds (PEFT would not load them)", compact(fields["target_modules"]), mod)
		}
		if l.Kernel != nil {
			return bad(first, "module %s is a convolution (kernel %v); PEFT's OSF adapts nn.Linear only", mod, l.Kernel)
		}
		r, c := l.W.Dims()
		p := min(r, c)
		k, from := resolveRank(mod, p, hasRank, effRank, pats)
		if k <= 0 {
			field := "effective_rank"
			if strings.HasPrefix(from, "rank_pattern") {
				field = "rank_pattern"
			}
			return cfg.Errorf(field, "module %s (weight %s): %s gives effective rank %d; PEFT's OSF needs ≥ 1", mod, peft.ShapeOf(r, c), from, k)
		}
		q := p - k
		what := fmt.Sprintf("module %s, weight %s, effective rank %d from %s", mod, peft.ShapeOf(r, c), k, from)
		want := map[string][]int{"U_low": {r, q}, "S_low": {q}, "V_low": {q, c}}
		parts := map[string]*mat.Dense{}
		for _, n := range lowNames {
			t, ok := byModule[mod][n]
			name := tensorPrefix + mod + svdParams + n
			if !ok {
				return bad(name, "missing (%s: shape %v)", what, want[n])
			}
			if s := f.Shape(t); !equalInts(s, want[n]) {
				return bad(t, "shape %v does not fit %s: want %v", s, what, want[n])
			}
			if q > 0 {
				if parts[n], err = f.Tensor(t); err != nil {
					return err
				}
			}
		}
		svd, err := accel.ThinSVD(ctx, l.W.Value)
		if err != nil {
			return fmt.Errorf("peft: osf.LoadAdapter %s: SVD of %s's %s weight: %w", dir, mod, peft.ShapeOf(r, c), err)
		}
		sub := &subspace{
			u: mat.DenseCopyOf(svd.U.Slice(0, r, 0, k)),
			v: mat.DenseCopyOf(svd.VT.Slice(0, k, 0, c).T()),
			s: slicesClone(svd.S[:k]),
		}
		if k < len(svd.S) {
			sub.next = svd.S[k]
		}
		w := rebuild(sub.u, sub.s, sub.v.T(), parts["U_low"], parts["S_low"], parts["V_low"])
		for _, n := range lowNames {
			if pt := parts[n]; pt != nil && !finite(pt) {
				return bad(byModule[mod][n], "holds a NaN or an infinity")
			}
		}
		out = append(out, loaded{l, w, sub})
	}
	for _, ld := range out {
		ld.l.W.Value.Copy(ld.w)
		if o != nil {
			o.prot[ld.l.W] = ld.sub
			delete(o.adam, ld.l.W) // moments of another weight
		}
	}
	return nil
}

// rebuild returns U_high·diag(S_high)·V_high + U_low·diag(S_low)·V_low,
// PEFT's reconstruct_weight_matrix; the low factors may be nil (p − k = 0).
func rebuild(uh *mat.Dense, sh []float64, vh mat.Matrix, ul, sl, vl *mat.Dense) *mat.Dense {
	var us, w mat.Dense
	us.Apply(func(_, j int, v float64) float64 { return v * sh[j] }, uh)
	w.Mul(&us, vh)
	if ul != nil {
		var ls, low mat.Dense
		ls.Apply(func(_, j int, v float64) float64 { return v * sl.At(0, j) }, ul)
		low.Mul(&ls, vl)
		w.Add(&w, &low)
	}
	return &w
}

// patternValue is one rank_pattern entry as written.
type patternValue struct {
	pattern string
	re      *regexp.Regexp
	value   json.Number
}

// parsePatterns reads the rank_pattern object in file order.
func parsePatterns(raw json.RawMessage) ([]patternValue, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("%s is not an object of patterns and ranks", compact(raw))
	}
	var out []patternValue
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key := tok.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		n, ok := v.(json.Number)
		if !ok {
			return nil, fmt.Errorf("%q: %v is not a rank (an integer, or a fraction in (0, 1])", key, v)
		}
		re, err := regexp.Compile(key)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %v", key, err)
		}
		out = append(out, patternValue{key, re, n})
	}
	return out, nil
}

// resolveRank returns module's effective rank k for a weight with
// min(m,n) = p as PEFT's OSFModel._create_and_replace resolves it, and
// where it came from.
func resolveRank(module string, p int, hasRank bool, eff json.RawMessage, pats []patternValue) (int, string) {
	for _, pv := range pats {
		if pv.re.MatchString(module) { // Python's re.search
			return rankValue(pv.value, p), fmt.Sprintf("rank_pattern[%q] = %s", pv.pattern, pv.value)
		}
	}
	if !hasRank {
		return p / 2, "effective_rank null (min(m,n)//2)"
	}
	dec := json.NewDecoder(bytes.NewReader(eff))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return 0, "effective_rank " + compact(eff) + " (not a number)"
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, "effective_rank " + compact(eff) + " (not a number)"
	}
	return rankValue(n, p), "effective_rank = " + string(n)
}

// rankValue is PEFT's _resolve_rank: a float in (0, 1] is a fraction of p
// (truncated), any other number is truncated; the result is clipped to
// [0, p].
func rankValue(n json.Number, p int) int {
	x, err := n.Float64()
	if err != nil || math.IsNaN(x) {
		return 0
	}
	isFloat := strings.ContainsAny(string(n), ".eE")
	var r float64
	if isFloat && x > 0 && x <= 1 {
		r = math.Trunc(float64(p) * x)
	} else {
		r = math.Trunc(x)
	}
	return int(math.Max(math.Min(float64(p), r), 0))
}

// targetMatcher returns how target_modules takes in a module, as PEFT
// matches it: a string is a regular expression over the whole name, a list
// holds names that equal the module's or a dotted suffix of it; absent or
// null takes in every module.
func targetMatcher(cfg *peft.AdapterConfig, v any) (func(string) bool, error) {
	switch v := v.(type) {
	case nil:
		return func(string) bool { return true }, nil
	case string:
		if v == "all-linear" {
			return func(string) bool { return true }, nil
		}
		rx, err := regexp.Compile("^(?:" + v + ")$")
		if err != nil {
			return nil, cfg.Errorf("target_modules", "%q: %v", v, err)
		}
		return rx.MatchString, nil
	case []any:
		var names []string
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, cfg.Errorf("target_modules", "%v is not a module name", e)
			}
			names = append(names, s)
		}
		return func(mod string) bool {
			for _, n := range names {
				if mod == n || strings.HasSuffix(mod, "."+n) {
					return true
				}
			}
			return false
		}, nil
	}
	return nil, cfg.Errorf("target_modules", "%v is neither a list of module names nor a regular expression", v)
}

// isNothing reports whether the JSON value v is PEFT's "nothing": null,
// false, "", [], {}.
func isNothing(v json.RawMessage) bool {
	switch s := compact(v); s {
	case "null", "false", `""`, "[]", "{}":
		return true
	}
	return false
}

func compact(v json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		return string(v)
	}
	return b.String()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
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

func finite(a *mat.Dense) bool {
	for _, v := range a.RawMatrix().Data {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	return true
}
