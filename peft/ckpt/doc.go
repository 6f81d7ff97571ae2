// Package ckpt analyses the weights of real checkpoints, the
// `model.safetensors` files (and sharded `model.safetensors.index.json`
// sets) that HuggingFace transformers writes, streamed one tensor at a time
// so that a checkpoint larger than memory can be read: peak memory is the
// largest 2-D tensor as float64 plus a 1 MiB read buffer, never the file.
//
// # Reading
//
// Open reads only headers (of the file, or of every shard named in the
// index's weight_map) and checks every entry: a known dtype, a shape whose
// byte count matches data_offsets, offsets inside the file. ReadTo then reads
// one tensor with os.File.ReadAt in 1 MiB chunks, converting F64, F32, F16
// and BF16 to float64 straight into the caller's matrix, whose storage is
// reused from one tensor to the next. peft.OpenSafetensors is not used for
// this because its Tensor allocates the raw bytes and a new matrix for every
// tensor; this reader allocates neither.
//
// # One checkpoint
//
// Analyze reports, for every 2-D floating-point weight W (m×n), with the
// singular values σ₁ ≥ … ≥ σ_p (p = min(m, n)) from peft.NewSpectrum:
//
//	‖W‖_F = √Σσ_i²,  ‖W‖₂ = σ₁
//	effective rank  exp(−Σ p_i ln p_i), p_i = σ_i/Σσ_j   (Roy & Vetterli, 2007)
//	stable rank     ‖W‖²_F / ‖W‖²₂
//	α               the power-law exponent of the tail of the empirical
//	                spectral density λ_i = σ_i²/max(m, n) (peft.FitPowerLaw,
//	                Clauset et al. 2009), as heavy-tailed self-regularization
//	                reads weights (Martin & Mahoney, 2021, JMLR 22): α ≲ 2
//	                very heavy-tailed, 2–4 typical of trained layers, large α
//	                close to random
//	MP outliers     the number of λ_i above the bulk edge λ+ = σ²(1 + 1/√Q)²
//	                of the Marchenko–Pastur law fitted to the ESD's median
//	                (peft.ESD.MarchenkoPastur): the directions training put
//	                above a random matrix of the same shape.
//
// # Two checkpoints
//
// Compare streams two checkpoints with the same names and shapes (a base and
// its fine-tune) tensor by tensor and reports, for ΔW = W₂ − W₁:
//
//	sparsity        the fraction of entries with ΔW_ij = 0 (peft.UpdateSparsity),
//	                and the fraction with |ΔW_ij| ≤ Atol + Rtol·|W₁_ij|
//	                (defaults Atol 0, Rtol 1e-6), the update sparsity of
//	                Mukherjee et al. (2025, "Reinforcement Learning Finetunes
//	                Small Subnetworks in Large Language Models",
//	                arXiv:2505.11711): they find 70–95 % of the entries of
//	                RL-finetuned LLMs unchanged; their script compares bf16
//	                weights with a tolerance of 1e-5 (Atol 1e-5 here)
//	update rank     the numerical rank of ΔW (LAPACK's default tolerance
//	                max(m, n)·ε·σ₁), its fraction of min(m, n) (the paper's
//	                measure: sparse RL updates are nevertheless nearly
//	                full-rank), and the effective rank of ΔW
//	φ_k (left, right) the subspace similarity ‖U₁ᵏᵀU₂ᵏ‖²_F / k of the top-k
//	                singular subspaces of W₁ and W₂ (Hu et al., 2021,
//	                arXiv:2106.09685, §7.2; peft.SubspaceSimilarityBases),
//	                1 when fine-tuning kept W's dominant directions.
//
// The top-k bases come from accel.TruncatedSVD (randomized, four power
// iterations, a fixed seed, so identical matrices give φ = 1 to rounding), which
// costs a few per cent of a full SVD; the full spectrum is only taken of ΔW.
//
// # Output
//
// Report and UpdateReport are slices of structs a notebook can chart
// (Values returns one column with the layer names); they print as text
// (Text), Markdown (Markdown, which a notebook shows as a table) and CSV
// (WriteCSV). Package viz has no chart of a real-valued metric per layer,
// so this package returns the data; integer metrics (MP outliers, update
// rank) convert to a *peft.RankTrace with RankTrace, which viz.FinalRanks
// draws as one bar per layer.
//
// Progress is reported through Options.Progress after every tensor
// (NotebookProgress shows it as a line updated in place in a notebook;
// `gopeft analyze` prints it on stderr). The context is checked between
// read chunks and inside every SVD.
//
// Generate and GeneratePair write synthetic LLM-shaped checkpoints of a
// chosen size (heavy-tailed entries plus a few strong rank-1 spikes, so that
// α and the MP outliers mean something, and a sparse low-rank update for the
// pair), for tests, benchmarks and notebooks.
package ckpt
