package peft

import (
	"errors"
	"fmt"
	"math"
	"math/rand"
	"regexp"
	"sort"
	"strings"

	"gonum.org/v1/gonum/mat"
)

// NewLinear returns a Linear layer named name mapping in features to out,
// with W (out×in) and, if bias, b (1×out) drawn uniformly from
// [−1/√in, 1/√in) as PyTorch's nn.Linear does. Its parameters are named
// name+".weight" and name+".bias".
func NewLinear(name string, in, out int, bias bool, rng *rand.Rand) *Linear {
	if in <= 0 || out <= 0 {
		panic(ArgError{Op: "NewLinear(" + name + ")", Msg: fmt.Sprintf("in = %d, out = %d; both must be ≥ 1", in, out)})
	}
	bound := 1 / math.Sqrt(float64(in))
	l := &Linear{Name: name, W: NewParam(name+".weight", RandUniform(rng, out, in, bound))}
	if bias {
		l.B = NewParam(name+".bias", RandUniform(rng, 1, out, bound))
	}
	return l
}

// RandUniform returns an r×c matrix with entries drawn uniformly from
// [−bound, bound) by rng: PyTorch's Kaiming-uniform init of an (r×c) weight
// with a = √5 is bound = 1/√c.
func RandUniform(rng *rand.Rand, r, c int, bound float64) *mat.Dense {
	d := make([]float64, r*c)
	for i := range d {
		d[i] = bound * (2*rng.Float64() - 1)
	}
	return mat.NewDense(r, c, d)
}

// Dims returns the layer's output and input widths: W is (out×in).
func (l *Linear) Dims() (out, in int) { return l.W.Dims() }

// Base returns the frozen layer's output x·Wᵀ + b for x (n×in) → (n×out),
// with no adapter. While an adapter is merged into W, Base uses the weight
// from before the merge, so it is the base model exactly.
func (l *Linear) Base(x *Tensor) *Tensor {
	out, in := l.W.Dims()
	n, k := x.Dims()
	if k != in {
		panic(ShapeError{Op: l.Name + ".Forward", Got: fmt.Sprintf("x %s for W %s", ShapeOf(n, k), ShapeOf(out, in)), Want: fmt.Sprintf("x (n×%d)", in)})
	}
	w := l.W
	if l.merged != "" {
		w = NewConst(l.unmerged)
	}
	return Affine(x, w, l.B) // (n×out)
}

// Forward returns the layer's output for x (n×in) → (n×out): the base x·Wᵀ + b,
// changed by the active adapter unless adapters are disabled. While an
// adapter is merged, W already holds its change and Forward is x·Wᵀ + b.
func (l *Linear) Forward(x *Tensor) *Tensor {
	if l.merged != "" && !l.Disabled {
		_, in := l.W.Dims()
		if _, k := x.Dims(); k != in {
			l.Base(x) // panics with the shape error
		}
		return Affine(x, l.W, l.B)
	}
	base := l.Base(x)
	if l.Disabled || l.Active == "" {
		return base
	}
	a, ok := l.Adapters[l.Active]
	if !ok {
		panic(ArgError{Op: l.Name + ".Forward", Msg: fmt.Sprintf("active adapter %q does not exist (have %s)", l.Active, quoteList(l.AdapterNames()))})
	}
	return a.Forward(l, x, base)
}

// AdapterNames returns the names of l's adapters, sorted.
func (l *Linear) AdapterNames() []string {
	names := make([]string, 0, len(l.Adapters))
	for n := range l.Adapters {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Attach adds adapter a under name and makes it the active one. It is an
// error if l already has an adapter of that name or one is merged.
func (l *Linear) Attach(name string, a Adapter) error {
	if name == "" {
		return fmt.Errorf("peft: %s: empty adapter name", l.Name)
	}
	if _, ok := l.Adapters[name]; ok {
		return fmt.Errorf("peft: %s already has an adapter named %q", l.Name, name)
	}
	if l.merged != "" {
		return fmt.Errorf("peft: %s: adapter %q is merged; unmerge before attaching another", l.Name, l.merged)
	}
	if l.Adapters == nil {
		l.Adapters = map[string]Adapter{}
	}
	l.Adapters[name] = a
	l.Active = name
	return nil
}

// Detach removes the adapter named name (not while it is merged). If it was
// active, no adapter is active afterwards.
func (l *Linear) Detach(name string) error {
	if _, ok := l.Adapters[name]; !ok {
		return fmt.Errorf("peft: %s has no adapter %q (have %s)", l.Name, name, quoteList(l.AdapterNames()))
	}
	if l.merged == name {
		return fmt.Errorf("peft: %s: adapter %q is merged; unmerge it first", l.Name, name)
	}
	delete(l.Adapters, name)
	if l.Active == name {
		l.Active = ""
	}
	return nil
}

// SetAdapter makes the adapter named name the active one.
func (l *Linear) SetAdapter(name string) error {
	if _, ok := l.Adapters[name]; !ok {
		return fmt.Errorf("peft: %s has no adapter %q (have %s)", l.Name, name, quoteList(l.AdapterNames()))
	}
	if l.merged != "" && l.merged != name {
		return fmt.Errorf("peft: %s: adapter %q is merged; unmerge before switching to %q", l.Name, l.merged, name)
	}
	l.Active = name
	return nil
}

// ActiveAdapter returns the adapter in use, or nil if adapters are disabled
// or none is active.
func (l *Linear) ActiveAdapter() Adapter {
	if l.Disabled || l.Active == "" {
		return nil
	}
	return l.Adapters[l.Active]
}

// DisableAdapters makes the layer compute its base output exactly (even with
// an adapter merged); EnableAdapters undoes it.
func (l *Linear) DisableAdapters() { l.Disabled = true }

// EnableAdapters undoes DisableAdapters.
func (l *Linear) EnableAdapters() { l.Disabled = false }

// Merged returns the name of the adapter merged into W, or "".
func (l *Linear) Merged() string { return l.merged }

// Merge folds the active adapter into W (W ← the adapter's MergedWeight(W)),
// keeping a copy of the old W for Unmerge. After it Forward is one matrix
// product and equals the adapter's forward up to rounding (dropout aside).
// It is an error if no adapter is active or one is already merged.
func (l *Linear) Merge() error {
	if l.merged != "" {
		return fmt.Errorf("peft: %s: adapter %q is already merged", l.Name, l.merged)
	}
	if l.Active == "" {
		return fmt.Errorf("peft: %s: no active adapter to merge", l.Name)
	}
	a, ok := l.Adapters[l.Active]
	if !ok {
		return fmt.Errorf("peft: %s: active adapter %q does not exist", l.Name, l.Active)
	}
	if m, ok := a.(Merger); ok && !m.Mergeable() {
		return fmt.Errorf("peft: %s: adapter %q cannot be merged: its update depends on the input (%T)", l.Name, l.Active, a)
	}
	w0 := mat.DenseCopyOf(l.W.Value)
	w := a.MergedWeight(w0)
	r, c := w.Dims()
	if or, oc := w0.Dims(); r != or || c != oc {
		return fmt.Errorf("peft: %s: adapter %q merged weight is %s, want %s", l.Name, l.Active, ShapeOf(r, c), ShapeOf(or, oc))
	}
	l.unmerged = w0
	l.W.Value.Copy(w)
	l.merged = l.Active
	return nil
}

// Unmerge restores W exactly as it was before Merge.
func (l *Linear) Unmerge() error {
	if l.merged == "" {
		return fmt.Errorf("peft: %s: no adapter is merged", l.Name)
	}
	l.W.Value.Copy(l.unmerged)
	l.unmerged = nil
	l.merged = ""
	return nil
}

// Bake merges the active adapter into W for good and removes it, as PEFT's
// merge_and_unload: afterwards l is a plain layer with the adapted weight.
func (l *Linear) Bake() error {
	if l.merged == "" {
		if err := l.Merge(); err != nil {
			return err
		}
	}
	delete(l.Adapters, l.merged)
	l.Active, l.merged, l.unmerged = "", "", nil
	return nil
}

// Model is a network whose Linear layers adapters can target: the MLP, the
// GPT, the teacher task's linear model, or one defined in a notebook cell.
type Model interface {
	// Modules returns the model's Linear layers, each with its stable dotted
	// name ("fc1", "blocks.0.attn.q").
	Modules() []*Linear
	// Params returns every parameter: the base model's, then the adapters'.
	Params() []*Tensor
	// Loss returns the scalar (1×1) training loss on b.
	Loss(b Batch) *Tensor
	// SetTraining switches dropout and other training-only behaviour.
	SetTraining(training bool)
}

// Metricer is a Model with an evaluation metric besides the loss (the
// classifier's accuracy, the language model's bits per character).
type Metricer interface {
	Metric(b Batch) float64
	MetricName() string
}

// AdapterParams returns the parameters of every adapter on mods, module by
// module and adapter by adapter in name order: what a Model's Params appends
// to its base parameters.
func AdapterParams(mods []*Linear) []*Tensor {
	var ps []*Tensor
	for _, l := range mods {
		for _, n := range l.AdapterNames() {
			ps = append(ps, l.Adapters[n].Params()...)
		}
	}
	return ps
}

// BaseParams returns m's parameters that belong to no adapter.
func BaseParams(m Model) []*Tensor {
	ad := map[*Tensor]bool{}
	for _, p := range AdapterParams(m.Modules()) {
		ad[p] = true
	}
	var ps []*Tensor
	for _, p := range m.Params() {
		if !ad[p] {
			ps = append(ps, p)
		}
	}
	return ps
}

// FreezeBase freezes every parameter of m that belongs to no adapter.
func FreezeBase(m Model) {
	for _, p := range BaseParams(m) {
		p.Freeze()
	}
}

// UnfreezeAll makes every parameter of m trainable (full fine-tuning).
func UnfreezeAll(m Model) {
	for _, p := range m.Params() {
		p.Unfreeze()
	}
}

// TrainableParams returns the number of trainable parameters of m, the total
// number of parameters (base and adapters), and the trainable percentage.
func TrainableParams(m Model) (n, total int, pct float64) {
	seen := map[*Tensor]bool{}
	for _, p := range m.Params() {
		if seen[p] {
			continue
		}
		seen[p] = true
		r, c := p.Dims()
		total += r * c
		if p.Trainable {
			n += r * c
		}
	}
	if total > 0 {
		pct = 100 * float64(n) / float64(total)
	}
	return n, total, pct
}

// Ranks returns the current rank of the active adapter of every module that
// has one, by module name.
func Ranks(m Model) map[string]int {
	rs := map[string]int{}
	for _, l := range m.Modules() {
		if a := l.ActiveAdapter(); a != nil {
			rs[l.Name] = a.Rank()
		}
	}
	return rs
}

// Targets returns the modules of m that match any of patterns, in model
// order, as PEFT's target_modules: a pattern matches a module whose dotted
// name equals it or ends with "." + pattern ("q" matches "blocks.0.attn.q");
// a pattern written as a regular expression ^…$ must match the whole name
// ("^blocks\.[01]\.attn\.(q|v)$"). A pattern that matches nothing is an
// error listing the names that exist.
func Targets(m Model, patterns ...string) ([]*Linear, error) {
	mods := m.Modules()
	if len(patterns) == 0 {
		return nil, fmt.Errorf("peft: no target modules given; the model has %s", quoteList(moduleNames(mods)))
	}
	chosen := map[*Linear]bool{}
	for _, p := range patterns {
		match, err := matcher(p)
		if err != nil {
			return nil, err
		}
		found := false
		for _, l := range mods {
			if match(l.Name) {
				chosen[l] = true
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("peft: target module %q matches no module; the model has %s", p, quoteList(moduleNames(mods)))
		}
	}
	var out []*Linear
	for _, l := range mods {
		if chosen[l] {
			out = append(out, l)
		}
	}
	return out, nil
}

func matcher(p string) (func(string) bool, error) {
	if strings.HasPrefix(p, "^") && strings.HasSuffix(p, "$") {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("peft: target pattern %q: %w", p, err)
		}
		return re.MatchString, nil
	}
	return func(name string) bool { return name == p || strings.HasSuffix(name, "."+p) }, nil
}

func moduleNames(mods []*Linear) []string {
	names := make([]string, len(mods))
	for i, l := range mods {
		names[i] = l.Name
	}
	return names
}

// ModuleNames returns the dotted names of m's Linear layers, in model order.
func ModuleNames(m Model) []string { return moduleNames(m.Modules()) }

// Module returns m's Linear layer named name, or an error listing the names.
func Module(m Model, name string) (*Linear, error) {
	for _, l := range m.Modules() {
		if l.Name == name {
			return l, nil
		}
	}
	return nil, fmt.Errorf("peft: no module %q; the model has %s", name, quoteList(ModuleNames(m)))
}

func quoteList(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

// AdapterName is the name an adapter gets on a model: name, or "default"
// when name is empty (as in HuggingFace PEFT).
func AdapterName(name string) string {
	if name == "" {
		return "default"
	}
	return name
}

// AddAdapter attaches to each module of m matching targets (see Targets) the
// adapter that build makes for it, under name, and activates it; it first
// freezes m's base parameters. Every method's Add (lora.Add, dora.Add, …)
// is this with its own build. If build fails for one module, adapters
// already attached by this call are removed and the error returned.
func AddAdapter(m Model, name string, targets []string, build func(l *Linear) (Adapter, error)) ([]Adapter, error) {
	name = AdapterName(name)
	mods, err := Targets(m, targets...)
	if err != nil {
		return nil, err
	}
	for _, l := range mods {
		if _, ok := l.Adapters[name]; ok {
			return nil, fmt.Errorf("peft: %s already has an adapter named %q", l.Name, name)
		}
		if l.merged != "" {
			return nil, fmt.Errorf("peft: %s: adapter %q is merged; unmerge before attaching %q", l.Name, l.merged, name)
		}
	}
	var added []Adapter
	var done []*Linear
	for _, l := range mods {
		a, err := build(l)
		if err == nil {
			err = l.Attach(name, a)
		}
		if err != nil {
			for _, d := range done {
				_ = d.Detach(name)
			}
			return nil, err
		}
		added = append(added, a)
		done = append(done, l)
	}
	FreezeBase(m)
	return added, nil
}

// SetAdapter activates the adapter named name on every module of m that has
// one. It is an error if no module has it.
func SetAdapter(m Model, name string) error {
	var errs []error
	found := false
	for _, l := range m.Modules() {
		if _, ok := l.Adapters[name]; ok {
			found = true
			errs = append(errs, l.SetAdapter(name))
		}
	}
	if !found {
		return fmt.Errorf("peft: no module has an adapter named %q", name)
	}
	return errors.Join(errs...)
}

// DisableAdapters makes every layer of m compute its base output: m is then
// the base model exactly.
func DisableAdapters(m Model) {
	for _, l := range m.Modules() {
		l.DisableAdapters()
	}
}

// EnableAdapters undoes DisableAdapters.
func EnableAdapters(m Model) {
	for _, l := range m.Modules() {
		l.EnableAdapters()
	}
}

// MergeAdapters merges the active adapter of every module that has one.
// A module whose adapter cannot be merged (a Merger) is an error before
// any module is merged.
func MergeAdapters(m Model) error {
	for _, l := range m.Modules() {
		if a, ok := l.Adapters[l.Active]; ok && l.merged == "" {
			if mg, ok := a.(Merger); ok && !mg.Mergeable() {
				return fmt.Errorf("peft: %s: adapter %q cannot be merged: its update depends on the input (%T); nothing was merged", l.Name, l.Active, a)
			}
		}
	}
	for _, l := range m.Modules() {
		if l.Active != "" && l.merged == "" {
			if err := l.Merge(); err != nil {
				return err
			}
		}
	}
	return nil
}

// UnmergeAdapters unmerges every merged module of m.
func UnmergeAdapters(m Model) error {
	for _, l := range m.Modules() {
		if l.merged != "" {
			if err := l.Unmerge(); err != nil {
				return err
			}
		}
	}
	return nil
}
