package peft

// This file saves and loads adapters in HuggingFace PEFT's layout, so that a
// PEFT user can load what gopeft trained and the other way round. An adapter
// is a directory holding
//
//	adapter_config.json        the method's config (LoraConfig, …) as JSON
//	adapter_model.safetensors  the adapter's tensors, metadata {"format": "pt"}
//
// with PEFT's tensor names (the adapter's own name is not in them):
// "base_model.model.<module><suffix>" for a module's tensors (LoRA's
// ".lora_A.weight", …) and "base_model.<name>" for tensors shared by all
// modules (VeRA's "vera_A"). Which suffixes, which config fields and which
// constructor belong to a method is the method's own business: each method
// registers an AdapterFormat (see Register), and this file holds no list of
// methods.
//
// Loading is strict: a field of adapter_config.json that neither this file
// nor the method reads, with a value other than PEFT's "nothing" (null,
// false, "", [], {}), is an error naming the field and its value, as is a
// value the method reads but does not implement (see lora.RefuseUnsupported
// for the LoraConfig fields, field by field), an unknown module, a
// target_modules entry that names no module of the model, a module with
// tensors that target_modules does not take in, a missing or extra tensor,
// a shape that does not fit, or a string that is not valid UTF-8.
//
// Tensors are saved as float64 unless AdapterOptions.DType says otherwise;
// PyTorch's load_state_dict converts them to the model's dtype. The
// directory is replaced as a whole: the files are written to a new
// directory next to it, which then takes its place (see writeDirAtomic for
// what a killed save leaves and when that is removed).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"gonum.org/v1/gonum/mat"
)

// The files of an adapter directory, and the prefixes of PEFT's tensor names.
const (
	AdapterConfigFile  = "adapter_config.json"
	AdapterWeightsFile = "adapter_model.safetensors"
	peftPrefix         = "base_model.model."
	sharedPrefix       = "base_model."
)

// AdapterOptions tunes SaveAdapterWith.
type AdapterOptions struct {
	// DType is the element type of the tensors: "F64" (the default, exact),
	// "F32", "F16" or "BF16".
	DType string
	// BaseModel is written as base_model_name_or_path (null if "").
	BaseModel string
	// Controller, if set, is the method's training controller whose
	// settings the config records (an *adalora.AdaLoRA: its schedule).
	Controller any
}

// AdapterWriter collects what a method's AdapterFormat.Save writes: config
// fields and tensors.
type AdapterWriter struct {
	Modules  []*Linear // the adapted modules, in model order
	Adapters []Adapter // Adapters[i] is the adapter saved for Modules[i]
	Options  AdapterOptions
	Config   map[string]any // adapter_config.json's fields

	tensors map[string]*mat.Dense
	shapes  map[string][]int
}

// Put stores m (2-D) as module's tensor suffix.
func (w *AdapterWriter) Put(module, suffix string, m *mat.Dense) {
	w.tensors[peftPrefix+module+suffix] = m
}

// PutVector stores the 1×n or n×1 matrix m as module's 1-D tensor suffix.
func (w *AdapterWriter) PutVector(module, suffix string, m *mat.Dense) {
	r, c := m.Dims()
	if r != 1 && c != 1 {
		panic(ShapeError{Op: "AdapterWriter.PutVector(" + module + suffix + ")", Got: ShapeOf(r, c), Want: "(1×n) or (n×1)"})
	}
	w.tensors[peftPrefix+module+suffix] = m
	w.shapes[peftPrefix+module+suffix] = []int{r * c}
}

// PutShared stores m as the shared tensor "base_model."+name, 1-D if oneD.
func (w *AdapterWriter) PutShared(name string, m *mat.Dense, oneD bool) {
	w.tensors[sharedPrefix+name] = m
	if oneD {
		r, c := m.Dims()
		w.shapes[sharedPrefix+name] = []int{r * c}
	}
}

// PutSharedShaped stores m as the shared tensor "base_model."+name with the
// stored shape shape (any number of dimensions, as PyTorch's shape of the
// tensor PEFT holds), whose elements are m's in row-major order: an r×c
// matrix may be stored as [r, 1, c] or [r, c/k, k], the numbers unchanged
// and in the same order. It panics with a ShapeError giving both shapes if
// shape has a negative dimension or its product is not r·c (a programmer
// error). SharedShaped reads such a tensor back.
func (w *AdapterWriter) PutSharedShaped(name string, m *mat.Dense, shape []int) {
	r, c := m.Dims()
	if n, ok := shapeSize(shape); !ok || n != r*c {
		panic(ShapeError{Op: "AdapterWriter.PutSharedShaped(" + name + ")",
			Got:  fmt.Sprintf("%s to store as %v (%d elements)", ShapeOf(r, c), shape, elementsOf(shape)),
			Want: fmt.Sprintf("a shape of %d elements, none negative", r*c)})
	}
	w.tensors[sharedPrefix+name] = m
	w.shapes[sharedPrefix+name] = slices.Clone(shape)
}

// shapeSize returns the number of elements of shape, and false if a
// dimension is negative.
func shapeSize(shape []int) (int, bool) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		n *= d
	}
	return n, true
}

// elementsOf is shapeSize for messages: a negative dimension counts as is.
func elementsOf(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// SaveAdapter writes the adapter named name ("" for "default") of every
// module of m that has one to the directory dir in PEFT's layout, with
// float64 tensors. All those adapters must be of one registered method
// whose format can hold them. dir is replaced as a whole (see
// SaveAdapterWith).
func SaveAdapter(dir string, m Model, name string) error {
	return SaveAdapterWith(dir, m, name, AdapterOptions{})
}

// SaveAdapterWith is SaveAdapter with options. The files are written to a
// new hidden directory beside dir, which then replaces dir in one rename
// (an exchange, on Linux), so that a killed save leaves either the old
// adapter or the new one whole; the hidden ".<name>.tmp-*" or
// ".<name>.old-*" directories a killed save may leave are removed by the
// next save to dir, never by LoadAdapter. Saves to one dir from several
// goroutines or processes run one after the other (on Linux). If dir is a
// symbolic link, even dangling or written with a trailing slash, the
// directory it points to is replaced and the link kept.
func SaveAdapterWith(dir string, m Model, name string, opt AdapterOptions) error {
	name = AdapterName(name)
	if opt.DType == "" {
		opt.DType = "F64"
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("peft: SaveAdapter %s: "+format, append([]any{dir}, args...)...)
	}
	w := &AdapterWriter{Options: opt, Config: map[string]any{}, tensors: map[string]*mat.Dense{}, shapes: map[string][]int{}}
	for _, l := range m.Modules() {
		if a, ok := l.Adapters[name]; ok {
			w.Modules = append(w.Modules, l)
			w.Adapters = append(w.Adapters, a)
		}
	}
	if len(w.Modules) == 0 {
		return fail("no module has an adapter named %q", name)
	}
	meth, ok := MethodOf(w.Adapters[0])
	if !ok {
		return fail("module %s: a %T adapter has no registered file format (registered: %s)", w.Modules[0].Name, w.Adapters[0], strings.Join(peftTypes(), ", "))
	}
	for i, a := range w.Adapters {
		if !meth.Format.Owns(a) {
			other := "an unregistered method"
			if om, ok := MethodOf(a); ok {
				other = om.Name
			}
			return fail("module %s has a %s adapter, module %s one of %s: one adapter file holds one method", w.Modules[0].Name, meth.Name, w.Modules[i].Name, other)
		}
	}
	if err := meth.Format.Save(w); err != nil {
		return fail("%v", err)
	}
	w.Config["peft_type"] = meth.Format.PEFTType
	w.Config["base_model_name_or_path"] = nil
	if opt.BaseModel != "" {
		w.Config["base_model_name_or_path"] = opt.BaseModel
	}
	for k, v := range map[string]any{"task_type": nil, "inference_mode": true, "revision": nil, "auto_mapping": nil} {
		w.Config[k] = v
	}
	js, err := json.MarshalIndent(w.Config, "", "  ")
	if err != nil {
		return fail("%v", err)
	}
	weights, err := EncodeSafetensors(w.tensors, w.shapes, opt.DType, map[string]string{"format": "pt"})
	if err != nil {
		return fail("%v", err)
	}
	return writeDirAtomic(dir, map[string][]byte{AdapterConfigFile: append(js, '\n'), AdapterWeightsFile: weights})
}

// AdapterConfig is an adapter_config.json being read. Its getters record
// which fields were read, so that LoadAdapter can refuse fields nobody
// honours, and the first error, which Err returns (as bufio.Scanner does).
type AdapterConfig struct {
	file   string
	fields map[string]json.RawMessage
	read   map[string]bool
	err    error
}

// ParseAdapterConfig parses the adapter_config.json raw, named file in
// errors.
func ParseAdapterConfig(file string, raw []byte) (*AdapterConfig, error) {
	c := &AdapterConfig{file: file, read: map[string]bool{}}
	if bad, ok := invalidJSONString(raw); ok {
		// encoding/json would silently turn it into U+FFFD.
		return nil, fmt.Errorf("peft: LoadAdapter %s: the string %q is not valid UTF-8", file, bad)
	}
	if err := json.Unmarshal(raw, &c.fields); err != nil {
		return nil, fmt.Errorf("peft: LoadAdapter %s: not a JSON object: %w", file, err)
	}
	if c.fields == nil {
		return nil, fmt.Errorf("peft: LoadAdapter %s: not a JSON object: null", file)
	}
	return c, nil
}

// File returns the file name errors give.
func (c *AdapterConfig) File() string { return c.file }

// Err returns the first error a getter met.
func (c *AdapterConfig) Err() error { return c.err }

// Errorf returns an error about field, naming the file, and keeps it as Err
// if it is the first.
func (c *AdapterConfig) Errorf(field, format string, args ...any) error {
	err := fmt.Errorf("peft: LoadAdapter %s: field %q: %s", c.file, field, fmt.Sprintf(format, args...))
	if c.err == nil {
		c.err = err
	}
	return err
}

// Has reports whether field is present and not null (and marks it read).
func (c *AdapterConfig) Has(field string) bool {
	c.read[field] = true
	v, ok := c.fields[field]
	return ok && string(v) != "null"
}

// Decode unmarshals field into dst, leaving dst alone if the field is
// absent or null, and reports whether it was present.
func (c *AdapterConfig) Decode(field string, dst any) bool {
	if !c.Has(field) {
		return false
	}
	v := c.fields[field]
	if err := json.Unmarshal(v, dst); err != nil {
		c.Errorf(field, "%s is not %s", compactJSON(v), kindOf(dst))
	}
	return true
}

// String returns the string field, or def if absent.
func (c *AdapterConfig) String(field, def string) string {
	c.Decode(field, &def)
	return def
}

// Bool returns the boolean field, or def if absent.
func (c *AdapterConfig) Bool(field string, def bool) bool {
	c.Decode(field, &def)
	return def
}

// Float returns the number field, or def if absent; it must be finite.
func (c *AdapterConfig) Float(field string, def float64) float64 {
	v := def
	if c.Decode(field, &v) && (math.IsNaN(v) || math.IsInf(v, 0)) {
		c.Errorf(field, "%v is not finite", v)
	}
	return v
}

// Int returns the integer field, or def if absent.
func (c *AdapterConfig) Int(field string, def int) int {
	v := float64(def)
	if c.Decode(field, &v) && (v != math.Trunc(v) || math.Abs(v) > 1<<53) {
		c.Errorf(field, "%v is not an integer", v)
		return def
	}
	return int(v)
}

// Rank returns the integer field, which must be ≥ 1, or def if absent.
func (c *AdapterConfig) Rank(field string, def int) int {
	v := c.Int(field, def)
	if v < 1 {
		c.Errorf(field, "%d is not a rank ≥ 1", v)
	}
	return v
}

// Alpha returns the number field, which must be finite and ≥ 0, or def.
func (c *AdapterConfig) Alpha(field string, def float64) float64 {
	v := c.Float(field, def)
	if v < 0 {
		c.Errorf(field, "%v is not a finite α ≥ 0", v)
	}
	return v
}

// Prob returns the number field, which must be in [0, 1), or def.
func (c *AdapterConfig) Prob(field string, def float64) float64 {
	v := c.Float(field, def)
	if !(v >= 0 && v < 1) {
		c.Errorf(field, "%v is outside [0, 1)", v)
	}
	return v
}

// Require fails unless field is absent or holds a value of PEFT's
// "nothing" (null, false, "", [], {}, or one of allowed): for options gopeft
// does not implement. what says which.
func (c *AdapterConfig) Require(field, what string, allowed ...string) {
	c.read[field] = true
	v, ok := c.fields[field]
	if !ok || isNothing(v) {
		return
	}
	for _, a := range allowed {
		if string(v) == a {
			return
		}
	}
	c.Errorf(field, "%s is not supported (%s)", compactJSON(v), what)
}

// compactJSON returns the JSON value v on one line, for messages.
func compactJSON(v json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		return string(v)
	}
	return b.String()
}

// ModuleValue decodes into dst the value of the first key of the object
// field that matches module as PEFT matches rank_pattern and alpha_pattern
// keys (get_pattern_key): keys are tried in the order the file gives them,
// and a key, a regular expression, matches the whole module name or a
// dotted suffix of it. It reports whether a key matched.
func (c *AdapterConfig) ModuleValue(field, module string, dst any) bool {
	if !c.Has(field) {
		return false
	}
	keys, vals, err := objectInOrder(c.fields[field])
	if err != nil {
		c.Errorf(field, "%s is not an object", compactJSON(c.fields[field]))
		return false
	}
	for i, k := range keys {
		re, err := regexp.Compile(`^(?:.*\.)?(?:` + k + `)$`)
		if err != nil {
			c.Errorf(field, "key %q: %v", k, err)
			return false
		}
		if re.MatchString(module) {
			if err := json.Unmarshal(vals[i], dst); err != nil {
				c.Errorf(field, "%q: %s is not %s", k, compactJSON(vals[i]), kindOf(dst))
				return false
			}
			return true
		}
	}
	return false
}

// objectInOrder returns the keys of the JSON object raw in the order they
// are written, and their raw values.
func objectInOrder(raw json.RawMessage) ([]string, []json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, errors.New("not a JSON object")
	}
	var keys []string
	var vals []json.RawMessage
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, err
		}
		keys = append(keys, tok.(string))
		vals = append(vals, v)
	}
	return keys, vals, nil
}

// isNothing reports whether v is null, false, "", [], {}, or an object of
// such values.
func isNothing(v json.RawMessage) bool {
	var x any
	if json.Unmarshal(v, &x) != nil {
		return false
	}
	return nothing(x)
}

func nothing(x any) bool {
	switch x := x.(type) {
	case nil:
		return true
	case bool:
		return !x
	case string:
		return x == ""
	case []any:
		return len(x) == 0
	case map[string]any:
		for _, v := range x {
			if !nothing(v) {
				return false
			}
		}
		return true
	}
	return false
}

func kindOf(dst any) string {
	switch dst.(type) {
	case *string:
		return "a string"
	case *float64, *int:
		return "a number"
	case *bool:
		return "a boolean"
	case *[]string:
		return "a list of strings"
	case *[]bool:
		return "a list of booleans"
	}
	return "an object of the expected form"
}

// metadataFields are fields of every PEFT config that describe the file
// rather than the adapter: read by nobody, ignored whatever their value.
var metadataFields = []string{
	"peft_type", "peft_version", "task_type", "inference_mode", "revision", "base_model_name_or_path",
	"auto_mapping", "megatron_core",
}

// AdapterReader gives a method's AdapterFormat.Load the tensors of one
// module, checking their shapes, and the shared tensors.
type AdapterReader struct {
	Config *AdapterConfig
	Name   string     // the adapter's name on the model ("default")
	Rand   *rand.Rand // for the adapter's dropout masks
	// Load is scratch space shared by every module's Load in one
	// LoadAdapter call (VeRA keeps the shared projections it read there,
	// so that the modules share them again).
	Load map[string]any

	file    *SafetensorsFile
	module  *Linear
	tensors map[string]string // suffix → tensor name, for module
	used    map[string]bool   // tensor names read
}

// Module returns the module being loaded.
func (r *AdapterReader) Module() *Linear { return r.module }

// Has reports whether the module has the tensor suffix.
func (r *AdapterReader) Has(suffix string) bool { _, ok := r.tensors[suffix]; return ok }

// Errorf returns an error about the module's tensor suffix (or the module,
// if suffix is ""), naming the file.
func (r *AdapterReader) Errorf(suffix, format string, args ...any) error {
	t := peftPrefix + r.module.Name + suffix
	return &SafetensorsError{File: r.file.name, Tensor: t, Msg: fmt.Sprintf(format, args...)}
}

// Tensor reads the module's 2-D tensor suffix, which must be rows×cols
// (a negative size: any). what describes it in errors. A tensor with a
// zero dimension reads as nil.
func (r *AdapterReader) Tensor(suffix string, rows, cols int, what string) (*mat.Dense, error) {
	t, ok := r.tensors[suffix]
	if !ok {
		return nil, r.Errorf("", "module %s has no tensor %s (%s)", r.module.Name, strings.TrimPrefix(suffix, "."), what)
	}
	r.used[t] = true
	return readFitting(r.file, t, rows, cols, false, what)
}

// Vector reads the module's 1-D tensor suffix of length n (< 0: any) as a
// 1×n matrix.
func (r *AdapterReader) Vector(suffix string, n int, what string) (*mat.Dense, error) {
	t, ok := r.tensors[suffix]
	if !ok {
		return nil, r.Errorf("", "module %s has no tensor %s (%s)", r.module.Name, strings.TrimPrefix(suffix, "."), what)
	}
	r.used[t] = true
	return readFitting(r.file, t, 1, n, true, what)
}

// Shared reads the shared tensor "base_model."+name, rows×cols (negative:
// any), or a 1-D one as 1×cols if oneD.
func (r *AdapterReader) Shared(name string, rows, cols int, oneD bool, what string) (*mat.Dense, error) {
	t := sharedPrefix + name
	if !r.file.Has(t) {
		return nil, &SafetensorsError{File: r.file.name, Tensor: t, Msg: "missing (" + what + ")"}
	}
	r.used[t] = true
	return readFitting(r.file, t, rows, cols, oneD, what)
}

// SharedShaped reads the shared tensor "base_model."+name, whose stored
// shape must be shape: as many dimensions, each equal (a negative one: any
// size). The stored elements, in row-major order, are returned unchanged as
// a d0 × (d1·…·dk) matrix of the stored shape [d0, d1, …, dk] (a 1-D [n]
// as 1×n, a 0-D one as 1×1), so that a tensor written by PutSharedShaped
// reads back as the matrix written when d0 was its row count. A tensor with
// no elements reads as nil. A missing tensor or one of another shape is a
// *SafetensorsError naming the file, the tensor, and both shapes; what
// describes the tensor in it.
func (r *AdapterReader) SharedShaped(name string, shape []int, what string) (*mat.Dense, error) {
	t := sharedPrefix + name
	if !r.file.Has(t) {
		return nil, &SafetensorsError{File: r.file.name, Tensor: t, Msg: fmt.Sprintf("missing (shape %s: %s)", shapeStr(shape), what)}
	}
	r.used[t] = true
	return readShaped(r.file, t, shape, what)
}

// HasShared reports whether the file holds the shared tensor
// "base_model."+name.
func (r *AdapterReader) HasShared(name string) bool { return r.file.Has(sharedPrefix + name) }

// TensorShaped reads the module's tensor suffix, whose stored shape must be
// shape, as SharedShaped reads a shared tensor.
func (r *AdapterReader) TensorShaped(suffix string, shape []int, what string) (*mat.Dense, error) {
	t, ok := r.tensors[suffix]
	if !ok {
		return nil, r.Errorf("", "module %s has no tensor %s (%s)", r.module.Name, strings.TrimPrefix(suffix, "."), what)
	}
	r.used[t] = true
	return readShaped(r.file, t, shape, what)
}

// LoadAdapter reads the PEFT adapter in the directory dir and attaches it to
// m under name ("" for "default") as it was saved, on the modules its
// tensors name, and makes it active; m's base weights are frozen, the
// adapter's parameters trainable. The method is the registered one whose
// format claims the config's peft_type (and fields). Nothing is attached
// unless the whole adapter is well-formed and fits m: an unknown module, a
// missing or extra tensor, a shape that does not fit the module, or a
// config field that gopeft would not honour is an error naming the file,
// the tensor or field, and both shapes or the value.
func LoadAdapter(dir string, m Model, name string) error {
	cpath := filepath.Join(dir, AdapterConfigFile)
	raw, err := os.ReadFile(cpath)
	if err != nil {
		if _, serr := os.Stat(dir); errors.Is(serr, os.ErrNotExist) {
			if t, rerr := resolveDirLinks(dir); rerr == nil {
				if old, _ := filepath.Glob(filepath.Join(filepath.Dir(t), "."+filepath.Base(t)+".old-*")); len(old) > 0 {
					return fmt.Errorf("peft: LoadAdapter: %w (a save was interrupted between its two renames; the previous adapter is whole in %s until the next save)", err, old[0])
				}
			}
		}
		return fmt.Errorf("peft: LoadAdapter: %w", err)
	}
	cfg, err := ParseAdapterConfig(cpath, raw)
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
	cfg, err := ParseAdapterConfig("("+AdapterConfigFile+")", config)
	if err != nil {
		return err
	}
	f, err := ParseSafetensors(weights)
	if err != nil {
		return err
	}
	return loadAdapter(cfg, f, m, name)
}

// methodFor returns the registered method whose format claims cfg.
func methodFor(cfg *AdapterConfig) (Method, error) {
	t := cfg.String("peft_type", "")
	if cfg.Err() != nil {
		return Method{}, cfg.Err()
	}
	var claim []Method
	for _, meth := range formatsFor(t) {
		if meth.Format.Claims == nil || meth.Format.Claims(cfg) {
			claim = append(claim, meth)
		}
	}
	if cfg.Err() != nil {
		return Method{}, cfg.Err()
	}
	switch len(claim) {
	case 0:
		if len(formatsFor(t)) > 0 {
			return Method{}, cfg.Errorf("peft_type", "no registered %s method takes this configuration", t)
		}
		return Method{}, cfg.Errorf("peft_type", "%q is not supported (registered: %s)", t, strings.Join(peftTypes(), ", "))
	case 1:
		return claim[0], nil
	}
	names := make([]string, len(claim))
	for i, c := range claim {
		names[i] = c.Name
	}
	return Method{}, cfg.Errorf("peft_type", "%s is claimed by several methods: %s", t, strings.Join(names, ", "))
}

// loadAdapter attaches the adapter of config cfg and tensors f to m.
func loadAdapter(cfg *AdapterConfig, f *SafetensorsFile, m Model, name string) error {
	name = AdapterName(name)
	meth, err := methodFor(cfg)
	if err != nil {
		return err
	}
	format := meth.Format
	fail := func(tensor, format string, args ...any) error {
		return &SafetensorsError{File: f.name, Tensor: tensor, Msg: fmt.Sprintf(format, args...)}
	}

	// Group the tensors by module.
	suffixes := append([]string(nil), format.Tensors...)
	sort.SliceStable(suffixes, func(i, j int) bool { return len(suffixes[i]) > len(suffixes[j]) })
	byModule := map[string]map[string]string{} // module → suffix → tensor name
	var order []string
	for _, tname := range f.Names() {
		rest, ok := strings.CutPrefix(tname, peftPrefix)
		if !ok {
			if s, ok := strings.CutPrefix(tname, sharedPrefix); ok && contains(format.Shared, s) {
				continue
			}
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
			return fail(tname, "not a tensor of a %s adapter (want a name ending in one of %s)", meth.Name, strings.Join(format.Tensors, ", "))
		}
	}
	if len(byModule) == 0 {
		return fail("", "the adapter has no tensors")
	}
	sort.Strings(order)
	if err := checkTargetModules(cfg, m, order); err != nil {
		return err
	}
	used := map[string]bool{}
	scratch := map[string]any{}
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
		r := &AdapterReader{Config: cfg, Name: name, Rand: rand.New(rand.NewSource(int64(i) + 1)), Load: scratch,
			file: f, module: l, tensors: byModule[mod], used: used}
		a, err := format.Load(r, l)
		if err == nil {
			err = cfg.Err()
		}
		if err != nil {
			return err
		}
		for _, t := range byModule[mod] {
			if !used[t] {
				return fail(t, "not part of module %s's %s adapter", mod, meth.Name)
			}
		}
		built[mod] = a
		targets = append(targets, "^"+regexp.QuoteMeta(mod)+"$")
	}
	for _, s := range format.Shared {
		if t := sharedPrefix + s; f.Has(t) && !used[t] {
			return fail(t, "not used by the %s adapter", meth.Name)
		}
	}
	if err := checkUnread(cfg, meth); err != nil {
		return err
	}
	_, err = AddAdapter(m, name, targets, func(l *Linear) (Adapter, error) { return built[l.Name], nil })
	return err
}

// checkTargetModules honours target_modules as PEFT does: a module is
// adapted if its name matches the one regular expression (a string, over
// the whole name) or, for a list, equals an entry or ends in "."+entry.
// Every entry must match a module of m (else the config was written for
// another model), and every module the file has tensors for must be
// matched (PEFT would not attach them). Absent, null or []: the tensors
// say.
func checkTargetModules(cfg *AdapterConfig, m Model, modules []string) error {
	var v any
	if !cfg.Decode("target_modules", &v) || isNothing(cfg.fields["target_modules"]) {
		return cfg.Err()
	}
	names := ModuleNames(m)
	var match func(string) bool
	switch v := v.(type) {
	case string:
		rx, err := regexp.Compile("^(?:" + v + ")$")
		if err != nil {
			return cfg.Errorf("target_modules", "%q: %v", v, err)
		}
		if !slices.ContainsFunc(names, rx.MatchString) {
			return cfg.Errorf("target_modules", "%q matches no module; the model has %s", v, quoteList(names))
		}
		match = rx.MatchString
	case []any:
		entries := make([]string, len(v))
		for i, t := range v {
			ts, ok := t.(string)
			if !ok {
				return cfg.Errorf("target_modules", "%v is not a module name", t)
			}
			entries[i] = ts
		}
		match = func(name string) bool {
			for _, e := range entries {
				if name == e || strings.HasSuffix(name, "."+e) {
					return true
				}
			}
			return false
		}
		for _, e := range entries {
			if !slices.ContainsFunc(names, func(n string) bool { return n == e || strings.HasSuffix(n, "."+e) }) {
				return cfg.Errorf("target_modules", "%q matches no module; the model has %s", e, quoteList(names))
			}
		}
	default:
		return cfg.Errorf("target_modules", "%v is neither a list of module names nor a regular expression", v)
	}
	for _, mod := range modules {
		if !match(mod) && slices.Contains(names, mod) { // an unknown module is reported later
			return cfg.Errorf("target_modules", "%s does not take in module %q, whose tensors the file holds (PEFT would not load them)", compactJSON(cfg.fields["target_modules"]), mod)
		}
	}
	return nil
}

// checkUnread fails on a field that nobody read and that asks for something.
func checkUnread(cfg *AdapterConfig, meth Method) error {
	keys := make([]string, 0, len(cfg.fields))
	for k := range cfg.fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if cfg.read[k] || contains(metadataFields, k) || isNothing(cfg.fields[k]) {
			continue
		}
		return cfg.Errorf(k, "%s is not supported by gopeft's %s (it would be ignored)", compactJSON(cfg.fields[k]), meth.Name)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
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

// readShaped reads tensor tname of f, whose stored shape must match shape
// (a negative dimension: any), as d0 × (d1·…) (see SharedShaped).
func readShaped(f *SafetensorsFile, tname string, shape []int, what string) (*mat.Dense, error) {
	s := f.Shape(tname)
	fits := len(s) == len(shape)
	for i := 0; fits && i < len(s); i++ {
		fits = shape[i] < 0 || s[i] == shape[i]
	}
	if !fits {
		return nil, &SafetensorsError{File: f.name, Tensor: tname, Msg: fmt.Sprintf("shape %v does not fit %s: want %s", s, what, shapeStr(shape))}
	}
	if n, _ := shapeSize(s); n == 0 {
		return nil, nil
	}
	return f.Tensor(tname)
}

// shapeStr writes a wanted shape, "*" for a dimension of any size.
func shapeStr(shape []int) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = fmt.Sprint(d)
		if d < 0 {
			parts[i] = "*"
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func dimStr(d int) string {
	if d < 0 {
		return "r"
	}
	return fmt.Sprint(d)
}

// writeDirAtomic replaces the directory dir by one holding files (and the
// regular files of the old dir that files does not name, hard-linked).
//
// The path: dir is made absolute, and if it is a symbolic link (with or
// without a trailing slash, dangling or not, through any chain of links)
// the directory it finally points to is replaced and every link kept;
// a missing directory is created with its parents.
//
// The steps, under an exclusive lock on the parent directory (flock, on
// Linux; see lockDir), so that two saves to the same place run one after
// the other:
//
//  0. remove the ".<name>.tmp-*" beside the target, and the
//     ".<name>.old-*" if the target exists: what earlier saves that were
//     killed or failed left (never the only copy of an adapter);
//  1. write every file, fsynced, into a new hidden directory
//     ".<name>.tmp-<random>" beside the target;
//  2. exchange it with the target in one renameat2(RENAME_EXCHANGE) (a
//     new target: one rename); where the system cannot exchange, rename
//     the target to ".<name>.old-<random>" and then the new directory
//     into its place (see replaceDirAside);
//  3. remove the old directory (now under the temporary name), fsync the
//     parent;
//  4. remove every ".<name>.tmp-*" and ".<name>.old-*" beside the target.
//
// So a process killed at any point leaves the target whole, old or new,
// and at most one hidden ".<name>.tmp-*" directory beside it (on Linux;
// with the aside fallback, also at most one ".<name>.old-*", and a kill
// between its two renames leaves no target but the old adapter whole in
// ".<name>.old-*", which LoadAdapter's error names). Those are removed by
// the next save to the same target (step 0, and step 4 once it has
// succeeded), and by nothing else: LoadAdapter reads, never removes. No
// temporary file is ever left inside the target.
func writeDirAtomic(dir string, files map[string][]byte) (err error) {
	target, err := resolveDirLinks(dir)
	if err != nil {
		return fmt.Errorf("peft: SaveAdapter %s: %w", dir, err)
	}
	parent, base := filepath.Split(target)
	if base == "" {
		return fmt.Errorf("peft: SaveAdapter %s: cannot replace the root directory", dir)
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("peft: SaveAdapter %s: %w", dir, err)
	}
	unlock, err := lockDir(parent)
	if err != nil {
		return fmt.Errorf("peft: SaveAdapter %s: %w", dir, err)
	}
	defer unlock()
	mode := os.FileMode(0o755)
	exists := false
	if fi, serr := os.Lstat(target); serr == nil {
		if !fi.IsDir() {
			return fmt.Errorf("peft: SaveAdapter %s: %s exists and is not a directory", dir, target)
		}
		mode, exists = fi.Mode().Perm(), true
	}
	removeStale(parent, base, exists)
	tmp, err := os.MkdirTemp(parent, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("peft: SaveAdapter %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		data := files[n]
		if err = writeFileAtomic(filepath.Join(tmp, n), func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
			return err
		}
	}
	if exists {
		// Keep files of dir that the adapter does not own (a README, a
		// base model beside it), as hard links: the originals stay in
		// place until the new directory has replaced the old one.
		ents, rerr := os.ReadDir(target)
		if rerr != nil {
			err = fmt.Errorf("peft: SaveAdapter %s: %w", dir, rerr)
			return err
		}
		for _, e := range ents {
			if _, own := files[e.Name()]; own {
				continue
			}
			if !e.Type().IsRegular() {
				err = fmt.Errorf("peft: SaveAdapter %s: holds %s, which is not a regular file; the adapter directory is replaced as a whole, so save to a directory of its own", dir, e.Name())
				return err
			}
			if err = os.Link(filepath.Join(target, e.Name()), filepath.Join(tmp, e.Name())); err != nil {
				err = fmt.Errorf("peft: SaveAdapter %s: keeping %s: %w", dir, e.Name(), err)
				return err
			}
		}
	}
	if err = os.Chmod(tmp, mode); err != nil {
		err = fmt.Errorf("peft: SaveAdapter %s: %w", dir, err)
		return err
	}
	if err = replaceDir(tmp, target, exists); err != nil {
		err = fmt.Errorf("peft: SaveAdapter %s: %w", dir, err)
		return err
	}
	syncDir(parent)
	removeStale(parent, base, true)
	return nil
}

// resolveDirLinks returns the absolute path that saving to dir replaces:
// dir itself, or, if dir is a symbolic link, the end of its chain of links
// (which need not exist yet). The parent of the result has no symbolic
// link left in it where it exists, so that a relative link's ".." means
// what the system means by it.
func resolveDirLinks(dir string) (string, error) {
	p, err := filepath.Abs(dir) // also drops a trailing slash
	if err != nil {
		return "", err
	}
	for hops := 0; ; hops++ {
		if hops > 40 {
			return "", fmt.Errorf("more than 40 symbolic links from %s", dir)
		}
		if real, err := filepath.EvalSymlinks(filepath.Dir(p)); err == nil {
			p = filepath.Join(real, filepath.Base(p))
		}
		fi, err := os.Lstat(p)
		if errors.Is(err, os.ErrNotExist) {
			return p, nil
		}
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return p, nil
		}
		link, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(link) {
			link = filepath.Join(filepath.Dir(p), link)
		}
		p = filepath.Clean(link)
	}
}

// syncDir makes the renames in dir durable. Not every system lets a
// directory be fsynced; the files' data is already safe, so a failure is
// ignored.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// removeStale removes the ".base.tmp-*" directories that interrupted saves
// of parent/base left, and the ".base.old-*" ones if old (see
// writeDirAtomic). The caller holds parent's lock.
func removeStale(parent, base string, old bool) {
	pats := []string{"." + base + ".tmp-*"}
	if old {
		pats = append(pats, "."+base+".old-*")
	}
	for _, pat := range pats {
		ms, _ := filepath.Glob(filepath.Join(parent, pat))
		for _, m := range ms {
			os.RemoveAll(m)
		}
	}
}

// replaceDirAside puts the directory tmp in place of the existing dst where
// two directories cannot be exchanged atomically: dst is first renamed to
// ".name.old-*" beside it, so a crash between the two renames leaves the
// old adapter whole there (and the new one whole at tmp).
func replaceDirAside(tmp, dst string) error {
	parent, base := filepath.Split(dst)
	if parent == "" {
		parent = "."
	}
	old, err := os.MkdirTemp(parent, "."+base+".old-*")
	if err != nil {
		return err
	}
	if err := os.Remove(old); err != nil {
		return err
	}
	if err := os.Rename(dst, old); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Rename(old, dst)
		return err
	}
	return os.RemoveAll(old)
}
