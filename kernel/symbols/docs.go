package symbols

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"io"
	"sync"
)

//go:generate go run ./gendocs -o docs.json.gz bufio bytes context encoding/json errors fmt image image/color io math math/rand os sort strconv strings sync time gonum.org/v1/gonum/mat gonum.org/v1/gonum/stat gonum.org/v1/gonum/floats gonum.org/v1/gonum/stat/distuv gonum.org/v1/plot gonum.org/v1/plot/plotter gonum.org/v1/plot/vg gonum.org/v1/plot/vg/draw gonum.org/v1/plot/plotutil github.com/gopeft/gopeft/nb github.com/gopeft/gopeft/accel github.com/gopeft/gopeft/peft github.com/gopeft/gopeft/peft/lora github.com/gopeft/gopeft/peft/dora github.com/gopeft/gopeft/peft/pissa github.com/gopeft/gopeft/peft/adalora github.com/gopeft/gopeft/peft/vera github.com/gopeft/gopeft/peft/galore github.com/gopeft/gopeft/peft/randlora github.com/gopeft/gopeft/peft/paca github.com/gopeft/gopeft/peft/dsee github.com/gopeft/gopeft/peft/sltrain github.com/gopeft/gopeft/peft/salt github.com/gopeft/gopeft/peft/hut github.com/gopeft/gopeft/peft/wara github.com/gopeft/gopeft/peft/flora github.com/gopeft/gopeft/peft/snella github.com/gopeft/gopeft/peft/dsclora github.com/gopeft/gopeft/peft/moram github.com/gopeft/gopeft/peft/quant github.com/gopeft/gopeft/peft/lqlora github.com/gopeft/gopeft/peft/eva github.com/gopeft/gopeft/peft/soka github.com/gopeft/gopeft/peft/codyra github.com/gopeft/gopeft/peft/pela github.com/gopeft/gopeft/peft/snnet github.com/gopeft/gopeft/peft/dylora github.com/gopeft/gopeft/peft/maestro github.com/gopeft/gopeft/peft/lorasb github.com/gopeft/gopeft/peft/loldu github.com/gopeft/gopeft/peft/conda github.com/gopeft/gopeft/peft/frugal github.com/gopeft/gopeft/peft/fira github.com/gopeft/gopeft/peft/qgalore github.com/gopeft/gopeft/peft/lorapro github.com/gopeft/gopeft/peft/loraggpo github.com/gopeft/gopeft/peft/trp github.com/gopeft/gopeft/peft/lrpretrain github.com/gopeft/gopeft/peft/osf github.com/gopeft/gopeft/peft/ewclora github.com/gopeft/gopeft/peft/coso github.com/gopeft/gopeft/peft/dplora github.com/gopeft/gopeft/peft/fedsb github.com/gopeft/gopeft/peft/rl github.com/gopeft/gopeft/peft/loku github.com/gopeft/gopeft/peft/mcomplete github.com/gopeft/gopeft/peft/ckpt github.com/gopeft/gopeft/peft/abmll github.com/gopeft/gopeft/peft/perk github.com/gopeft/gopeft/peft/loralimits github.com/gopeft/gopeft/viz

//go:embed docs.json.gz
var docsGz []byte

// DocEntry is the documentation of one package member ("Name" or
// "Type.Method").
type DocEntry struct {
	Kind string `json:"k"` // func, method, type, var, const
	Decl string `json:"d"` // declaration without body
	Doc  string `json:"c,omitempty"`
}

// PackageDoc is the documentation of one package.
type PackageDoc struct {
	Name    string              `json:"name"`
	Doc     string              `json:"doc"`
	Members map[string]DocEntry `json:"members"`
}

var (
	docsOnce sync.Once
	docs     map[string]PackageDoc
)

// Docs returns the documentation compiled into the binary, by import path.
// It is decoded on first use.
func Docs() map[string]PackageDoc {
	docsOnce.Do(func() {
		docs = map[string]PackageDoc{}
		zr, err := gzip.NewReader(bytes.NewReader(docsGz))
		if err != nil {
			return
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			return
		}
		_ = json.Unmarshal(b, &docs)
	})
	return docs
}
