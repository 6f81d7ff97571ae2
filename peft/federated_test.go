package peft_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/peft/lora"
	"gonum.org/v1/gonum/mat"
)

// fedDigits returns the ten-digit split matching the shipped MLP's.
func fedDigits() *peft.Classification {
	return peft.DigitsData(peft.DigitsEvalFrac, peft.DigitsSeed)
}

// fedLoRAMLP returns the shipped digits MLP with LoRA (r = 4) on fc1 and fc2.
func fedLoRAMLP(t *testing.T) *peft.MLP {
	t.Helper()
	m, err := peft.LoadDigitsMLP()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lora.Add(m, lora.Config{R: 4, Targets: []string{"fc1", "fc2"}, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestNewClientsPartition(t *testing.T) {
	data := fedDigits()
	N, _ := data.X.Dims()
	for _, split := range []peft.Split{peft.IIDSplit(), peft.DirichletSplit(0.3), peft.DirichletSplit(100), peft.ClassSplit(2), peft.ClassSplit(10)} {
		clients, err := peft.NewClients(data, 10, split, 7)
		if err != nil {
			t.Fatalf("%v: %v", split, err)
		}
		seen := make([]int, N)
		for _, c := range clients {
			if c.Size() == 0 {
				t.Errorf("%v: client %d is empty", split, c.ID)
			}
			for r, j := range c.Rows {
				seen[j]++
				if c.Data.Labels[r] != data.Labels[j] || !mat.Equal(c.Data.X.RowView(r), data.X.RowView(j)) {
					t.Fatalf("%v: client %d row %d is not source row %d", split, c.ID, r, j)
				}
			}
		}
		for j, s := range seen {
			if s != 1 {
				t.Fatalf("%v: row %d is held by %d clients, want exactly 1", split, j, s)
			}
		}
	}
}

func TestNewClientsSkew(t *testing.T) {
	data := fedDigits()
	skew := func(split peft.Split) float64 {
		clients, err := peft.NewClients(data, 10, split, 3)
		if err != nil {
			t.Fatal(err)
		}
		return peft.LabelSkew(clients)
	}
	// IID shards of ~135 rows keep a sampling skew near 0.1.
	// Known answer: ClassSplit(k) gives each client exactly k distinct
	// classes, and with the digits' near-balanced classes a skew near
	// 1 − k/C.
	for _, k := range []int{1, 2, 5} {
		clients, err := peft.NewClients(data, 10, peft.ClassSplit(k), 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range clients {
			distinct := 0
			for _, n := range c.ClassCounts() {
				if n > 0 {
					distinct++
				}
			}
			if distinct != k {
				t.Errorf("ClassSplit(%d): client %d holds %d classes %v", k, c.ID, distinct, c.ClassCounts())
			}
		}
		got, want := peft.LabelSkew(clients), 1-float64(k)/10
		t.Logf("ClassSplit(%d): skew %.4f (1 − k/C = %.2f)", k, got, want)
		if math.Abs(got-want) > 0.03 {
			t.Errorf("ClassSplit(%d): skew %.4f, want ≈ %.2f", k, got, want)
		}
	}
	iid, d01, d100 := skew(peft.IIDSplit()), skew(peft.DirichletSplit(0.1)), skew(peft.DirichletSplit(100))
	t.Logf("skew: IID %.4f, Dirichlet(0.1) %.4f, Dirichlet(100) %.4f", iid, d01, d100)
	if iid > 0.15 || d100 > 0.1 || d01 < 0.4 || d01 < 4*d100 {
		t.Errorf("skew: IID %.4f, Dirichlet(0.1) %.4f, Dirichlet(100) %.4f; want IID and α = 100 small, α = 0.1 large", iid, d01, d100)
	}
}

func TestNewClientsDeterministic(t *testing.T) {
	data := fedDigits()
	for _, split := range []peft.Split{peft.IIDSplit(), peft.DirichletSplit(0.5), peft.ClassSplit(3)} {
		a, _ := peft.NewClients(data, 6, split, 11)
		b, _ := peft.NewClients(data, 6, split, 11)
		c, _ := peft.NewClients(data, 6, split, 12)
		same, differs := true, false
		for i := range a {
			same = same && reflect.DeepEqual(a[i].Rows, b[i].Rows)
			differs = differs || !reflect.DeepEqual(a[i].Rows, c[i].Rows)
		}
		if !same || !differs {
			t.Errorf("%v: same seed same rows %v, other seed other rows %v; want both", split, same, differs)
		}
	}
}

func TestNewClientsErrors(t *testing.T) {
	data := fedDigits()
	for _, tc := range []struct {
		n     int
		split peft.Split
		want  string
	}{
		{0, peft.IIDSplit(), "n = 0"},
		{5000, peft.IIDSplit(), "n = 5000"},
		{5, peft.DirichletSplit(0), "Split.Alpha = 0"},
		{5, peft.DirichletSplit(math.NaN()), "Split.Alpha = NaN"},
		{5, peft.ClassSplit(11), "Split.Classes = 11"},
		{5, peft.ClassSplit(1), "Split.Classes = 1 with n = 5"},
		{5, peft.Split{Kind: "shards"}, `Split.Kind = "shards"`},
	} {
		_, err := peft.NewClients(data, tc.n, tc.split, 1)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewClients(n=%d, %v): error %v, want one naming %q", tc.n, tc.split, err, tc.want)
		}
	}
}

func fedValues(m peft.Model) []*mat.Dense {
	var out []*mat.Dense
	for _, p := range peft.TrainableOf(m) {
		out = append(out, mat.DenseCopyOf(p.Value))
	}
	return out
}

func fedMaxDiff(a, b []*mat.Dense) float64 {
	worst := 0.0
	for i := range a {
		var d mat.Dense
		d.Sub(a[i], b[i])
		worst = math.Max(worst, mat.Norm(&d, math.Inf(1)))
	}
	return worst
}

// Known answer: K clients holding the same rows all train exactly as one
// centralized run from the same start, so FedAvg of K identical updates is
// that run's update, round after round.
func TestFederateIdenticalClientsIsCentral(t *testing.T) {
	data := fedDigits()
	one, err := peft.NewClients(data, 5, peft.IIDSplit(), 1)
	if err != nil {
		t.Fatal(err)
	}
	shard := one[0].Data
	clients := []*peft.Client{{ID: 0, Data: shard}, {ID: 1, Data: shard}, {ID: 2, Data: shard}}
	local := peft.TrainConfig{Steps: 5, BatchSize: 16, LR: 5e-3, Seed: 4}
	const rounds = 3

	fed := fedLoRAMLP(t)
	if _, err := peft.Federate(context.Background(), fed, clients, peft.FedConfig{Rounds: rounds, Local: local, BytesPerValue: 8, Eval: data}); err != nil {
		t.Fatal(err)
	}
	central := fedLoRAMLP(t)
	for r := 1; r <= rounds; r++ {
		cfg := local
		cfg.Seed += int64(r)
		if _, err := peft.Train(context.Background(), central, shard, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if d := fedMaxDiff(fedValues(fed), fedValues(central)); d > 1e-12 {
		t.Errorf("FedAvg of identical clients differs from centralized training by %.3g", d)
	}
}

// Known answer: with one local step of plain SGD on the whole shard and
// equal shards, FedAvg is one full-batch gradient step on the pooled data
// (FedSGD): the mean of the clients' mean gradients is the pooled mean.
func TestFederateOneStepIsFullBatchGD(t *testing.T) {
	data := fedDigits()
	N, _ := data.X.Dims()
	const n = 4
	if N%n != 0 {
		t.Fatalf("%d rows do not split in %d equal shards", N, n)
	}
	clients, err := peft.NewClients(data, n, peft.IIDSplit(), 2) // equal shards
	if err != nil {
		t.Fatal(err)
	}
	sgd := func() peft.Optimizer { return &peft.SGD{} }
	local := peft.TrainConfig{Steps: 1, BatchSize: N / n, LR: 0.5, Schedule: "constant"}
	fed := fedLoRAMLP(t)
	if _, err := peft.Federate(context.Background(), fed, clients, peft.FedConfig{Rounds: 1, Local: local, NewOptimizer: sgd, BytesPerValue: 8}); err != nil {
		t.Fatal(err)
	}
	central := fedLoRAMLP(t)
	full := local
	full.BatchSize, full.Optimizer = N, &peft.SGD{}
	if _, err := peft.Train(context.Background(), central, data, full); err != nil {
		t.Fatal(err)
	}
	start := fedValues(fedLoRAMLP(t))
	moved := fedMaxDiff(fedValues(central), start)
	if d := fedMaxDiff(fedValues(fed), fedValues(central)); d > 1e-12*math.Max(1, moved) || moved < 1e-3 {
		t.Errorf("FedSGD differs from full-batch GD by %.3g (the step moved θ by %.3g)", d, moved)
	}
}

// fedRecorder is an Aggregator that keeps the updates it receives.
type fedRecorder struct {
	peft.FedAvg
	got [][]peft.ClientUpdate
}

func (r *fedRecorder) Aggregate(round int, global []*peft.Tensor, ups []peft.ClientUpdate) ([]*mat.Dense, error) {
	r.got = append(r.got, ups)
	return r.FedAvg.Aggregate(round, global, ups)
}

func TestFederateBytes(t *testing.T) {
	data := fedDigits()
	clients, err := peft.NewClients(data, 8, peft.DirichletSplit(0.5), 5)
	if err != nil {
		t.Fatal(err)
	}
	const rounds, per, r = 3, 3, 4
	// LoRA r = 4 on fc1 (64×64) and fc2 (10×64): r(d+k) values each.
	values := r*(64+64) + r*(10+64)
	for _, bpv := range []int{4, 8} {
		rec := &fedRecorder{}
		m := fedLoRAMLP(t)
		h, err := peft.Federate(context.Background(), m, clients, peft.FedConfig{Rounds: rounds, ClientsPerRound: per,
			Local: peft.TrainConfig{Steps: 2, BatchSize: 8, LR: 1e-2}, Aggregator: rec, BytesPerValue: bpv, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		if h.Values != values {
			t.Errorf("Values = %d, want %d", h.Values, values)
		}
		for i, round := range h.Rounds {
			want := int64(round * per * values * bpv)
			if h.UpBytes[i] != want || h.DownBytes[i] != want || h.Bytes()[i] != 2*want {
				t.Errorf("%d bytes/value, round %d: up %d, down %d, want %d each", bpv, round, h.UpBytes[i], h.DownBytes[i], want)
			}
		}
		// What is counted as float32 is float32.
		exact := true
		for _, ups := range rec.got {
			if len(ups) != per {
				t.Errorf("%d updates in a round, want %d", len(ups), per)
			}
			for _, u := range ups {
				for _, d := range u.Delta {
					for _, v := range d.RawMatrix().Data {
						exact = exact && float64(float32(v)) == v
					}
				}
			}
		}
		if exact != (bpv == 4) {
			t.Errorf("%d bytes/value: updates all float32-representable = %v", bpv, exact)
		}
	}
}

func TestFederateDeterministicAndLearns(t *testing.T) {
	data := fedDigits()
	clients, err := peft.NewClients(data, 6, peft.DirichletSplit(0.5), 9)
	if err != nil {
		t.Fatal(err)
	}
	cfg := peft.FedConfig{Rounds: 6, ClientsPerRound: 3, Local: peft.TrainConfig{Steps: 20, BatchSize: 16, LR: 2e-2}, Seed: 3, Name: "FedAvg"}
	run := func() (*peft.FedHistory, []*mat.Dense) {
		m := fedLoRAMLP(t)
		h, err := peft.Federate(context.Background(), m, clients, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return h, fedValues(m)
	}
	h1, p1 := run()
	h2, p2 := run()
	h1.Time, h2.Time = nil, nil
	h1.TrainLoss[0], h2.TrainLoss[0] = 0, 0 // NaN ≠ NaN
	if !reflect.DeepEqual(h1, h2) || fedMaxDiff(p1, p2) != 0 {
		t.Error("two runs with the same seeds differ")
	}
	t.Logf("accuracy %.4f → %.4f over %d rounds, %d bytes", h1.EvalMetric[0], h1.Final(), cfg.Rounds, h1.Bytes()[cfg.Rounds])
	if h1.Final() < h1.EvalMetric[0]+0.15 {
		t.Errorf("accuracy %.4f → %.4f: federated LoRA did not learn the new digits", h1.EvalMetric[0], h1.Final())
	}
}

func TestFederateCancel(t *testing.T) {
	data := fedDigits()
	clients, _ := peft.NewClients(data, 4, peft.IIDSplit(), 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := fedLoRAMLP(t)
	var after1 []*mat.Dense
	h, err := peft.Federate(ctx, m, clients, peft.FedConfig{Rounds: 3, Local: peft.TrainConfig{Steps: 2, BatchSize: 8, LR: 1e-2},
		Callback: func(round int, h *peft.FedHistory) {
			if round == 1 {
				after1 = fedValues(m)
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) || len(h.Rounds) != 2 {
		t.Fatalf("err %v after %d records; want context.Canceled after rounds 0 and 1", err, len(h.Rounds))
	}
	if d := fedMaxDiff(fedValues(m), after1); d != 0 {
		t.Errorf("after cancelling, θ differs from round 1's by %.3g", d)
	}
}

func TestFedConfigErrors(t *testing.T) {
	data := fedDigits()
	clients, _ := peft.NewClients(data, 4, peft.IIDSplit(), 1)
	local := peft.TrainConfig{Steps: 1, BatchSize: 4, LR: 1e-2}
	for _, tc := range []struct {
		cfg  peft.FedConfig
		want string
	}{
		{peft.FedConfig{Local: local}, "Rounds = 0"},
		{peft.FedConfig{Rounds: 1, ClientsPerRound: 5, Local: local}, "ClientsPerRound = 5"},
		{peft.FedConfig{Rounds: 1, BytesPerValue: 2, Local: local}, "BytesPerValue = 2"},
		{peft.FedConfig{Rounds: 1, Local: peft.TrainConfig{Steps: 1, BatchSize: 4, LR: 1e-2, Optimizer: &peft.SGD{}}}, "Local.Optimizer"},
		{peft.FedConfig{Rounds: 1}, "Local: peft: TrainConfig.Steps = 0"},
	} {
		_, err := peft.Federate(context.Background(), fedLoRAMLP(t), clients, tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want one naming %q", err, tc.want)
		}
	}
}

// ExampleNewClients splits the digits' training rows among 10 clients
// three ways and measures how far each client's labels are from the mix
// of all (LabelSkew: 0 for the same mix, 1 − k/C for k of C classes).
func ExampleNewClients() {
	data := peft.DigitsData(peft.DigitsEvalFrac, peft.DigitsSeed)
	for _, split := range []peft.Split{peft.IIDSplit(), peft.DirichletSplit(0.1), peft.ClassSplit(2)} {
		clients, err := peft.NewClients(data, 10, split, 1)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%-24s client 0: %d rows, classes %v; skew %.2f\n", split, clients[0].Size(), clients[0].ClassCounts(), peft.LabelSkew(clients))
	}
	// Output:
	// iid                      client 0: 134 rows, classes [8 21 15 8 10 12 16 18 15 11]; skew 0.11
	// dirichlet(α=0.1)         client 0: 270 rows, classes [2 0 15 6 124 101 0 22 0 0]; skew 0.68
	// 2 classes per client     client 0: 135 rows, classes [0 68 0 0 0 0 0 0 0 67]; skew 0.80
}

// ExampleFederate adapts the shipped digits MLP (pretrained on 0–4) to all
// ten digits with LoRA over 8 clients holding 3 classes each, 4 of them a
// round, counting the bytes sent as float32. So skewed a split learns
// slowly: FedAvg's clients pull the shared adapter toward their own classes.
func ExampleFederate() {
	data := peft.DigitsData(peft.DigitsEvalFrac, peft.DigitsSeed)
	clients, err := peft.NewClients(data, 8, peft.ClassSplit(3), 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	m, _ := peft.LoadDigitsMLP()
	if _, err := lora.Add(m, lora.Config{R: 4, Targets: []string{"fc1", "fc2"}, Seed: 1}); err != nil {
		fmt.Println(err)
		return
	}
	h, err := peft.Federate(context.Background(), m, clients, peft.FedConfig{Rounds: 10, ClientsPerRound: 4,
		Local: peft.TrainConfig{Steps: 20, BatchSize: 16, LR: 0.03}, Seed: 1, Name: "FedAvg-LoRA"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d numbers each way per client per round; %d bytes in all\n", h.Values, h.Bytes()[10])
	fmt.Printf("accuracy %.2f → %.2f\n", h.EvalMetric[0], h.Final())
	// Output:
	// 808 numbers each way per client per round; 258560 bytes in all
	// accuracy 0.47 → 0.52
}
