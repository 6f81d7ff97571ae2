// Package symbols holds the yaegi symbol tables of the compiled packages a
// gopeft notebook can import without a Go toolchain: gonum's mat, stat,
// floats and distuv, gonum/plot (so users can draw their own charts), and
// gopeft's peft, its method packages (peft/lora, …), viz, accel and nb. The standard library comes from yaegi's
// own stdlib.Symbols.
//
// Every file but this one and docs.go is generated: run
//
//	go generate ./kernel/symbols
//
// after changing an exported API of peft, viz, accel or nb. scripts/check-generate
// fails when regenerating changes anything.
package symbols

import "reflect"

// Symbols maps "importpath/pkgname" to the package's exported symbols, in the
// form interp.Use expects. The generated files fill it from init functions.
var Symbols = map[string]map[string]reflect.Value{}

//go:generate sh -c "rm -f github_com-*.go gonum_org-*.go"
//go:generate go run github.com/traefik/yaegi/cmd/yaegi extract gonum.org/v1/gonum/mat gonum.org/v1/gonum/stat gonum.org/v1/gonum/floats gonum.org/v1/gonum/stat/distuv
//go:generate go run github.com/traefik/yaegi/cmd/yaegi extract gonum.org/v1/plot gonum.org/v1/plot/plotter gonum.org/v1/plot/vg gonum.org/v1/plot/vg/draw gonum.org/v1/plot/plotutil
//go:generate go run github.com/traefik/yaegi/cmd/yaegi extract github.com/gopeft/gopeft/nb github.com/gopeft/gopeft/accel github.com/gopeft/gopeft/peft github.com/gopeft/gopeft/peft/lora github.com/gopeft/gopeft/peft/dora github.com/gopeft/gopeft/peft/pissa github.com/gopeft/gopeft/peft/adalora github.com/gopeft/gopeft/peft/vera github.com/gopeft/gopeft/peft/galore github.com/gopeft/gopeft/peft/randlora github.com/gopeft/gopeft/peft/paca github.com/gopeft/gopeft/peft/dsee github.com/gopeft/gopeft/peft/sltrain github.com/gopeft/gopeft/peft/salt github.com/gopeft/gopeft/peft/hut github.com/gopeft/gopeft/peft/wara github.com/gopeft/gopeft/peft/flora github.com/gopeft/gopeft/peft/snella github.com/gopeft/gopeft/peft/dsclora github.com/gopeft/gopeft/peft/moram github.com/gopeft/gopeft/peft/quant github.com/gopeft/gopeft/peft/lqlora github.com/gopeft/gopeft/peft/eva github.com/gopeft/gopeft/peft/soka github.com/gopeft/gopeft/peft/codyra github.com/gopeft/gopeft/peft/pela github.com/gopeft/gopeft/peft/snnet github.com/gopeft/gopeft/peft/dylora github.com/gopeft/gopeft/peft/maestro github.com/gopeft/gopeft/peft/lorasb github.com/gopeft/gopeft/peft/loldu github.com/gopeft/gopeft/peft/conda github.com/gopeft/gopeft/peft/frugal github.com/gopeft/gopeft/peft/fira github.com/gopeft/gopeft/peft/qgalore github.com/gopeft/gopeft/peft/lorapro github.com/gopeft/gopeft/peft/loraggpo github.com/gopeft/gopeft/peft/trp github.com/gopeft/gopeft/peft/lrpretrain github.com/gopeft/gopeft/peft/osf github.com/gopeft/gopeft/peft/ewclora github.com/gopeft/gopeft/peft/coso github.com/gopeft/gopeft/peft/dplora github.com/gopeft/gopeft/peft/fedsb github.com/gopeft/gopeft/peft/rl github.com/gopeft/gopeft/peft/loku github.com/gopeft/gopeft/peft/mcomplete github.com/gopeft/gopeft/peft/ckpt github.com/gopeft/gopeft/peft/abmll github.com/gopeft/gopeft/peft/perk github.com/gopeft/gopeft/peft/loralimits github.com/gopeft/gopeft/viz
