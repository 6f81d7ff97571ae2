package ckpt

import (
	"context"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// BenchmarkReadTo measures reading and converting one 2048×512 weight
// (go test ./peft/ckpt -run XXX -bench ReadTo).
func BenchmarkReadTo(b *testing.B) {
	for _, dt := range []string{"BF16", "F16", "F32", "F64"} {
		b.Run(dt, func(b *testing.B) {
			p, err := Generate(b.TempDir(), GenConfig{Layers: 1, Hidden: 512, FFN: 2048, DType: dt, Spikes: -1})
			if err != nil {
				b.Fatal(err)
			}
			c, err := Open(p)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			const name = "model.layers.0.mlp.up_proj.weight"
			t, _ := c.Info(name)
			b.SetBytes(t.Bytes)
			b.ReportAllocs()
			var dst mat.Dense
			b.ResetTimer()
			for range b.N {
				if err := c.ReadTo(context.Background(), &dst, name); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLayerStats measures the analysis of one 1024×1024 weight (one
// SVD, the ESD's power-law fit and MP bulk).
func BenchmarkLayerStats(b *testing.B) {
	p, err := Generate(b.TempDir(), GenConfig{Layers: 1, Hidden: 1024, FFN: 1024, DType: "BF16"})
	if err != nil {
		b.Fatal(err)
	}
	c, err := Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var w mat.Dense
	if err := c.ReadTo(context.Background(), &w, "model.layers.0.self_attn.q_proj.weight"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := layerStats(context.Background(), &w); err != nil {
			b.Fatal(err)
		}
	}
}
