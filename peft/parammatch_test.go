package peft

import "testing"

func TestMatchParam(t *testing.T) {
	for _, c := range []struct {
		pats []string
		name string
		want bool
	}{
		{[]string{"q"}, "blocks.0.attn.q.weight", true},      // module suffix
		{[]string{"attn.q"}, "blocks.0.attn.q.weight", true}, // dotted suffix
		{[]string{"blocks.*.attn.q"}, "blocks.1.attn.q.weight", true},
		{[]string{`^blocks\.[01]\.mlp\.fc$`}, "blocks.1.mlp.fc.weight", true},
		{[]string{`^blocks\.[01]\.mlp\.fc$`}, "blocks.2.mlp.fc.weight", false},
		{[]string{"k"}, "blocks.0.attn.q.weight", false},
		{[]string{"eight"}, "blocks.0.attn.q.weight", false}, // a suffix of a component is not a match
		{[]string{"[bad"}, "x.weight", false},
	} {
		if got := MatchParam(c.pats, c.name); got != c.want {
			t.Errorf("MatchParam(%q, %q) = %v, want %v", c.pats, c.name, got, c.want)
		}
	}
	if CheckParamPattern("[bad") == nil || CheckParamPattern("^(x$") == nil || CheckParamPattern("attn.*") != nil {
		t.Error("CheckParamPattern: want errors for [bad and ^(x$, none for attn.*")
	}
}
