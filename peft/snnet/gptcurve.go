package snnet

import (
	"context"
	"fmt"
	"sort"

	"github.com/gopeft/gopeft/peft"
)

// This file evaluates the stitching space of two GPTs, SN-Net's
// bits/char–FLOPs trade-off curve, and loads the shipped pair to try it on.

// GPTAnchors returns the shipped tiny GPT (peft.TinyGPTConfig, C = 64) and
// its wider sibling (peft.TinyGPTWideConfig, C = 96), both pretrained on
// Moby-Dick, with the Moby-Dick data they were trained on, whose held-out
// last 5% they have not seen (T = 64, as they were trained).
func GPTAnchors() (tiny, wide *peft.GPT, data *peft.TextData, err error) {
	if tiny, err = peft.LoadTinyGPT(); err != nil {
		return nil, nil, nil, err
	}
	if wide, err = peft.LoadTinyGPTWide(); err != nil {
		return nil, nil, nil, err
	}
	data, err = peft.NewTextData("moby-dick", peft.TinyGPTConfig.Context, 0.05)
	if err != nil {
		return nil, nil, nil, err
	}
	return tiny, wide, data, nil
}

// GPTPoint is one network of a GPT stitching space, a point of the
// bits/char–FLOPs curve.
type GPTPoint struct {
	Name        string  // "A", "B", or "A[:l]→B[l':]" (A the first anchor of GPTCurve)
	Front, Back string  // the anchors before and after the stitch; Back "" for an anchor
	L, LPrime   int     // the stitch position (0, 0 for an anchor)
	C1, C2      int     // the stitch's input and output widths (0, 0 for an anchor)
	FLOPs       int     // multiply-adds per token (see GPTStitched.FLOPs)
	Trained     int     // trained numbers (0 for an anchor)
	FitError    float64 // the least-squares fit's relative residual (0 for an anchor)
	// InitLoss (nats) and InitBitsPerChar are the held-out loss with the
	// least-squares stitch; Loss and BitsPerChar after training (the same
	// when not trained, and for an anchor).
	InitLoss, InitBitsPerChar float64
	Loss, BitsPerChar         float64
}

// GPTCurve evaluates the GPT anchors a and b and every stitched network
// between them on data's evaluation batches: for each position l = 0 … L_a
// of a (0 the embeddings, L_a the stream a's head reads), paired with
// l' = round(l·L_b/L_a) of b (l' = l for equal depths), a[:l]→b[l':], and
// unless cfg.OneWay b[:l']→a[l:]. Each stitch is fitted by StitchGPT (with
// cfg.Fit's Batches, BatchSize and Seed), then, if cfg.Train.Steps > 0,
// trained with SN-Netv2's LoRA (or whole, if cfg.LoRA.R = 0) by
// peft.Train. The points come sorted by FLOPs, then by name. The anchors
// are not changed.
//
// It panics on anchors of different vocabularies or contexts, returns an
// error naming the field and value for a bad configuration, and returns
// the error of any fit or training run, or ctx's.
func GPTCurve(ctx context.Context, a, b *peft.GPT, data peft.Dataset, cfg CurveConfig) ([]GPTPoint, error) {
	checkGPTAnchors("snnet.GPTCurve", a, b)
	var pts []GPTPoint
	for _, an := range []struct {
		name string
		g    *peft.GPT
	}{{"A", a}, {"B", b}} {
		an.g.SetTraining(false)
		loss, bpc, err := peft.Evaluate(ctx, an.g, data)
		if err != nil {
			return nil, err
		}
		pts = append(pts, GPTPoint{Name: an.name, Front: an.name, FLOPs: GPTFLOPs(an.g), InitLoss: loss, InitBitsPerChar: bpc, Loss: loss, BitsPerChar: bpc})
	}
	na, nb := len(a.Blocks), len(b.Blocks)
	for l := 0; l <= na; l++ {
		lp := min(max((l*nb+na/2)/na, 0), nb) // round(l·nb/na)
		routes := []struct {
			front, back string
			fg, bg      *peft.GPT
			l, lp       int
		}{{"A", "B", a, b, l, lp}, {"B", "A", b, a, lp, l}}
		if cfg.OneWay {
			routes = routes[:1]
		}
		for _, r := range routes {
			name := fmt.Sprintf("%s[:%d]→%s[%d:]", r.front, r.l, r.back, r.lp)
			p, err := gptStitchPoint(ctx, name, r.fg, r.bg, data, r.l, r.lp, cfg)
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

// gptStitchPoint fits, trains (if cfg says so) and evaluates
// front[:l]→back[lp:], named name.
func gptStitchPoint(ctx context.Context, name string, front, back *peft.GPT, data peft.Dataset, l, lp int, cfg CurveConfig) (GPTPoint, error) {
	fit := cfg.Fit
	fit.L, fit.LPrime = l, lp
	s, err := StitchGPT(ctx, front, back, data, fit)
	if err != nil {
		return GPTPoint{}, err
	}
	s.Name = name
	c1, c2 := s.Widths()
	p := GPTPoint{Name: name, L: l, LPrime: lp, C1: c1, C2: c2, FLOPs: s.FLOPs(), FitError: s.FitError}
	p.InitLoss, p.InitBitsPerChar, err = peft.Evaluate(ctx, s, data)
	if err != nil {
		return GPTPoint{}, err
	}
	p.Loss, p.BitsPerChar = p.InitLoss, p.InitBitsPerChar
	if cfg.Train.Steps == 0 {
		return p, nil
	}
	if cfg.LoRA.R > 0 {
		lcfg := cfg.LoRA
		lcfg.Targets = nil // the stitch
		if _, err := Add(s, lcfg); err != nil {
			return GPTPoint{}, err
		}
	}
	p.Trained, _, _ = peft.TrainableParams(s)
	tcfg := cfg.Train
	tcfg.Name = name
	if _, err := peft.Train(ctx, s, data, tcfg); err != nil {
		return GPTPoint{}, err
	}
	p.Loss, p.BitsPerChar, err = peft.Evaluate(ctx, s, data)
	if err != nil {
		return GPTPoint{}, err
	}
	return p, nil
}
