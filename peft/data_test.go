package peft

import (
	"gonum.org/v1/gonum/mat"
	"math/rand"
	"strings"
	"testing"
)

func TestDigits(t *testing.T) {
	x, labels := Digits()
	if r, c := x.Dims(); r != 1797 || c != 64 || len(labels) != 1797 {
		t.Fatalf("Digits: X %d×%d, %d labels", r, c, len(labels))
	}
	counts := make([]int, 10)
	for _, l := range labels {
		counts[l]++
	}
	// scikit-learn's load_digits class counts.
	want := []int{178, 182, 177, 183, 181, 182, 181, 179, 174, 180}
	for i := range want {
		if counts[i] != want[i] {
			t.Errorf("class %d: %d examples, want %d", i, counts[i], want[i])
		}
	}
	// The first digit of the set is a 0 whose first row is 0,0,5,13,9,1,0,0.
	if labels[0] != 0 || x.At(0, 2) != 5.0/16 || x.At(0, 3) != 13.0/16 {
		t.Errorf("first digit: label %d, pixels %v", labels[0], x.RawRowView(0)[:8])
	}
	d := DigitsData(0.25, 1, 0, 1, 2, 3, 4)
	n, _ := d.X.Dims()
	m, _ := d.EvalX.Dims()
	if n+m != 178+182+177+183+181 || m < 200 || m > 250 {
		t.Errorf("split %d + %d", n, m)
	}
	all := DigitsData(0.25, 1)
	if r, _ := all.EvalX.Dims(); r != 1797/4 {
		t.Errorf("all classes: %d evaluation rows, want %d", r, 1797/4)
	}
	// The 0–4 evaluation rows are the 0–4 rows of the all-class evaluation set.
	var k int
	for i, l := range all.EvalLabels {
		if l <= 4 {
			if !mat.Equal(all.EvalX.RowView(i), d.EvalX.RowView(k)) {
				t.Fatal("the class-filtered split is not a subset of the full one")
			}
			k++
		}
	}
	for _, l := range append(append([]int(nil), d.Labels...), d.EvalLabels...) {
		if l > 4 {
			t.Fatalf("class %d in a 0–4 split", l)
		}
	}
	b := d.Sample(rand.New(rand.NewSource(1)), 10)
	if r, _ := b.X.Dims(); r != 10 || len(b.Labels) != 10 {
		t.Errorf("sample of %d rows", r)
	}
}

func TestTexts(t *testing.T) {
	v := CharVocab()
	if v.Size() != 96 {
		t.Errorf("vocabulary of %d", v.Size())
	}
	for _, name := range Texts {
		s, err := Text(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(s) < 1_000_000 {
			t.Errorf("%s: only %d bytes", name, len(s))
		}
		if u := v.Unknown(s); len(u) > 0 {
			t.Errorf("%s: characters outside the vocabulary: %q", name, string(u))
		}
		head := s[:2000]
		if got := v.Decode(v.Encode(head)); got != strings.Map(normalizeRune, head) {
			t.Errorf("%s: Decode(Encode(s)) ≠ normalized s", name)
		}
	}
	if _, err := Text("war-and-peace"); err == nil || !strings.Contains(err.Error(), "moby-dick") {
		t.Errorf("unknown text: %v", err)
	}
	s, _ := Text("moby-dick")
	if !strings.HasPrefix(s, "CHAPTER 1. Loomings.") {
		t.Errorf("moby-dick starts %q", s[:20])
	}
	d, err := NewTextData("sotu", 16, 0.1)
	if err != nil {
		t.Fatal(err)
	}
	b := d.Sample(rand.New(rand.NewSource(1)), 3)
	for i := 0; i < 3; i++ {
		for j := 0; j < 15; j++ {
			if b.Tokens[i*16+j+1] != b.Targets[i*16+j] {
				t.Fatal("targets are not the next tokens")
			}
		}
	}
	ev := d.EvalBatches()
	if len(ev) != 2 || ev[0].Seqs != 16 || len(ev[1].Tokens) != 16*16 {
		t.Errorf("eval batches: %d", len(ev))
	}
}
