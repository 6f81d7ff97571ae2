package peft

import (
	"fmt"

	"gonum.org/v1/gonum/mat"
)

// This file saves and loads a model's base weights as a safetensors file
// keyed by their dotted names ("fc1.weight", "blocks.0.ln1.bias"), with
// PyTorch's shapes: a Linear weight (out×in) is stored as [out, in], any
// other (1×n) parameter (a bias, a LayerNorm gain) as the 1-D [n], and every
// other parameter as its 2-D [r, c]. This is the layout of a PyTorch
// state_dict saved with safetensors.torch.save_file.

// SaveModel writes m's base parameters (those of no adapter) to the
// safetensors file at path, as float64 ("F64"), so that LoadModel restores
// them exactly. A layer with a merged adapter is saved with its weight from
// before the merge; to save an adapted model as a plain one, Bake its
// adapters first. The write is atomic.
func SaveModel(path string, m Model) error { return SaveModelAs(path, m, "F64") }

// SaveModelAs is SaveModel storing values as dtype ("F64", "F32", "F16" or
// "BF16", rounded to nearest even).
func SaveModelAs(path string, m Model, dtype string) error {
	params, err := modelState(m)
	if err != nil {
		return fmt.Errorf("peft: SaveModel %s: %w", path, err)
	}
	tensors := make(map[string]*mat.Dense, len(params))
	shapes := make(map[string][]int, len(params))
	for _, p := range params {
		tensors[p.name] = p.value
		shapes[p.name] = p.shape
	}
	return WriteSafetensorsShaped(path, tensors, shapes, dtype, map[string]string{"format": "pt"})
}

// LoadModel reads the base parameters of m from the safetensors file at path
// (as SaveModel writes it, or a PyTorch state_dict saved with safetensors of
// a model with the same names and shapes) into m's tensors. Every base
// parameter must be in the file with a fitting shape, and the file must hold
// nothing else; otherwise the error names the tensors and both shapes, and m
// is left unchanged. It is an error while an adapter is merged. A (1×n) parameter may be stored as [n] or [1, n].
func LoadModel(path string, m Model) error {
	f, err := OpenSafetensors(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return LoadModelFrom(f, m)
}

// LoadModelFrom is LoadModel reading from an opened file, such as one that
// ParseSafetensors made from embedded bytes.
func LoadModelFrom(f *SafetensorsFile, m Model) error {
	params, err := modelState(m)
	if err != nil {
		return fmt.Errorf("peft: LoadModel %s: %w", f.name, err)
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("peft: LoadModel %s: "+format, append([]any{f.name}, args...)...)
	}
	if merged := mergedNames(m); len(merged) > 0 {
		return fail("modules %s have a merged adapter; unmerge before loading base weights", quoteList(merged))
	}
	want := map[string]bool{}
	var missing []string
	for _, p := range params {
		want[p.name] = true
		if !f.Has(p.name) {
			missing = append(missing, p.name)
		}
	}
	var extra []string
	for _, name := range f.Names() {
		if !want[name] {
			extra = append(extra, name)
		}
	}
	switch {
	case len(missing) > 0 && len(extra) > 0:
		return fail("the file lacks %s and has tensors the model does not: %s", quoteList(missing), quoteList(extra))
	case len(missing) > 0:
		return fail("the file lacks %s", quoteList(missing))
	case len(extra) > 0:
		return fail("the file has tensors the model does not: %s", quoteList(extra))
	}
	for _, p := range params {
		r, c := p.value.Dims()
		if !shapeFits(f.Shape(p.name), r, c) {
			return fail("tensor %q: the file's shape %v does not fit the model's %s (PyTorch shape %v)", p.name, f.Shape(p.name), ShapeOf(r, c), p.shape)
		}
	}
	// Read everything before changing anything, so a failure leaves m whole.
	values := make([]*mat.Dense, len(params))
	for i, p := range params {
		v, err := f.Tensor(p.name)
		if err != nil {
			return err
		}
		values[i] = v
	}
	for i, p := range params {
		p.value.Copy(values[i])
	}
	return nil
}

// shapeFits reports whether a tensor of stored shape s fits an r×c matrix:
// s is [r, c], or [c] when r = 1, or [] when r = c = 1.
func shapeFits(s []int, r, c int) bool {
	switch len(s) {
	case 0:
		return r == 1 && c == 1
	case 1:
		return r == 1 && s[0] == c
	case 2:
		return s[0] == r && s[1] == c
	}
	return false
}

// stateEntry is one base parameter: its name, its value (the matrix to save
// and to load into) and its PyTorch shape.
type stateEntry struct {
	name  string
	value *mat.Dense
	shape []int
}

// modelState lists m's base parameters, each once, in model order. It fails
// on an unnamed parameter or two parameters with one name.
func modelState(m Model) ([]stateEntry, error) {
	weights := map[*Tensor]*Linear{}
	for _, l := range m.Modules() {
		weights[l.W] = l
	}
	seen := map[*Tensor]bool{}
	byName := map[string]bool{}
	var out []stateEntry
	for _, p := range BaseParams(m) {
		if seen[p] {
			continue // a tied weight
		}
		seen[p] = true
		if p.Name == "" {
			r, c := p.Dims()
			return nil, fmt.Errorf("a base parameter %s has no name", ShapeOf(r, c))
		}
		if byName[p.Name] {
			return nil, fmt.Errorf("two base parameters are named %q", p.Name)
		}
		byName[p.Name] = true
		v := p.Value
		l, isWeight := weights[p]
		if isWeight && l.merged != "" {
			v = l.unmerged // the base weight, not the merged one
		}
		r, c := v.Dims()
		shape := []int{r, c}
		if r == 1 && !isWeight {
			shape = []int{c}
		}
		out = append(out, stateEntry{name: p.Name, value: v, shape: shape})
	}
	return out, nil
}

// mergedNames returns the modules of m with a merged adapter.
func mergedNames(m Model) []string {
	var names []string
	for _, l := range m.Modules() {
		if l.merged != "" {
			names = append(names, l.Name)
		}
	}
	return names
}
