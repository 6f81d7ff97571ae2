// Package peft is gopeft's small-model laboratory for parameter-efficient
// fine-tuning: a reverse-mode autograd over float64 gonum matrices, two
// backbones with named layers, shipped data and pretrained bases, a training
// loop, the LoRA family of adapters and the tools to analyse what they
// learn.
//
// # Autograd
//
// A Tensor holds a *mat.Dense value (r×c, rows are samples) and its
// gradient. NewParam makes a trainable leaf, NewConst a constant. Ops —
// MatMul, MatMulT, Affine, Add, Sub, Mul, Div, AddRow, MulRow, MulCol,
// Scale, Transpose, Detach, RowNorms, FrobeniusNorm, SumAll, Mean, SumRows,
// Slice, ConcatCols, ConcatRows, GELU, ReLU, Tanh, Softmax, LayerNorm,
// Embedding, CrossEntropy, CausalSelfAttention, Dropout — each compute
// their value at once and record one explicit backward function that adds
// into their inputs' gradients; (*Tensor).Backward runs them from a scalar
// loss. Every backward is checked against central differences (ops_test.go).
// Matrix products run on accel.Dgemm. A shape mismatch panics with a
// ShapeError naming the op and both shapes; Maybe turns it into an error.
//
// # Models
//
// A Model exposes its Linear layers by stable dotted names (Modules), its
// parameters (Params), a scalar Loss on a Batch, and SetTraining. MLP is a
// classifier with layers fc1, fc2, …; GPT is a tiny decoder-only character
// Transformer with layers blocks.i.attn.{q,k,v,o}, blocks.i.mlp.{fc,proj}
// and head; LinearModel is the student of a TeacherTask. Targets matches
// layers by name or pattern as HuggingFace PEFT's target_modules does.
//
// # Adapters
//
// An Adapter changes one Linear layer's output and is written as a forward
// composition of the ops, so it needs no backward pass of its own.
// AddAdapter attaches one to every targeted layer and freezes the base;
// CustomAdapter defines one from a function in a notebook cell. Several
// named adapters may sit on a model: SetAdapter switches, DisableAdapters
// gives the base model exactly, MergeAdapters/UnmergeAdapters fold them into
// the weights and back. TrainableParams and Ranks report the parameter count
// and every layer's rank.
//
// # Methods: one package each
//
// This package is the core every method shares. Each method lives in its
// own package under peft/, named after it, as HuggingFace PEFT keeps one
// folder per method under tuners/: peft/lora (LoRA and rsLoRA), peft/dora,
// peft/pissa, peft/adalora, peft/vera, peft/galore, …. In a notebook that is
// lora.Add(g, lora.Config{R: 4, …}), adalora.Add, galore.New: completion on
// "lora." lists LoRA's names only, and the core stays small however many
// methods there are. The kernel imports every method package.
//
// A method registers itself from its package's init function (Register,
// as image formats do), with its paper and, if its adapters can be saved,
// an AdapterFormat: its peft_type, its tensor names, and how it writes and
// reads them. SaveAdapter and LoadAdapter know no method; Methods lists the
// catalogue (%help in the kernel shows it).
//
// Adding a method is: its folder with one file (the type, whose doc comment
// cites the paper and shows the math with shapes; its constructor, which
// checks its arguments; Add; and the Register call), a test file that calls
// peft/adaptertest's shared suite and adds the paper's own invariant, one
// line in this package's README, and go generate ./kernel/... so the kernel
// sees it. peft/vera is the worked example: VeRA (Kopiczko et al. 2023)
// shares one frozen random pair A, B across layers and trains two scaling
// vectors per layer, and its files load in HuggingFace PEFT.
//
// # Data and pretrained bases
//
// The digits (Digits, DigitsData), two texts (Text: "moby-dick" and "sotu")
// with a character vocabulary (CharVocab, NewTextData), and the teacher task
// (NewTeacherTask) ship in the package (data/README.md gives sources and
// licences). LoadTinyGPT and LoadDigitsMLP return bases pretrained by
// `go generate ./peft`, deterministic from fixed seeds.
//
// # Training
//
// Train runs a compiled loop — minibatches, AdamW or SGD (or GaLore, any
// Optimizer), warm-up and cosine schedule, gradient clipping, evaluation,
// a callback every N steps, Hooks for methods that act on the whole run —
// and returns a History. It stops within one step when its context is
// cancelled, and names the step and the parameter when a loss or gradient
// turns NaN or Inf. Full fine-tuning, the baseline, is FullFineTune.
//
// # Files and analysis
//
// Safetensors (ReadSafetensors, WriteSafetensors, OpenSafetensors), base
// models (SaveModel, LoadModel) and adapters in PEFT's layout (SaveAdapter,
// LoadAdapter) are read and written atomically. Spectra, effective and
// stable ranks, subspace similarity and amplification measure what an
// adapter learned.
package peft
