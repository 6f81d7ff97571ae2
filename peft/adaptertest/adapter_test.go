package adaptertest

import (
	"math/rand"
	"strconv"
	"strings"
	"testing"

	"github.com/gopeft/gopeft/peft"
	"gonum.org/v1/gonum/mat"
)

// fault is one way a test adapter breaks a property the suite checks.
type fault int

const (
	none        fault = iota
	badGradient       // the backward pass misses the path through A
	badMerge          // the merged weight ignores the update
	nonzeroInit       // B is random at init
	acceptsBad        // no argument checks
	wrongRank         // Rank reports r + 1
)

// faulty returns a Case whose adapter is low-rank, h = base + x·Aᵀ·Bᵀ,
// written as a CustomAdapter and broken as f says.
func faulty(f fault) Case {
	return Case{
		ZeroAtInit: true,
		NoAlpha:    true,
		NoFile:     true,
		Add: func(m peft.Model, o Options) ([]peft.Adapter, error) {
			rng := rand.New(rand.NewSource(o.Seed))
			return peft.AddAdapter(m, "default", o.Targets, func(l *peft.Linear) (peft.Adapter, error) {
				d, k := l.W.Dims()
				if f != acceptsBad && (o.R < 1 || o.R > min(d, k)) {
					return nil, &peft.ArgError{Op: "faulty on " + l.Name, Msg: "rank r = " + strconv.Itoa(o.R)}
				}
				r := max(o.R, 1)
				a := peft.NewParam(l.Name+".A", RandDense(rng, r, k))
				b := peft.NewParam(l.Name+".B", mat.NewDense(d, r, nil))
				if f == nonzeroInit {
					b.Value.Copy(RandDense(rng, d, r))
				}
				ca := &peft.CustomAdapter{Tensors: []*peft.Tensor{a, b}, R: r}
				if f == wrongRank {
					ca.R = r + 1
				}
				ca.ForwardFunc = func(l *peft.Linear, x, base *peft.Tensor) *peft.Tensor {
					xa := peft.MatMulT(x, a)
					if f == badGradient {
						xa = peft.Add(peft.Detach(xa), peft.Scale(xa, 0.5)) // value right, gradient halved
						xa = peft.Sub(xa, peft.Scale(peft.Detach(xa), 0.5/1.5))
					}
					return peft.Add(base, peft.MatMulT(xa, b))
				}
				if f == badMerge {
					ca.MergeFunc = func(w0 *mat.Dense) *mat.Dense { return mat.DenseCopyOf(w0) }
				}
				return ca, nil
			})
		},
	}
}

// TestSuiteCatchesFaults: each check passes a correct adapter and fails
// the adapter broken in the way it guards against.
func TestSuiteCatchesFaults(t *testing.T) {
	good := faulty(none)
	good.GradTol = 1e-6
	for name, err := range map[string]error{
		"gradients": checkGradients(good), "init": checkInitAndDisable(good), "merge": checkMerge(good),
		"rank": checkRank(good), "bad config": checkBadConfig(good),
	} {
		if err != nil {
			t.Errorf("correct adapter fails %s: %v", name, err)
		}
	}
	for _, c := range []struct {
		f     fault
		check func(Case) error
		want  string
	}{
		{badGradient, checkGradients, "gradient off"},
		{badMerge, checkMerge, "merged output differs"},
		{nonzeroInit, checkInitAndDisable, "output at init differs"},
		{acceptsBad, checkBadConfig, "no error"},
		{wrongRank, checkRank, "Rank() = 3"},
	} {
		cs := faulty(c.f)
		cs.GradTol = 1e-6
		err := c.check(cs)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("fault %d: got %v, want an error containing %q", c.f, err, c.want)
		}
	}
	// An adapter with no registered format cannot be saved.
	if err := checkSaveLoad(good, t.TempDir()); err == nil || !strings.Contains(err.Error(), "no registered file format") {
		t.Errorf("saving a CustomAdapter: %v", err)
	}
}
