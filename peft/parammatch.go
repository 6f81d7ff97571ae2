package peft

import (
	"path"
	"regexp"
	"strings"
)

// Optimizers that treat some matrices specially (GaLore's projection,
// Conda, FRUGAL, Fira, Q-GaLore) pick them by the parameter's name with
// these rules, kept in one place.

// CheckParamPattern reports whether p is a valid parameter pattern: a
// regular expression written ^…$, or a path.Match glob (a plain name is a
// glob without metacharacters).
func CheckParamPattern(p string) error {
	if strings.HasPrefix(p, "^") && strings.HasSuffix(p, "$") {
		_, err := regexp.Compile(p)
		return err
	}
	_, err := path.Match(p, "")
	return err
}

// MatchParam reports whether the parameter name, or its module (name
// without its last dotted component: "blocks.0.attn.q" of
// "blocks.0.attn.q.weight"), equals a pattern, ends in "."+pattern, matches
// it as a path.Match glob, or, for a pattern written ^…$, matches it as a
// regular expression. Invalid patterns (see CheckParamPattern) match
// nothing.
func MatchParam(patterns []string, name string) bool {
	cands := []string{name}
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		cands = append(cands, name[:i])
	}
	for _, p := range patterns {
		var re *regexp.Regexp
		if strings.HasPrefix(p, "^") && strings.HasSuffix(p, "$") {
			re, _ = regexp.Compile(p)
		}
		for _, c := range cands {
			if c == p || strings.HasSuffix(c, "."+p) {
				return true
			}
			if ok, _ := path.Match(p, c); ok {
				return true
			}
			if re != nil && re.MatchString(c) {
				return true
			}
		}
	}
	return false
}
