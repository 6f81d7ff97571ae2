package ckpt

import (
	"context"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"gonum.org/v1/gonum/mat"
)

// heapSampler records the largest HeapInuse seen while it runs.
type heapSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	peak uint64
}

func sampleHeap(every time.Duration) *heapSampler {
	s := &heapSampler{stop: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			s.peak = max(s.peak, ms.HeapInuse)
			select {
			case <-s.stop:
				return
			case <-time.After(every):
			}
		}
	}()
	return s
}

func (s *heapSampler) done() uint64 { close(s.stop); s.wg.Wait(); return s.peak }

// TestBoundedMemory reads every tensor of a generated 64 MiB checkpoint
// and checks that the live heap never grows by more than the largest
// tensor as float64 (the matrix the caller asked for, 32 MiB here) plus a
// little: the reader holds only its 1 MiB chunk besides. A reader that
// loaded the file, or a tensor's raw bytes at once (16 MiB more here), or
// a new matrix per tensor, would exceed it; the bound is 2×.
func TestBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 64 MiB")
	}
	p, err := Generate(t.TempDir(), GenConfig{Layers: 1, Hidden: 1024, FFN: 4096, DType: "F32", Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < 64<<20 {
		t.Fatalf("generated %d bytes, want ≥ 64 MiB", fi.Size())
	}
	c, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var largest int64
	for _, ti := range c.Tensors() {
		largest = max(largest, ti.Elements()*8)
	}

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	s := sampleHeap(time.Millisecond)
	var dst mat.Dense
	var sum float64
	for _, ti := range c.Tensors() {
		if err := c.ReadTo(context.Background(), &dst, ti.Name); err != nil {
			t.Fatal(err)
		}
		sum += dst.At(0, 0)
	}
	peak := s.done()
	grew := int64(peak) - int64(base)
	t.Logf("file %.1f MiB, largest tensor %.1f MiB as float64, heap grew by %.1f MiB (%.2f×), reader buffer %d KiB",
		float64(fi.Size())/(1<<20), float64(largest)/(1<<20), float64(grew)/(1<<20), float64(grew)/float64(largest), c.BufferBytes()>>10)
	if limit := largest + largest/8; grew > limit {
		t.Errorf("heap grew by %d bytes while reading, want ≤ %d (largest tensor %d as float64 + 1/8)", grew, limit, largest)
	}
	if c.BytesRead() != c.TotalBytes() {
		t.Errorf("read %d of %d bytes", c.BytesRead(), c.TotalBytes())
	}
	_ = sum
}
