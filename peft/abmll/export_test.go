package abmll

import "github.com/gopeft/gopeft/peft"

// ExpOf is expOf.
func ExpOf(x *peft.Tensor) *peft.Tensor { return expOf(x) }

// KLTensor is klTensor.
func KLTensor(muQ, rhoQ, muP, rhoP *peft.Tensor) *peft.Tensor { return klTensor(muQ, rhoQ, muP, rhoP) }
