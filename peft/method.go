package peft

import (
	"fmt"
	"sort"
	"strings"
	"sync"
)

// This file is the method registry. Each method lives in its own package
// under peft/ (peft/lora, peft/dora, …, as HuggingFace PEFT keeps one folder
// per method under tuners/) and registers itself from an init function, the
// way image formats and database/sql drivers do:
//
//	func init() {
//		peft.Register(peft.Method{
//			Name:    "VeRA",
//			Kind:    peft.AdapterMethod,
//			Paper:   "Kopiczko et al. 2023, VeRA: Vector-based Random Matrix Adaptation, arXiv:2310.11454",
//			Package: "github.com/gopeft/gopeft/peft/vera",
//			Summary: "shared frozen random A and B, trained scaling vectors d and b",
//			Format:  &peft.AdapterFormat{PEFTType: "VERA", …},
//		})
//	}
//
// SaveAdapter and LoadAdapter find a method's file format here, so neither
// knows any method; Methods lists the catalogue for notebooks and %help.

// MethodKind says how a method takes part in training.
type MethodKind int

const (
	// AdapterMethod changes Linear layers' outputs (an Adapter).
	AdapterMethod MethodKind = iota
	// OptimizerMethod updates parameters from their gradients (an Optimizer).
	OptimizerMethod
	// HookMethod acts on whole training runs (a Hook).
	HookMethod
)

func (k MethodKind) String() string {
	switch k {
	case AdapterMethod:
		return "adapter"
	case OptimizerMethod:
		return "optimizer"
	case HookMethod:
		return "hook"
	}
	return fmt.Sprintf("MethodKind(%d)", int(k))
}

// Method describes one registered PEFT method.
type Method struct {
	Name    string     // the paper's name: "LoRA", "DoRA", "GaLore"
	Kind    MethodKind // how it takes part in training
	Paper   string     // authors, year, title and arXiv id
	Package string     // the import path of the package that implements it
	Summary string     // one line: what the method changes
	// Format says how the method's adapters are saved and loaded in
	// HuggingFace PEFT's adapter layout; nil if they cannot be.
	Format *AdapterFormat
}

// String returns "Name (kind): Summary — Paper".
func (m Method) String() string {
	return fmt.Sprintf("%s (%s): %s — %s", m.Name, m.Kind, m.Summary, m.Paper)
}

// AdapterFormat is how one method's adapters are stored in an adapter
// directory (adapter_config.json and adapter_model.safetensors, see
// SaveAdapter). Several methods may share a PEFTType (LoRA and DoRA are
// both "LORA"); Claims tells them apart.
type AdapterFormat struct {
	// PEFTType is peft_type in adapter_config.json: HuggingFace PEFT's
	// ("LORA", "ADALORA", "VERA") where PEFT has the method; gopeft's own
	// types, for methods PEFT lacks, start with "GOPEFT_".
	PEFTType string
	// Owns reports whether a is one of the method's adapters.
	Owns func(a Adapter) bool
	// Claims reports whether a configuration of type PEFTType is the
	// method's; nil claims every one. It may read fields of c.
	Claims func(c *AdapterConfig) bool
	// Tensors are the suffixes of the method's tensor names after
	// "base_model.model.<module>" (".lora_A.weight", …), longest match first.
	Tensors []string
	// Shared are the names, after "base_model.", of tensors that belong to
	// no module (VeRA's shared projections "vera_A", "vera_B").
	Shared []string
	// Save writes the configuration fields and the tensors of w.Adapters
	// (on w.Modules) into w.
	Save func(w *AdapterWriter) error
	// Load rebuilds the adapter of module l from r, through the same
	// constructor or checks a user's call goes through.
	Load func(r *AdapterReader, l *Linear) (Adapter, error)
}

var registry struct {
	sync.RWMutex
	methods map[string]Method
}

// Register adds m to the registry. It panics if m's name is empty or taken,
// or if m.Format is incomplete: registration runs from init functions, so
// these are programmer errors.
func Register(m Method) {
	registry.Lock()
	defer registry.Unlock()
	switch {
	case m.Name == "":
		panic(ArgError{Op: "Register", Msg: "method with an empty name"})
	case m.Paper == "" || m.Package == "":
		panic(ArgError{Op: "Register(" + m.Name + ")", Msg: "Paper and Package must be set"})
	}
	if _, ok := registry.methods[m.Name]; ok {
		panic(ArgError{Op: "Register(" + m.Name + ")", Msg: "a method of that name is already registered"})
	}
	if f := m.Format; f != nil {
		if f.PEFTType == "" || f.Owns == nil || f.Save == nil || f.Load == nil || len(f.Tensors) == 0 {
			panic(ArgError{Op: "Register(" + m.Name + ")", Msg: "Format needs PEFTType, Owns, Save, Load and Tensors"})
		}
	}
	if registry.methods == nil {
		registry.methods = map[string]Method{}
	}
	registry.methods[m.Name] = m
}

// Methods returns every registered method, sorted by name. A program sees
// the methods whose packages it imports; the kernel imports all of them.
func Methods() []Method {
	registry.RLock()
	defer registry.RUnlock()
	ms := make([]Method, 0, len(registry.methods))
	for _, m := range registry.methods {
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return strings.ToLower(ms[i].Name) < strings.ToLower(ms[j].Name) })
	return ms
}

// LookupMethod returns the registered method named name (case-insensitive).
func LookupMethod(name string) (Method, bool) {
	for _, m := range Methods() {
		if strings.EqualFold(m.Name, name) {
			return m, true
		}
	}
	return Method{}, false
}

// MethodOf returns the registered method whose format owns a.
func MethodOf(a Adapter) (Method, bool) {
	for _, m := range Methods() {
		if m.Format != nil && m.Format.Owns(a) {
			return m, true
		}
	}
	return Method{}, false
}

// formatsFor returns the registered methods with a format of PEFT type t.
func formatsFor(t string) []Method {
	var out []Method
	for _, m := range Methods() {
		if m.Format != nil && m.Format.PEFTType == t {
			out = append(out, m)
		}
	}
	return out
}

// peftTypes returns the PEFT types that have a registered format, sorted.
func peftTypes() []string {
	seen := map[string]bool{}
	var ts []string
	for _, m := range Methods() {
		if m.Format != nil && !seen[m.Format.PEFTType] {
			seen[m.Format.PEFTType] = true
			ts = append(ts, m.Format.PEFTType)
		}
	}
	sort.Strings(ts)
	return ts
}
