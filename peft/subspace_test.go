package peft

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func TestSubspaceSimilarityKnown(t *testing.T) {
	// u = [e1 e2 e3], v = [e1 e4 (e2+e3)/√2] in ℝ⁵.
	u := mat.NewDense(5, 3, []float64{1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	r := 1 / math.Sqrt2
	v := mat.NewDense(5, 3, []float64{1, 0, 0, 0, 0, r, 0, 0, r, 0, 1, 0, 0, 0, 0})
	phi, err := SubspaceSimilarityBases(u, v)
	if err != nil {
		t.Fatal(err)
	}
	// ‖U_iᵀV_j‖²_F by hand, divided by min(i, j).
	want := [3][3]float64{
		{1, 1, 1},
		{1, 0.5, (1 + 0.5) / 2},
		{1, 0.5, (1 + 0.5 + 0.5) / 3},
	}
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			if math.Abs(phi.At(i, j)-want[i][j]) > 1e-15 {
				t.Errorf("φ(%d,%d) = %v, want %v", i+1, j+1, phi.At(i, j), want[i][j])
			}
		}
	}
	th, err := PrincipalAnglesBases(u, v)
	if err != nil {
		t.Fatal(err)
	}
	// span(v) ∩ span(u) = span(e1, (e2+e3)/√2); the third v is e4 ⟂ u.
	wantTh := []float64{0, 0, math.Pi / 2}
	for i := range wantTh {
		if math.Abs(th[i]-wantTh[i]) > 1e-7 {
			t.Errorf("θ_%d = %v, want %v", i+1, th[i], wantTh[i])
		}
	}
}

func TestSubspaceSimilarityOfMatrices(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	ctx := context.Background()
	a := withSpectrum(rng, 20, 12, []float64{8, 6, 4, 2, 1})
	// φ of a matrix with itself is 1 everywhere (nested subspaces).
	phi, err := SubspaceSimilarity(ctx, a, a, Right, 5, 4)
	if err != nil {
		t.Fatal(err)
	}
	if r, c := phi.Dims(); r != 5 || c != 4 {
		t.Fatalf("φ is %d×%d, want 5×4", r, c)
	}
	for i := 0; i < 5; i++ {
		for j := 0; j < 4; j++ {
			if math.Abs(phi.At(i, j)-1) > 1e-10 {
				t.Errorf("φ(a, a, %d, %d) = %v, want 1", i+1, j+1, phi.At(i, j))
			}
		}
	}
	// Rotated principal angles: b's top-2 left vectors are a's rotated by
	// known angles into fresh orthogonal directions.
	q := orthonormal(rng, 20, 4) // q1, q2 span a's top space; q3, q4 fresh
	angles := []float64{0.3, 1.1}
	ua := mat.NewDense(20, 2, nil)
	ub := mat.NewDense(20, 2, nil)
	for k, th := range angles {
		for i := 0; i < 20; i++ {
			ua.Set(i, k, q.At(i, k))
			ub.Set(i, k, math.Cos(th)*q.At(i, k)+math.Sin(th)*q.At(i, k+2))
		}
	}
	var ta, tb, ma, mb mat.Dense // rank-2 matrices with those left vectors
	g := orthonormal(rng, 9, 2)
	ta.Mul(ua, mat.NewDense(2, 2, []float64{5, 0, 0, 3}))
	ma.Mul(&ta, g.T())
	tb.Mul(ub, mat.NewDense(2, 2, []float64{4, 0, 0, 1}))
	mb.Mul(&tb, g.T())
	th, err := PrincipalAngles(ctx, &ma, &mb, Left, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range angles {
		if math.Abs(th[i]-w) > 1e-8 {
			t.Errorf("θ_%d = %v, want %v", i+1, th[i], w)
		}
	}
	// φ(2,2) = (cos²0.3 + cos²1.1)/2.
	phi, err = SubspaceSimilarity(ctx, &ma, &mb, Left, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if w := (math.Pow(math.Cos(0.3), 2) + math.Pow(math.Cos(1.1), 2)) / 2; math.Abs(phi.At(1, 1)-w) > 1e-10 {
		t.Errorf("φ(2,2) = %v, want %v", phi.At(1, 1), w)
	}
}

func TestAmplification(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	ctx := context.Background()
	const d, k = 10, 8
	u, v := orthonormal(rng, d, k), orthonormal(rng, k, k)
	// W = Σ s_i u_i v_iᵀ; ΔW = 6·u_3 v_3ᵀ + 2·u_5 v_5ᵀ amplifies W's 3rd
	// and 5th directions. U_rᵀ W V_r = diag(s_3, s_5) up to signs, so the
	// factor is ‖ΔW‖_F / √(s_3² + s_5²) = √40 / √(0.25 + 0.01).
	s := []float64{10, 5, 0.5, 0.3, 0.1, 0.05, 0.02, 0.01}
	w, dw := mat.NewDense(d, k, nil), mat.NewDense(d, k, nil)
	for i := 0; i < d; i++ {
		for j := 0; j < k; j++ {
			var x float64
			for l := range s {
				x += s[l] * u.At(i, l) * v.At(j, l)
			}
			w.Set(i, j, x)
			dw.Set(i, j, 6*u.At(i, 2)*v.At(j, 2)+2*u.At(i, 4)*v.At(j, 4))
		}
	}
	got, err := Amplification(ctx, w, dw, 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := math.Sqrt(40) / math.Sqrt(0.26); math.Abs(got-want) > 1e-9*want {
		t.Errorf("Amplification = %v, want %v", got, want)
	}
	// Errors: shape, rank, NaN, orthogonal W.
	if _, err := Amplification(ctx, w, mat.NewDense(d, k+1, nil), 2); err == nil || !strings.Contains(err.Error(), "differ in shape") {
		t.Errorf("shape: %v", err)
	}
	if _, err := Amplification(ctx, w, dw, -1); err == nil || !strings.Contains(err.Error(), "rank -1") {
		t.Errorf("rank: %v", err)
	}
	bad := mat.DenseCopyOf(w)
	bad.Set(3, 4, math.Inf(1))
	if _, err := Amplification(ctx, bad, dw, 2); err == nil || !strings.Contains(err.Error(), "W (10×8) has +Inf at (3, 4)") {
		t.Errorf("Inf: %v", err)
	}
}

func TestUpdateSparsity(t *testing.T) {
	dw := mat.NewDense(2, 4, []float64{0, 1e-9, -1e-3, 0.5, 0, 0, 2, -1e-10})
	for _, c := range []struct{ tol, want float64 }{{0, 3.0 / 8}, {1e-8, 5.0 / 8}, {1e-2, 6.0 / 8}, {1, 7.0 / 8}} {
		got, err := UpdateSparsity(dw, c.tol)
		if err != nil || got != c.want {
			t.Errorf("UpdateSparsity(tol=%v) = %v, %v; want %v", c.tol, got, err, c.want)
		}
	}
	if _, err := UpdateSparsity(dw, -1); err == nil {
		t.Error("negative tol: no error")
	}
	if _, err := UpdateSparsity(&mat.Dense{}, 0); err == nil {
		t.Error("empty: no error")
	}
}
