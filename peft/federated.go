package peft

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"sort"
	"time"

	"gonum.org/v1/gonum/mat"
)

// This file simulates federated fine-tuning (McMahan, Moore, Ramage,
// Hampson and Agüera y Arcas, 2017, "Communication-Efficient Learning of
// Deep Networks from Decentralized Data", arXiv:1602.05629) on one
// machine: NewClients splits a Classification's training rows among
// simulated clients, IID or not, and Federate runs the rounds
//
//	for t = 1 … T:
//	    S_t = ClientsPerRound clients drawn without replacement
//	    for k in S_t:   θ_k = Train(θ_t, shard_k)     (local steps from θ_t)
//	                    Δ_k = θ_k − θ_t               (sent to the server)
//	    θ_{t+1} = θ_t + Aggregate(Δ_k, k ∈ S_t)       (FedAvg: Σ n_k·Δ_k / Σ n_k)
//
// where θ are the model's trainable parameters (TrainableOf: an adapter's
// factors after lora.Add, LoRA-SB's R, a head left trainable …), counting
// every byte the server and the clients exchange. The clients take turns on
// the one model, so a run needs no copy of it.

// Split says how NewClients divides a data set's training rows among
// clients. Make one with IIDSplit, DirichletSplit or ClassSplit.
type Split struct {
	// Kind is "iid" (shuffled, equal shares), "dirichlet" (each class's
	// rows shared out in proportions p ~ Dirichlet(α, …, α) over the
	// clients) or "classes" (each client holds exactly Classes classes).
	Kind    string
	Alpha   float64 // α > 0 of "dirichlet": small α, skewed clients; large α, near IID
	Classes int     // classes per client of "classes", in [1, the data's classes]
}

// IIDSplit shuffles the rows and deals them out in equal shares (sizes
// differ by at most one). The zero Split is IID too.
func IIDSplit() Split { return Split{Kind: "iid"} }

// DirichletSplit shares each class's rows out among the clients in
// proportions drawn from Dirichlet(α, …, α) (Hsu, Qi and Brown, 2019,
// arXiv:1909.06335): α → ∞ approaches IID, α = 0.1 gives most clients
// few classes.
func DirichletSplit(alpha float64) Split { return Split{Kind: "dirichlet", Alpha: alpha} }

// ClassSplit gives each client exactly k distinct classes, McMahan et al.'s
// "pathological non-IID" split: with the classes present shuffled into
// c₀ … c_{C−1}, client i holds c_{(i·k+j) mod C} for j < k, and each class's
// rows are dealt out evenly among the clients holding it. It needs n·k ≥ C
// so that every row has a client.
func ClassSplit(k int) Split { return Split{Kind: "classes", Classes: k} }

func (s Split) String() string {
	switch s.Kind {
	case "dirichlet":
		return fmt.Sprintf("dirichlet(α=%g)", s.Alpha)
	case "classes":
		return fmt.Sprintf("%d classes per client", s.Classes)
	}
	return s.Kind
}

// Client is one simulated federated client: a shard of a data set's
// training rows.
type Client struct {
	ID   int             // 0 … n−1, its index in NewClients's result
	Rows []int           // its rows of the source's X, ascending (nil for a client made by hand)
	Data *Classification // those rows as a data set (no evaluation rows)

	source *Classification
}

// Size returns the client's number of training rows n_k.
func (c *Client) Size() int { return len(c.Data.Labels) }

// ClassCounts returns how many rows of each class (0 … Classes−1) the
// client holds.
func (c *Client) ClassCounts() []int {
	counts := make([]int, c.Data.Classes)
	for _, l := range c.Data.Labels {
		counts[l]++
	}
	return counts
}

// Source returns the data set the client's rows come from (nil for a
// client made by hand).
func (c *Client) Source() *Classification { return c.source }

// NewClients splits data's training rows among n clients as split says,
// every row going to exactly one client, drawing from seed: the same
// arguments give the same clients. Each client's Data shares data's
// Classes and has no evaluation rows (Federate evaluates on data's). It is
// an error, naming the field and its value, if n < 1, n exceeds the rows,
// or split does not fit the data; and, for "dirichlet", if 1,000 draws in
// a row leave some client without rows (α too small for n).
func NewClients(data *Classification, n int, split Split, seed int64) ([]*Client, error) {
	if data == nil || data.X == nil {
		return nil, fmt.Errorf("peft: NewClients: the data set has no training rows")
	}
	N, _ := data.X.Dims()
	if n < 1 || n > N {
		return nil, fmt.Errorf("peft: NewClients: n = %d; want 1 ≤ n ≤ %d, the training rows", n, N)
	}
	rng := rand.New(rand.NewSource(seed))
	var shards [][]int
	var err error
	switch split.Kind {
	case "iid", "":
		perm := rng.Perm(N)
		shards = make([][]int, n)
		for i := range shards {
			shards[i] = append([]int(nil), perm[i*N/n:(i+1)*N/n]...)
		}
	case "dirichlet":
		shards, err = dirichletShards(data, n, split.Alpha, rng)
	case "classes":
		shards, err = classShards(data, n, split.Classes, rng)
	default:
		return nil, fmt.Errorf("peft: NewClients: Split.Kind = %q; want \"iid\", \"dirichlet\" or \"classes\"", split.Kind)
	}
	if err != nil {
		return nil, err
	}
	clients := make([]*Client, n)
	for i, rows := range shards {
		sort.Ints(rows)
		_, d := data.X.Dims()
		x := mat.NewDense(len(rows), d, nil)
		ls := make([]int, len(rows))
		for r, j := range rows {
			x.SetRow(r, data.X.RawRowView(j))
			ls[r] = data.Labels[j]
		}
		clients[i] = &Client{ID: i, Rows: rows, source: data,
			Data: &Classification{X: x, Labels: ls, Classes: data.Classes}}
	}
	return clients, nil
}

// rowsByClass returns the training rows of each class present in data, in
// ascending class order, each list shuffled by rng.
func rowsByClass(data *Classification, rng *rand.Rand) (classes []int, rows [][]int) {
	by := map[int][]int{}
	for i, l := range data.Labels {
		by[l] = append(by[l], i)
	}
	for c := range by {
		classes = append(classes, c)
	}
	sort.Ints(classes)
	for _, c := range classes {
		r := by[c]
		rng.Shuffle(len(r), func(i, j int) { r[i], r[j] = r[j], r[i] })
		rows = append(rows, r)
	}
	return classes, rows
}

func dirichletShards(data *Classification, n int, alpha float64, rng *rand.Rand) ([][]int, error) {
	if !(alpha > 0) || math.IsInf(alpha, 0) {
		return nil, fmt.Errorf("peft: NewClients: Split.Alpha = %v; want a finite Dirichlet concentration α > 0", alpha)
	}
	_, rows := rowsByClass(data, rng)
	p := make([]float64, n)
	for attempt := 1; attempt <= 1000; attempt++ {
		shards := make([][]int, n)
		for _, r := range rows {
			sum := 0.0
			for i := range p {
				p[i] = gammaVariate(rng, alpha)
				sum += p[i]
			}
			// Cut the class's rows at the rounded cumulative proportions.
			cum, lo := 0.0, 0
			for i := range p {
				cum += p[i] / sum
				hi := int(math.Round(cum * float64(len(r))))
				if i == n-1 {
					hi = len(r)
				}
				hi = max(hi, lo)
				shards[i] = append(shards[i], r[lo:hi]...)
				lo = hi
			}
		}
		empty := false
		for _, s := range shards {
			empty = empty || len(s) == 0
		}
		if !empty {
			return shards, nil
		}
	}
	return nil, fmt.Errorf("peft: NewClients: Split.Alpha = %g leaves some of the %d clients without rows in 1000 draws; raise α or lower n", alpha, n)
}

func classShards(data *Classification, n, k int, rng *rand.Rand) ([][]int, error) {
	classes, rows := rowsByClass(data, rng)
	C := len(classes)
	switch {
	case k < 1 || k > C:
		return nil, fmt.Errorf("peft: NewClients: Split.Classes = %d; want 1 ≤ k ≤ %d, the classes in the data", k, C)
	case n*k < C:
		return nil, fmt.Errorf("peft: NewClients: Split.Classes = %d with n = %d clients covers %d of the %d classes; want n·k ≥ %d", k, n, n*k, C, C)
	}
	order := rng.Perm(C) // slot s holds the class of rows[order[s]]
	holders := make([][]int, C)
	for i := 0; i < n; i++ {
		for j := 0; j < k; j++ {
			c := order[(i*k+j)%C]
			holders[c] = append(holders[c], i)
		}
	}
	shards := make([][]int, n)
	for c, hs := range holders {
		r := rows[c]
		if len(hs) > len(r) {
			return nil, fmt.Errorf("peft: NewClients: Split.Classes = %d: class %d has %d rows for %d clients", k, classes[c], len(r), len(hs))
		}
		for h, i := range hs {
			shards[i] = append(shards[i], r[h*len(r)/len(hs):(h+1)*len(r)/len(hs)]...)
		}
	}
	return shards, nil
}

// gammaVariate draws from Gamma(a, 1) (Marsaglia and Tsang, 2000, "A
// simple method for generating gamma variables"), for a < 1 through
// Gamma(a+1)·U^{1/a}.
func gammaVariate(rng *rand.Rand, a float64) float64 {
	if a < 1 {
		return gammaVariate(rng, a+1) * math.Pow(rng.Float64(), 1/a)
	}
	d := a - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := rng.Float64()
		if math.Log(u) < 0.5*x*x+d-d*v+d*math.Log(v) {
			return d * v
		}
	}
}

// LabelSkew returns how far the clients' label distributions are from the
// pooled one: the mean over clients of the total variation distance
// ½·Σ_c |p_k(c) − p(c)|, where p_k is client k's class frequencies and p
// the frequencies of all clients' rows together. It is 0 when every client
// has the pooled mix and approaches 1 − k/C for k of C balanced classes per
// client.
func LabelSkew(clients []*Client) float64 {
	if len(clients) == 0 {
		return math.NaN()
	}
	C := clients[0].Data.Classes
	pooled := make([]float64, C)
	total := 0
	for _, c := range clients {
		for l, v := range c.ClassCounts() {
			pooled[l] += float64(v)
		}
		total += c.Size()
	}
	skew := 0.0
	for _, c := range clients {
		tv := 0.0
		for l, v := range c.ClassCounts() {
			tv += math.Abs(float64(v)/float64(c.Size()) - pooled[l]/float64(total))
		}
		skew += tv / 2
	}
	return skew / float64(len(clients))
}

// ClientUpdate is what one client sends the server at the end of a round.
type ClientUpdate struct {
	Client  int // the client's ID
	Samples int // its training rows n_k, FedAvg's weight
	// Delta is θ_k − θ_t, one matrix per trainable parameter in TrainableOf
	// order, as the server receives it (rounded to float32 when four bytes
	// are sent per value).
	Delta []*mat.Dense
	Loss  float64 // the client's mean training loss over its local steps
}

// Aggregator is the server's rule for combining a round's client updates:
// FedAvg, DP-LoRA's clipped and noised mean (peft/dplora), Fed-SB's mean of
// R (peft/fedsb).
type Aggregator interface {
	// Aggregate returns the change to add to each global parameter (shaped
	// as it) after round (from 1), given the parameters (holding the
	// global values θ_t) and the updates of the round's clients. It may
	// change the updates' matrices.
	Aggregate(round int, global []*Tensor, updates []ClientUpdate) ([]*mat.Dense, error)
}

// FedAvg is federated averaging (McMahan et al., 2017): the server adds
// the mean of the client updates, weighted by the clients' rows,
//
//	Δ = Σ_k n_k·Δ_k / Σ_k n_k
//
// or their plain mean when Uniform is set (as Fed-SB's and FedIT's
// reference code average).
type FedAvg struct {
	Uniform bool
}

// Aggregate returns the (weighted) mean of the updates.
func (a FedAvg) Aggregate(round int, global []*Tensor, updates []ClientUpdate) ([]*mat.Dense, error) {
	return MeanUpdate(global, updates, a.Uniform), nil
}

// MeanUpdate returns Σ_k w_k·Δ_k / Σ_k w_k for each parameter of global,
// with w_k = Samples (or 1 for all if uniform). It panics if an update's
// matrices do not match global's shapes.
func MeanUpdate(global []*Tensor, updates []ClientUpdate, uniform bool) []*mat.Dense {
	out := make([]*mat.Dense, len(global))
	for i, p := range global {
		r, c := p.Dims()
		out[i] = mat.NewDense(r, c, nil)
	}
	total := 0.0
	for _, u := range updates {
		if len(u.Delta) != len(global) {
			panic(ShapeError{Op: "MeanUpdate", Got: fmt.Sprintf("%d matrices from client %d", len(u.Delta), u.Client), Want: fmt.Sprintf("%d, one per parameter", len(global))})
		}
		w := 1.0
		if !uniform {
			w = float64(u.Samples)
		}
		total += w
		for i, d := range u.Delta {
			r, c := d.Dims()
			if pr, pc := global[i].Dims(); r != pr || c != pc {
				panic(ShapeError{Op: "MeanUpdate", Got: ShapeOf(r, c) + " from client " + fmt.Sprint(u.Client), Want: ShapeOf(pr, pc) + ", the shape of " + paramName(global[i])})
			}
			out[i].Apply(func(p, q int, v float64) float64 { return v + w*d.At(p, q) }, out[i])
		}
	}
	if total > 0 {
		for _, o := range out {
			o.Scale(1/total, o)
		}
	}
	return out
}

// FedConfig configures Federate.
type FedConfig struct {
	Rounds          int // communication rounds T, ≥ 1
	ClientsPerRound int // clients drawn each round without replacement; 0 means all
	// Local is each client's training in a round (Steps local steps of
	// BatchSize rows from its shard). Its Seed is offset by the round, so
	// every client of round t samples with Local.Seed + t (their shards
	// differ, so their batches do). Local.Optimizer must be nil: see
	// NewOptimizer. EvalEvery and Callback are not used.
	Local TrainConfig
	// NewOptimizer makes a client's optimizer for one round, so that no
	// optimizer state passes from client to client; nil means
	// NewAdamW(Local.WeightDecay).
	NewOptimizer func() Optimizer
	Aggregator   Aggregator // the server's rule; FedAvg{} if nil
	// BytesPerValue is the size of each number sent: 4 (float32, the
	// default when 0) or 8 (float64). With 4, the values really are
	// rounded to float32 on the way, both ways.
	BytesPerValue int
	Eval          Dataset // evaluated after every round; nil means the clients' source data
	Seed          int64   // seeds the selection of clients
	Name          string  // the history's label
	// Callback is called after every round with the history so far.
	Callback func(round int, h *FedHistory)
}

func (cfg FedConfig) check(nClients int) error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("peft: FedConfig.%s = %v; want %s", field, v, want)
	}
	switch {
	case cfg.Rounds < 1:
		return bad("Rounds", cfg.Rounds, "≥ 1")
	case cfg.ClientsPerRound < 0 || cfg.ClientsPerRound > nClients:
		return bad("ClientsPerRound", cfg.ClientsPerRound, fmt.Sprintf("in [0, %d clients] (0: all)", nClients))
	case cfg.BytesPerValue != 0 && cfg.BytesPerValue != 4 && cfg.BytesPerValue != 8:
		return bad("BytesPerValue", cfg.BytesPerValue, "4 (float32, the default) or 8 (float64)")
	case cfg.Local.Optimizer != nil:
		return bad("Local.Optimizer", fmt.Sprintf("%T", cfg.Local.Optimizer), "nil: set NewOptimizer, so that each client gets a fresh state")
	}
	if err := cfg.Local.check(); err != nil {
		return fmt.Errorf("peft: FedConfig.Local: %w", err)
	}
	return nil
}

// FedHistory is what a federated run recorded, round by round; index 0 is
// the model before the first round.
type FedHistory struct {
	Name       string
	Rounds     []int     // 0, 1, …, T
	Selected   [][]int   // IDs of the clients trained in each round (nil at 0)
	TrainLoss  []float64 // the round's clients' mean local loss, weighted by n_k (NaN at 0)
	EvalLoss   []float64 // evaluation loss of the global model after each round
	EvalMetric []float64 // evaluation metric (accuracy, …), NaN if the model has none
	MetricName string
	UpBytes    []int64 // cumulative bytes the clients sent the server
	DownBytes  []int64 // cumulative bytes the server sent the clients
	// Values is the count of numbers one client receives (θ_t) and sends
	// back (Δ_k) each round: the size of the trainable parameters.
	Values        int
	BytesPerValue int
	Time          []float64 // wall time of each round, seconds
}

// Bytes returns the cumulative traffic both ways after each round.
func (h *FedHistory) Bytes() []int64 {
	out := make([]int64, len(h.UpBytes))
	for i := range out {
		out[i] = h.UpBytes[i] + h.DownBytes[i]
	}
	return out
}

// Final returns the evaluation metric after the last round.
func (h *FedHistory) Final() float64 { return h.EvalMetric[len(h.EvalMetric)-1] }

// Federate trains m's trainable parameters θ (TrainableOf) by federated
// rounds over clients and returns what it recorded: each round, the server
// draws ClientsPerRound clients (seeded by cfg.Seed) and sends each the
// global θ_t; each trains locally with Train(ctx, m, client.Data, Local)
// from θ_t and sends back Δ_k = θ_k − θ_t; the server adds
// cfg.Aggregator's combination of the Δ_k. Clients train one after another
// on m itself, each with a fresh optimizer; the parameters that are not
// trainable (the frozen base, LoRA-SB's B and A) are shared by all, as
// they would be by construction. Each round counts Values·BytesPerValue
// bytes per selected client down and the same up; after each round the
// global model is evaluated on cfg.Eval.
//
// On return m holds the last global θ. When ctx is cancelled, or a
// client's training or the aggregation fails, Federate restores the global
// θ of the last finished round and returns the history so far with an
// error naming the round (and client). The same model, clients, config and
// seeds give the same history and weights.
func Federate(ctx context.Context, m Model, clients []*Client, cfg FedConfig) (*FedHistory, error) {
	if len(clients) == 0 {
		return nil, fmt.Errorf("peft: Federate: no clients")
	}
	if err := cfg.check(len(clients)); err != nil {
		return nil, err
	}
	for i, c := range clients {
		if c == nil || c.Data == nil || c.Data.X == nil || len(c.Data.Labels) == 0 {
			return nil, fmt.Errorf("peft: Federate: client %d has no training rows", i)
		}
	}
	params := TrainableOf(m)
	if len(params) == 0 {
		return nil, fmt.Errorf("peft: Federate: the model has no trainable parameter")
	}
	agg := cfg.Aggregator
	if agg == nil {
		agg = FedAvg{}
	}
	bpv := cfg.BytesPerValue
	if bpv == 0 {
		bpv = 4
	}
	perRound := cfg.ClientsPerRound
	if perRound == 0 {
		perRound = len(clients)
	}
	newOpt := cfg.NewOptimizer
	if newOpt == nil {
		newOpt = func() Optimizer { return NewAdamW(cfg.Local.WeightDecay) }
	}
	eval := cfg.Eval
	if eval == nil && clients[0].source != nil {
		eval = clients[0].source
	}

	global := make([]*mat.Dense, len(params))
	values := 0
	for i, p := range params {
		global[i] = mat.DenseCopyOf(p.Value)
		r, c := p.Dims()
		values += r * c
	}
	setParams := func(src []*mat.Dense) {
		for i, p := range params {
			p.Value.Copy(src[i])
		}
	}
	h := &FedHistory{Name: cfg.Name, Values: values, BytesPerValue: bpv}
	if mm, ok := m.(Metricer); ok {
		h.MetricName = mm.MetricName()
	}
	evaluate := func() (float64, float64, error) {
		if eval == nil {
			return math.NaN(), math.NaN(), nil
		}
		m.SetTraining(false)
		return Evaluate(ctx, m, eval)
	}
	record := func(round int, sel []int, loss float64, up, down int64, secs float64) error {
		el, em, err := evaluate()
		if err != nil {
			return err
		}
		h.Rounds = append(h.Rounds, round)
		h.Selected = append(h.Selected, sel)
		h.TrainLoss = append(h.TrainLoss, loss)
		h.EvalLoss = append(h.EvalLoss, el)
		h.EvalMetric = append(h.EvalMetric, em)
		h.UpBytes = append(h.UpBytes, up)
		h.DownBytes = append(h.DownBytes, down)
		h.Time = append(h.Time, secs)
		return nil
	}
	if err := record(0, nil, math.NaN(), 0, 0, 0); err != nil {
		return nil, fmt.Errorf("peft: Federate %sstopped evaluating the initial model: %w", label(cfg.Name), err)
	}
	rng := rand.New(rand.NewSource(cfg.Seed))
	var up, down int64
	perClient := int64(values) * int64(bpv)
	for round := 1; round <= cfg.Rounds; round++ {
		start := time.Now()
		sel := rng.Perm(len(clients))[:perRound]
		sort.Ints(sel)
		ids := make([]int, len(sel))
		updates := make([]ClientUpdate, 0, len(sel))
		lossSum, rows := 0.0, 0
		for j, ci := range sel {
			c := clients[ci]
			ids[j] = c.ID
			if err := ctx.Err(); err != nil {
				setParams(global)
				return h, fmt.Errorf("peft: Federate %sstopped in round %d before client %d: %w", label(cfg.Name), round, c.ID, err)
			}
			// Down: the client receives θ_t in the dtype sent.
			received := make([]*mat.Dense, len(global))
			for i, g := range global {
				received[i] = roundedCopy(g, bpv)
			}
			setParams(received)
			local := cfg.Local
			local.Seed += int64(round)
			local.Optimizer = newOpt()
			local.EvalEvery, local.Callback = 0, nil
			lh, err := Train(ctx, m, c.Data, local)
			if err != nil {
				setParams(global)
				return h, fmt.Errorf("peft: Federate %sround %d, client %d: %w", label(cfg.Name), round, c.ID, err)
			}
			// Up: the client sends Δ_k = θ_k − θ_t in the dtype sent.
			delta := make([]*mat.Dense, len(params))
			for i, p := range params {
				var d mat.Dense
				d.Sub(p.Value, received[i])
				delta[i] = roundedCopy(&d, bpv)
			}
			loss := fedMean(lh.Loss)
			lossSum += loss * float64(c.Size())
			rows += c.Size()
			updates = append(updates, ClientUpdate{Client: c.ID, Samples: c.Size(), Delta: delta, Loss: loss})
		}
		down += int64(len(sel)) * perClient
		up += int64(len(sel)) * perClient
		setParams(global)
		var step []*mat.Dense
		var aerr error
		err := Maybe(func() { step, aerr = agg.Aggregate(round, params, updates) })
		if err == nil {
			err = aerr
		}
		if err == nil {
			err = checkFedStep(params, step)
		}
		if err != nil {
			return h, fmt.Errorf("peft: Federate %sround %d: aggregation: %w", label(cfg.Name), round, err)
		}
		for i, g := range global {
			g.Add(g, step[i])
		}
		setParams(global)
		if err := record(round, ids, lossSum/float64(rows), up, down, time.Since(start).Seconds()); err != nil {
			return h, fmt.Errorf("peft: Federate %sstopped evaluating after round %d: %w", label(cfg.Name), round, err)
		}
		if cfg.Callback != nil {
			cfg.Callback(round, h)
		}
	}
	return h, nil
}

// checkFedStep returns an error if an aggregator's step does not match the
// parameters or holds a NaN or an infinity.
func checkFedStep(params []*Tensor, step []*mat.Dense) error {
	if len(step) != len(params) {
		return fmt.Errorf("%d matrices for %d parameters", len(step), len(params))
	}
	for i, s := range step {
		r, c := s.Dims()
		if pr, pc := params[i].Dims(); r != pr || c != pc {
			return fmt.Errorf("the step of %s is %s, want %s", paramName(params[i]), ShapeOf(r, c), ShapeOf(pr, pc))
		}
		for j, v := range vals(s) {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("the step of %s is %v at element %d", paramName(params[i]), v, j)
			}
		}
	}
	return nil
}

// roundedCopy returns a copy of m as sent with bytesPerValue bytes per
// number: rounded to float32 for 4, exact for 8.
func roundedCopy(m *mat.Dense, bytesPerValue int) *mat.Dense {
	c := mat.DenseCopyOf(m)
	if bytesPerValue == 4 {
		c.Apply(func(_, _ int, v float64) float64 { return float64(float32(v)) }, c)
	}
	return c
}

func fedMean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}
