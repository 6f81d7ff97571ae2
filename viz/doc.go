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
// SVG is Width×Height. By default no chart is wider than 960 px, so that it
// fits Jupyter Notebook's output area (975 px). Live shows its chart and a
// text progress line under display ids and replaces them in place
// (nb.DisplayWithID, then nb.Update); the line is shown once, under the
// chart, not in its image.
//
// # Legends and axes
//
// viz draws the legends itself: measured before the layout gives them room
// (a panel of their own beside the plots, as wide as their rows need, or a
// framed box in a corner of the data area), rows spaced apart, more columns
// rather than rows below the room, a text shortened with "…" only in cells
// of small multiples too narrow for it. An unnamed series is never
// "series N": a single one has no entry (a loss curve is "train loss"),
// several are "spectrum 2", "run 2", "angles 2". Tick labels carry the
// digits of the step between ticks (2.05, not 2.1, between 2.00 and 2.10)
// and are thinned until they do not touch, on linear and log axes alike.
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
