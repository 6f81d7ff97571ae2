package ckpt

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// GenConfig describes a synthetic LLM-shaped checkpoint: Layers decoder
// blocks of a Llama-like model, each with
//
//	self_attn.{q,k,v,o}_proj.weight   [Hidden, Hidden]
//	mlp.{gate,up}_proj.weight         [FFN, Hidden]
//	mlp.down_proj.weight              [Hidden, FFN]
//	{input,post_attention}_layernorm.weight  [Hidden]   (1-D: skipped by Analyze)
//
// under the names transformers uses ("model.layers.3.mlp.up_proj.weight").
// Each weight W (m×n) is
//
//	W = G/√(n·E[x²]) + Σ_{k<Spikes} s_k·u_k·v_kᵀ,   s_k = 4 + 2k
//
// where G's entries are symmetric Lomax variables, P(|x| > t) = (1+t)^(−μ)
// (μ = TailIndex), whose heavy tail gives the ESD a power-law tail, and
// u_k (m), v_k (n) have N(0, 1/m), N(0, 1/n) entries, so that the Spikes
// strong directions stand above the Marchenko–Pastur bulk as trained
// layers' do. Values are a function of (Seed, tensor name) only.
type GenConfig struct {
	Layers    int     // decoder blocks (0: 2)
	Hidden    int     // model width (0: 1024)
	FFN       int     // MLP width (0: 4·Hidden)
	DType     string  // "BF16" (default), "F16", "F32" or "F64"
	Shards    int     // ≤ 1: one model.safetensors; n > 1: n shards and model.safetensors.index.json
	Seed      uint64  // seeds every tensor
	TailIndex float64 // μ > 2 of the entries' tail (0: 3)
	Spikes    int     // rank-1 spikes per weight (0: 8; < 0: none)
}

func (c GenConfig) withDefaults() (GenConfig, error) {
	if c.Layers == 0 {
		c.Layers = 2
	}
	if c.Hidden == 0 {
		c.Hidden = 1024
	}
	if c.FFN == 0 {
		c.FFN = 4 * c.Hidden
	}
	if c.DType == "" {
		c.DType = "BF16"
	}
	if c.TailIndex == 0 {
		c.TailIndex = 3
	}
	if c.Spikes == 0 {
		c.Spikes = 8
	}
	if c.Spikes < 0 {
		c.Spikes = 0
	}
	switch {
	case c.Layers < 0:
		return c, fmt.Errorf("ckpt: GenConfig.Layers = %d, want ≥ 1", c.Layers)
	case c.Hidden < 1:
		return c, fmt.Errorf("ckpt: GenConfig.Hidden = %d, want ≥ 1", c.Hidden)
	case c.FFN < 1:
		return c, fmt.Errorf("ckpt: GenConfig.FFN = %d, want ≥ 1", c.FFN)
	case !Readable(c.DType):
		return c, fmt.Errorf("ckpt: GenConfig.DType = %q, want BF16, F16, F32 or F64", c.DType)
	case !(c.TailIndex > 2) || math.IsInf(c.TailIndex, 0):
		return c, fmt.Errorf("ckpt: GenConfig.TailIndex = %v, want a finite value > 2 (finite variance)", c.TailIndex)
	case c.Shards > c.Layers*9:
		return c, fmt.Errorf("ckpt: GenConfig.Shards = %d, more than the %d tensors", c.Shards, c.Layers*9)
	}
	return c, nil
}

// LayersFor returns the number of layers that brings a checkpoint of width
// hidden, MLP width ffn (0: 4·hidden) and dtype to at least bytes.
func LayersFor(bytes int64, hidden, ffn int, dtype string) int {
	if ffn == 0 {
		ffn = 4 * hidden
	}
	size := int64(dtypeSize[dtype])
	if size == 0 || hidden < 1 {
		return 1
	}
	per := (4*int64(hidden)*int64(hidden) + 3*int64(ffn)*int64(hidden) + 2*int64(hidden)) * size
	return int(max(1, (bytes+per-1)/per))
}

// UpdateConfig describes the update GeneratePair adds to every 2-D weight
// W (m×n) of the base checkpoint:
//
//	ΔW = Scale·ω·B·A/√Rank,   B: m×Rank, A: Rank×n
//
// where B has N(0, 1) entries on a random set R of ⌈RowFrac·m⌉ rows and 0
// elsewhere, A likewise on a set C of ⌈ColFrac·n⌉ columns, and ω = 1/√n is
// the scale of W's entries. ΔW is nonzero exactly on R×C, so its sparsity
// is 1 − |R|·|C|/(m·n), and its rank is min(Rank, |R|, |C|): a sparse
// low-rank update. Once stored, W₂ = round(W + ΔW) and the stored update
// is round(W+ΔW) − round(W): exact in F64, while BF16 rounding can swallow
// tiny entries and adds a full-rank rounding error far below ΔW.
type UpdateConfig struct {
	Rank             int     // rank of each ΔW (0: 4)
	RowFrac, ColFrac float64 // shares of rows and columns ΔW touches (0: 0.5 each)
	Scale            float64 // size of ΔW's entries relative to W's (0: 0.1)
	Seed             uint64  // seeds the update (0: Seed of the base + 1)
}

func (u UpdateConfig) withDefaults(base GenConfig) (UpdateConfig, error) {
	if u.Rank == 0 {
		u.Rank = 4
	}
	if u.RowFrac == 0 {
		u.RowFrac = 0.5
	}
	if u.ColFrac == 0 {
		u.ColFrac = 0.5
	}
	if u.Scale == 0 {
		u.Scale = 0.1
	}
	if u.Seed == 0 {
		u.Seed = base.Seed + 1
	}
	switch {
	case u.Rank < 1:
		return u, fmt.Errorf("ckpt: UpdateConfig.Rank = %d, want ≥ 1", u.Rank)
	case !(u.RowFrac > 0 && u.RowFrac <= 1):
		return u, fmt.Errorf("ckpt: UpdateConfig.RowFrac = %v, want a value in (0, 1]", u.RowFrac)
	case !(u.ColFrac > 0 && u.ColFrac <= 1):
		return u, fmt.Errorf("ckpt: UpdateConfig.ColFrac = %v, want a value in (0, 1]", u.ColFrac)
	case !(u.Scale > 0) || math.IsInf(u.Scale, 0):
		return u, fmt.Errorf("ckpt: UpdateConfig.Scale = %v, want a finite value > 0", u.Scale)
	}
	return u, nil
}

// Generate writes the checkpoint cfg describes into dir (created if needed)
// and returns the path to Open: dir/model.safetensors, or
// dir/model.safetensors.index.json when sharded. Tensors are generated and
// written a block of rows at a time, so memory stays small whatever the
// size.
func Generate(dir string, cfg GenConfig) (string, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return "", err
	}
	return write(dir, c, nil)
}

// GeneratePair writes the base checkpoint cfg describes into dir1 and the
// same checkpoint with the update up added to every 2-D weight into dir2,
// and returns both paths (see Generate).
func GeneratePair(dir1, dir2 string, cfg GenConfig, up UpdateConfig) (string, string, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return "", "", err
	}
	u, err := up.withDefaults(c)
	if err != nil {
		return "", "", err
	}
	p1, err := write(dir1, c, nil)
	if err != nil {
		return "", "", err
	}
	p2, err := write(dir2, c, &u)
	if err != nil {
		return "", "", err
	}
	return p1, p2, nil
}

// genTensor is one tensor of a synthetic checkpoint.
type genTensor struct {
	name       string
	rows, cols int
	oneD       bool
}

func (t genTensor) shape() []int {
	if t.oneD {
		return []int{t.cols}
	}
	return []int{t.rows, t.cols}
}

// layout lists the tensors of cfg in model order.
func layout(c GenConfig) []genTensor {
	var ts []genTensor
	h, f := c.Hidden, c.FFN
	for l := range c.Layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		ts = append(ts,
			genTensor{name: p + "input_layernorm.weight", rows: 1, cols: h, oneD: true},
			genTensor{name: p + "self_attn.q_proj.weight", rows: h, cols: h},
			genTensor{name: p + "self_attn.k_proj.weight", rows: h, cols: h},
			genTensor{name: p + "self_attn.v_proj.weight", rows: h, cols: h},
			genTensor{name: p + "self_attn.o_proj.weight", rows: h, cols: h},
			genTensor{name: p + "post_attention_layernorm.weight", rows: 1, cols: h, oneD: true},
			genTensor{name: p + "mlp.gate_proj.weight", rows: f, cols: h},
			genTensor{name: p + "mlp.up_proj.weight", rows: f, cols: h},
			genTensor{name: p + "mlp.down_proj.weight", rows: h, cols: f},
		)
	}
	return ts
}

// write writes the checkpoint c (with the update u, if not nil) into dir.
func write(dir string, c GenConfig, u *UpdateConfig) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("ckpt: Generate: %w", err)
	}
	ts := layout(c)
	size := int64(dtypeSize[c.DType])
	if c.Shards <= 1 {
		p := filepath.Join(dir, "model.safetensors")
		return p, writeShard(p, ts, c, u)
	}
	// Split the tensors, in model order, into c.Shards runs of about equal
	// bytes.
	var total int64
	for _, t := range ts {
		total += int64(t.rows*t.cols) * size
	}
	groups := make([][]genTensor, c.Shards)
	var acc int64
	for i, t := range ts {
		g := int(acc * int64(c.Shards) / total)
		// Leave at least one tensor for every later shard.
		g = min(g, c.Shards-1, i)
		g = max(g, c.Shards-(len(ts)-i))
		groups[g] = append(groups[g], t)
		acc += int64(t.rows*t.cols) * size
	}
	weightMap := map[string]string{}
	for i, g := range groups {
		file := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, c.Shards)
		if err := writeShard(filepath.Join(dir, file), g, c, u); err != nil {
			return "", err
		}
		for _, t := range g {
			weightMap[t.name] = file
		}
	}
	idx := map[string]any{
		"metadata":   map[string]any{"total_size": total},
		"weight_map": weightMap,
	}
	js, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return "", fmt.Errorf("ckpt: Generate: %w", err)
	}
	p := filepath.Join(dir, "model.safetensors.index.json")
	if err := os.WriteFile(p, append(js, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("ckpt: Generate: %w", err)
	}
	return p, nil
}

// writeShard writes the tensors ts as one safetensors file at path, through
// a temporary file renamed into place.
func writeShard(path string, ts []genTensor, c GenConfig, u *UpdateConfig) (err error) {
	size := int64(dtypeSize[c.DType])
	type entry struct {
		DType       string   `json:"dtype"`
		Shape       []int    `json:"shape"`
		DataOffsets [2]int64 `json:"data_offsets"`
	}
	header := map[string]any{"__metadata__": map[string]string{"format": "pt", "generator": "gopeft/peft/ckpt"}}
	var at int64
	for _, t := range ts {
		n := int64(t.rows*t.cols) * size
		header[t.name] = entry{DType: c.DType, Shape: t.shape(), DataOffsets: [2]int64{at, at + n}}
		at += n
	}
	js, err := json.Marshal(header)
	if err != nil {
		return fmt.Errorf("ckpt: Generate %s: %w", path, err)
	}
	for (8+len(js))%8 != 0 { // data 8-byte aligned, as the reference writer does
		js = append(js, ' ')
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("ckpt: Generate: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(js)))
	w.Write(lenBuf[:])
	w.Write(js)
	for _, t := range ts {
		if err := writeTensor(w, t, c, u); err != nil {
			return fmt.Errorf("ckpt: Generate %s: tensor %q: %w", path, t.name, err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("ckpt: Generate %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("ckpt: Generate %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("ckpt: Generate: %w", err)
	}
	return nil
}

// rngFor returns a generator that depends only on seed and name.
func rngFor(seed uint64, name string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(name))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// blockRows is how many rows are generated and encoded at a time.
const blockRows = 64

// writeTensor generates tensor t block by block and writes it as c.DType.
func writeTensor(w *bufio.Writer, t genTensor, c GenConfig, u *UpdateConfig) error {
	m, n := t.rows, t.cols
	rng := rngFor(c.Seed, t.name)
	if t.oneD { // a LayerNorm gain: 1 + small noise
		v := make([]float64, n)
		for j := range v {
			v[j] = 1 + 0.02*rng.NormFloat64()
		}
		return encodeRows(w, mat.NewDense(1, n, v), c.DType)
	}
	// The spikes' vectors: us is Spikes×m, vs is Spikes×n.
	k := c.Spikes
	us, vs := make([]float64, k*m), make([]float64, k*n)
	for i := range us {
		us[i] = rng.NormFloat64() / math.Sqrt(float64(m))
	}
	for i := range vs {
		vs[i] = rng.NormFloat64() / math.Sqrt(float64(n))
	}
	mu := c.TailIndex
	ex2 := 2 / ((mu - 1) * (mu - 2)) // E[x²] of the symmetric Lomax variable
	scale := 1 / math.Sqrt(float64(n)*ex2)

	// The update's factors: bu is m×r (zero off the chosen rows), au is
	// r×n (zero off the chosen columns).
	var bu, au []float64
	var r int
	var uscale float64
	if u != nil {
		r = u.Rank
		urng := rngFor(u.Seed, t.name)
		bu, au = make([]float64, m*r), make([]float64, r*n)
		for _, i := range pick(urng, m, u.RowFrac) {
			for l := range r {
				bu[i*r+l] = urng.NormFloat64()
			}
		}
		for _, j := range pick(urng, n, u.ColFrac) {
			for l := range r {
				au[l*n+j] = urng.NormFloat64()
			}
		}
		uscale = u.Scale / math.Sqrt(float64(n)) / math.Sqrt(float64(r))
	}

	block := make([]float64, blockRows*n)
	for i0 := 0; i0 < m; i0 += blockRows {
		rows := min(blockRows, m-i0)
		for di := range rows {
			i := i0 + di
			row := block[di*n : (di+1)*n]
			for j := range row {
				x := math.Pow(1-rng.Float64(), -1/mu) - 1
				if rng.Uint64()&1 == 1 {
					x = -x
				}
				row[j] = x * scale
			}
			for s := range k {
				a := (4 + 2*float64(s)) * us[s*m+i]
				v := vs[s*n : (s+1)*n]
				for j := range row {
					row[j] += a * v[j]
				}
			}
			if u != nil {
				for l := range r {
					b := bu[i*r+l]
					if b == 0 {
						continue
					}
					b *= uscale
					a := au[l*n : (l+1)*n]
					for j := range row {
						row[j] += b * a[j]
					}
				}
			}
		}
		if err := encodeRows(w, mat.NewDense(rows, n, block[:rows*n]), c.DType); err != nil {
			return err
		}
	}
	return nil
}

// pick returns ⌈frac·n⌉ distinct indices in [0, n), sorted.
func pick(rng *rand.Rand, n int, frac float64) []int {
	k := int(math.Ceil(frac * float64(n)))
	k = min(max(k, 1), n)
	idx := rng.Perm(n)[:k]
	sort.Ints(idx)
	return idx
}

// encodeRows writes the values of b as dtype, rounded as peft's safetensors
// writer rounds (to nearest, ties to even), by encoding b alone with
// peft.EncodeSafetensors and keeping the data after its header.
func encodeRows(w *bufio.Writer, b *mat.Dense, dtype string) error {
	enc, err := peft.EncodeSafetensors(map[string]*mat.Dense{"b": b}, nil, dtype, nil)
	if err != nil {
		return err
	}
	n := binary.LittleEndian.Uint64(enc)
	_, err = w.Write(enc[8+n:])
	return err
}
