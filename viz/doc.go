// Package viz draws the charts of rank analysis with gonum/plot: singular
// value spectra with their cumulative energy, empirical spectral densities
// with a power-law fit and the Marchenko–Pastur bulk, rank allocation over
// training, loss curves, subspace similarity and principal angles, small
// multiples of any of them, and a live loss chart that a training loop
// updates in place.
//
// # Display
//
// Every chart is a *Chart, which has PNG() []byte and SVG() string, so a
// notebook shows it inline by itself (package nb's contract). The PNG is
// rendered at Scale (default 2) pixels per CSS pixel, so that it stays crisp
// on high-density screens when the front-end shows it at Width×Height; the
// SVG is Width×Height. Live shows its chart and a text progress line under
// display ids and replaces them in place (nb.DisplayWithID, then nb.Update).
//
// # One place for the numbers
//
// viz computes nothing that it draws: energy, the ranks that keep an energy
// share, effective rank, the elbow, the ESD, its power-law fit and its
// Marchenko–Pastur bulk, subspace similarity and principal angles all come
// from package peft, which tests them numerically. viz takes peft's types
// (Spectrum, ESD, History, RankTrace) and, through SpectrumValues,
// SpectrumMatrices, ESDMatrix, LossValues, RankValues and SubspaceMatrices,
// plain slices and gonum matrices.
//
// # Errors
//
// Constructors return (chart, error). Bad input (no series, an empty
// series, NaN or ±Inf, lengths that disagree, a negative rank, a loss ≤ 0 on
// a log axis, …) is an error that names the series (or run, module, step)
// and the problem; a constructor never panics and never returns a chart
// together with an error, so no chart is drawn silently wrong. Render
// returns rendering failures (an impossible size) as errors; PNG and SVG
// then return nil and "".
//
// # Tests, golden images, gallery
//
//	go test ./viz                          # render, golden, bad input, live, examples
//	go test ./viz -run TestGolden -update  # rewrite testdata/*.png after a deliberate change
//	go test ./viz -run TestChartsRender -gallery  # rewrite gallery/*.png (README)
//	go test ./viz -run XXX -bench .        # timing (wall and CPU per chart)
package viz
