package snnet

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/gopeft/gopeft/peft"
)

// This file evaluates a whole stitching space, SN-Net's accuracy–FLOPs
// trade-off curve, and trains a pair of anchors on the digits to try it on.

// The digits anchors: two MLPs of two hidden layers each, 16 and 64 wide,
// trained from fixed seeds on all ten digits of
// peft.DigitsData(peft.DigitsEvalFrac, peft.DigitsSeed) with
// DigitsAnchorTrainConfig.
var (
	DigitsSmallSizes        = []int{64, 16, 16, 10}
	DigitsLargeSizes        = []int{64, 64, 64, 10}
	DigitsAnchorTrainConfig = peft.TrainConfig{Steps: 600, BatchSize: 64, LR: 1e-2, WarmupSteps: 20, MinLR: 1e-4, Seed: 1}
)

// DigitsAnchors trains the two digits anchors (DigitsSmallSizes from seed
// 1, DigitsLargeSizes from seed 3, each with DigitsAnchorTrainConfig) and
// returns them with the data they were trained on, whose evaluation rows
// they have not seen. The same build gives the same anchors every time.
func DigitsAnchors(ctx context.Context) (small, large *peft.MLP, data *peft.Classification, err error) {
	data = peft.DigitsData(peft.DigitsEvalFrac, peft.DigitsSeed)
	small = peft.NewMLP(DigitsSmallSizes, 1)
	large = peft.NewMLP(DigitsLargeSizes, 3)
	for _, a := range []struct {
		m    *peft.MLP
		name string
	}{{small, "small digits anchor"}, {large, "large digits anchor"}} {
		cfg := DigitsAnchorTrainConfig
		cfg.Name = a.name
		if _, err := peft.Train(ctx, a.m, data, cfg); err != nil {
			return nil, nil, nil, err
		}
	}
	return small, large, data, nil
}

// CurveConfig configures Curve.
type CurveConfig struct {
	// Fit sets the least-squares fit of every stitch (Batches, BatchSize,
	// Seed); its L and LPrime are ignored.
	Fit StitchConfig
	// LoRA is the stitch's adapter when training (Targets ignored). R = 0
	// trains the whole stitch, M and c, with no adapter: SN-Net (v1)'s
	// stitch, the ablation SN-Netv2 improves on.
	LoRA Config
	// Train trains each stitched network after its fit; Steps = 0 keeps
	// the least-squares stitches as they are.
	Train peft.TrainConfig
	// OneWay stitches only from the first anchor into the second (SN-Net);
	// by default both ways, as SN-Netv2.
	OneWay bool
}

// Point is one network of the stitching space, a point of the
// accuracy–FLOPs curve.
type Point struct {
	Name        string  // "A", "B", or "A[:l]→B[l':]" (A the first anchor of Curve)
	Front, Back string  // the anchors before and after the stitch; Back "" for an anchor
	L, LPrime   int     // the stitch position (0, 0 for an anchor)
	D1, D2      int     // the stitch's input and output widths (0, 0 for an anchor)
	FLOPs       int     // multiply-adds per example (see Stitched.FLOPs)
	Trained     int     // trained numbers (0 for an anchor)
	FitError    float64 // the least-squares fit's relative residual (0 for an anchor)
	// InitLoss and InitAccuracy are the evaluation loss and accuracy with
	// the least-squares stitch; Loss and Accuracy after training (the same
	// when not trained, and for an anchor).
	InitLoss, InitAccuracy float64
	Loss, Accuracy         float64
}

// Curve evaluates the anchors a and b and every stitched network between
// them on data's evaluation batches: for each position l = 1 … L_a − 1 of
// a, paired with l' = round(l·L_b/L_a) of b (l' = l for equal depths),
// a[:l]→b[l':], and unless cfg.OneWay b[:l']→a[l:]. Each stitch is fitted
// by New, then, if cfg.Train.Steps > 0, trained with SN-Netv2's LoRA (or
// whole, if cfg.LoRA.R = 0) by peft.Train. The points come sorted by FLOPs,
// then by name. The anchors are not changed.
//
// It panics on anchors of different input widths or classes, returns an
// error naming the field and value for a bad configuration, and returns
// the error of any fit or training run, or ctx's.
func Curve(ctx context.Context, a, b *peft.MLP, data peft.Dataset, cfg CurveConfig) ([]Point, error) {
	checkAnchors("snnet.Curve", a, b)
	var pts []Point
	for _, an := range []struct {
		name string
		m    *peft.MLP
	}{{"A", a}, {"B", b}} {
		an.m.SetTraining(false)
		loss, acc, err := peft.Evaluate(ctx, an.m, data)
		if err != nil {
			return nil, err
		}
		pts = append(pts, Point{Name: an.name, Front: an.name, FLOPs: FLOPsOf(an.m), InitLoss: loss, InitAccuracy: acc, Loss: loss, Accuracy: acc})
	}
	na, nb := len(a.Layers), len(b.Layers)
	for l := 1; l < na; l++ {
		lp := pair(l, na, nb)
		routes := []struct {
			front, back string
			fm, bm      *peft.MLP
			l, lp       int
		}{{"A", "B", a, b, l, lp}, {"B", "A", b, a, lp, l}}
		if cfg.OneWay {
			routes = routes[:1]
		}
		for _, r := range routes {
			name := fmt.Sprintf("%s[:%d]→%s[%d:]", r.front, r.l, r.back, r.lp)
			p, err := stitchPoint(ctx, name, r.fm, r.bm, data, r.l, r.lp, cfg)
			if err != nil {
				return nil, err
			}
			p.Front, p.Back = r.front, r.back
			pts = append(pts, p)
		}
	}
	sort.SliceStable(pts, func(i, j int) bool {
		if pts[i].FLOPs != pts[j].FLOPs {
			return pts[i].FLOPs < pts[j].FLOPs
		}
		return pts[i].Name < pts[j].Name
	})
	return pts, nil
}

// pair returns the position of a back anchor of nb layers paired with
// position l of a front anchor of nf layers: round(l·nb/nf) within
// [1, nb − 1].
func pair(l, nf, nb int) int {
	return min(max(int(math.Round(float64(l*nb)/float64(nf))), 1), nb-1)
}

// stitchPoint fits, trains (if cfg says so) and evaluates front[:l]→back[lp:],
// named name.
func stitchPoint(ctx context.Context, name string, front, back *peft.MLP, data peft.Dataset, l, lp int, cfg CurveConfig) (Point, error) {
	fit := cfg.Fit
	fit.L, fit.LPrime = l, lp
	s, err := New(ctx, front, back, data, fit)
	if err != nil {
		return Point{}, err
	}
	s.Name = name
	d1, d2 := s.Widths()
	p := Point{Name: name, L: l, LPrime: lp, D1: d1, D2: d2, FLOPs: s.FLOPs(), FitError: s.FitError}
	p.InitLoss, p.InitAccuracy, err = peft.Evaluate(ctx, s, data)
	if err != nil {
		return Point{}, err
	}
	p.Loss, p.Accuracy = p.InitLoss, p.InitAccuracy
	if cfg.Train.Steps == 0 {
		return p, nil
	}
	if cfg.LoRA.R > 0 {
		lcfg := cfg.LoRA
		lcfg.Targets = nil // the stitch
		if _, err := Add(s, lcfg); err != nil {
			return Point{}, err
		}
	}
	p.Trained, _, _ = peft.TrainableParams(s)
	tcfg := cfg.Train
	tcfg.Name = name
	if _, err := peft.Train(ctx, s, data, tcfg); err != nil {
		return Point{}, err
	}
	p.Loss, p.Accuracy, err = peft.Evaluate(ctx, s, data)
	if err != nil {
		return Point{}, err
	}
	return p, nil
}
