// Package report draws a run's report: its learning curves (training and validation
// bpc against tokens seen), its memory over training (mean span and live memories per
// layer), and a histogram of the spans a checkpoint gives a sample of text.
package report

import (
	"errors"
	"fmt"
	"io"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"xspan/checkpoint"
	"xspan/eval"
	"xspan/internal/figure"
	"xspan/lm"
)

// ErrTooShort is returned by PNG for a run with fewer than two logged training rows: no
// curve to draw yet.
var ErrTooShort = errors.New("too short to plot: fewer than two logged training rows (a row is written every --log-every steps)")

// Title names a run for its report: the run, its model and recipe, how far it got and
// its last and best validation.
func Title(run string, cfg *lm.Config, rows []checkpoint.Row) string {
	t := run
	if cfg != nil {
		t += fmt.Sprintf(": %d layers, d %d, block %d, L %d, batch %d", cfg.Layers, cfg.Dim, cfg.Block, cfg.MaxSpan, cfg.Batch)
		if !cfg.Expire {
			t += ", fixed memory"
		}
	}
	var step int64
	var last, best *checkpoint.Row
	for i := range rows {
		r := &rows[i]
		step = max(step, r.Step)
		if r.Kind == checkpoint.RowEval && !math.IsNaN(r.BPC) {
			last = r
			if best == nil || r.BPC < best.BPC {
				best = r
			}
		}
	}
	t += fmt.Sprintf("\nstep %d", step)
	if cfg != nil && cfg.Steps > 0 {
		t += fmt.Sprintf(" of %d", cfg.Steps)
	}
	if last != nil {
		t += fmt.Sprintf("; valid %.4f %s at step %d", last.BPC, unitAbbrev(last.Unit), last.Step)
		if best != last {
			t += fmt.Sprintf(" (best %.4f at step %d)", best.BPC, best.Step)
		}
	}
	return t
}

func unitAbbrev(unit string) string {
	switch unit {
	case "bits per byte":
		return "bpb"
	case "":
		return "bpc"
	}
	return "bpc"
}

// PNG draws a run's report as a PNG (the panels of Panels, one above the other).
func PNG(w io.Writer, title string, rows []checkpoint.Row, sample *eval.SpanSample) error {
	panels, err := Panels(title, rows, sample)
	if err != nil {
		return err
	}
	_, err = figure.WritePNG(w, 8*vg.Inch, vg.Length(len(panels))*3.2*vg.Inch, vgimg.DefaultDPI, panels)
	return err
}

// Panels builds the report's plots: training and validation bpc against tokens seen;
// the mean span and the live memory per layer over training; the learning rate and the
// gradient norm; and, when sample is given, a histogram of its spans per layer. Layers
// are named from 1, as eval, spans and the page name them.
func Panels(title string, rows []checkpoint.Row, sample *eval.SpanSample) ([]*figure.Panel, error) {
	var trainXY, validXY plotter.XYs
	unit := "bpc"
	var spanXY, liveXY []plotter.XYs
	var lrXY, normXY plotter.XYs
	for _, r := range rows {
		x := float64(r.Tokens)
		switch r.Kind {
		case checkpoint.RowTrain:
			trainXY = append(trainXY, plotter.XY{X: x, Y: r.BPC})
			if r.LR > 0 {
				lrXY = append(lrXY, plotter.XY{X: x, Y: r.LR})
			}
			if r.GradNorm > 0 {
				normXY = append(normXY, plotter.XY{X: x, Y: r.GradNorm})
			}
			for l := range r.MeanSpan {
				for len(spanXY) <= l {
					spanXY = append(spanXY, nil)
				}
				spanXY[l] = append(spanXY[l], plotter.XY{X: x, Y: r.MeanSpan[l]})
			}
			for l := range r.Live {
				for len(liveXY) <= l {
					liveXY = append(liveXY, nil)
				}
				liveXY[l] = append(liveXY[l], plotter.XY{X: x, Y: r.Live[l]})
			}
		case checkpoint.RowEval:
			validXY = append(validXY, plotter.XY{X: x, Y: r.BPC})
			if r.Unit != "" {
				unit = r.Unit
			}
		}
	}
	trainXY, validXY = finite(trainXY), finite(validXY)
	lrXY, normXY = finite(lrXY), finite(normXY)
	if len(trainXY) < 2 {
		return nil, ErrTooShort
	}

	p1 := figure.NewPanel()
	p1.Plot.Title.Text = title
	p1.Plot.X.Label.Text = "tokens seen"
	p1.Plot.Y.Label.Text = unit
	p1.Plot.Add(plotter.NewGrid())
	if err := addLine(p1, "train", trainXY, 0, false); err != nil {
		return nil, err
	}
	if len(validXY) > 0 {
		if err := addLine(p1, "valid", validXY, 1, true); err != nil {
			return nil, err
		}
	}

	p2 := figure.NewPanel()
	// In training the batch keeps one rectangle of keys: every stream keeps as many as the
	// stream that needs the most, so "live" here sits above an evaluation's per-stream
	// figure (one stream, each key dropped the step it expires).
	p2.Plot.Title.Text = "memory over training, per layer (live: keys kept per stream, the batch's rectangle)"
	p2.Plot.X.Label.Text = "tokens seen"
	p2.Plot.Y.Label.Text = "keys"
	p2.Plot.Add(plotter.NewGrid())
	for l, xy := range spanXY {
		if err := addLine(p2, fmt.Sprintf("mean span, layer %d", l+1), finite(xy), l, false); err != nil {
			return nil, err
		}
	}
	for l, xy := range liveXY {
		if _, err := addDashed(p2, fmt.Sprintf("live, layer %d", l+1), finite(xy), l, len(liveXY)); err != nil {
			return nil, err
		}
	}
	// Room above the highest line: a flat line at the top would lie on the frame.
	p2.Plot.Y.Min = 0
	p2.Plot.Y.Max = headroom(p2.Plot.Y.Max)

	panels := []*figure.Panel{p1, p2}
	if len(lrXY) > 1 || len(normXY) > 1 {
		p4 := figure.NewPanel()
		p4.Plot.Title.Text = "learning rate and gradient norm (before clipping), log scale"
		p4.Plot.X.Label.Text = "tokens seen"
		p4.Plot.Y.Scale = plot.LogScale{}
		p4.Plot.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p4.Plot.Add(plotter.NewGrid())
		if len(lrXY) > 1 {
			if err := addLine(p4, "learning rate", lrXY, 2, false); err != nil {
				return nil, err
			}
		}
		if len(normXY) > 1 {
			if err := addLine(p4, "gradient norm", normXY, 3, false); err != nil {
				return nil, err
			}
		}
		// Room above and below (a constant learning rate lies on an edge otherwise).
		p4.Plot.Y.Min, p4.Plot.Y.Max = p4.Plot.Y.Min/1.5, p4.Plot.Y.Max*1.5
		panels = append(panels, p4)
	}
	if sample != nil {
		p3, err := spanHistogram(sample)
		if err != nil {
			return nil, err
		}
		panels = append(panels, p3)
	}
	return panels, nil
}

// headroom is an axis maximum a little above the data's highest value v.
func headroom(v float64) float64 {
	if v <= 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 1
	}
	return v * 1.08
}

// spanHistogram plots, per layer, how many tokens got each span (40 bins over [0, L]).
func spanHistogram(s *eval.SpanSample) (*figure.Panel, error) {
	p := figure.NewPanel()
	n := 0
	if len(s.Spans) > 0 {
		n = len(s.Spans[0])
	}
	p.Plot.Title.Text = fmt.Sprintf("learned spans at step %d, %d %s tokens", s.Step, n, s.Split)
	p.Plot.X.Label.Text = "span (tokens)"
	p.Plot.Y.Label.Text = "share of tokens"
	p.Plot.Add(plotter.NewGrid())
	const bins = 40
	top := 1.0 // the bins cover [0, top]: the largest span seen, at most L
	for _, sp := range s.Spans {
		for _, v := range sp {
			top = max(top, float64(v))
		}
	}
	top = min(top, s.MaxSpan)
	for l, sp := range s.Spans {
		if len(sp) == 0 {
			continue
		}
		counts := make([]float64, bins)
		for _, v := range sp {
			b := int(float64(v) / top * bins)
			counts[min(max(b, 0), bins-1)]++
		}
		xy := make(plotter.XYs, 0, 2*bins)
		for b, c := range counts {
			lo, hi := float64(b)*top/bins, float64(b+1)*top/bins
			y := c / float64(len(sp))
			xy = append(xy, plotter.XY{X: lo, Y: y}, plotter.XY{X: hi, Y: y})
		}
		mean := 0.0
		for _, v := range sp {
			mean += float64(v)
		}
		mean /= float64(len(sp))
		if err := addLine(p, fmt.Sprintf("layer %d (mean %.0f)", l+1, mean), xy, l, false); err != nil {
			return nil, err
		}
	}
	// Fit the axis to the spans seen: learned spans often use a small part of L.
	hi := 0.0
	for _, sp := range s.Spans {
		for _, v := range sp {
			hi = max(hi, float64(v))
		}
	}
	p.Plot.X.Min = 0
	p.Plot.X.Max = min(s.MaxSpan, math.Max(1, hi*1.05))
	p.Plot.Y.Min = 0
	p.Plot.Y.Max = headroom(p.Plot.Y.Max)
	return p, nil
}

func addLine(p *figure.Panel, name string, xy plotter.XYs, i int, points bool) error {
	l, err := plotter.NewLine(xy)
	if err != nil {
		return err
	}
	l.Color = plotutil.Color(i)
	l.Width = vg.Points(1.2)
	if !points {
		p.Add(name, l)
		return nil
	}
	s, err := plotter.NewScatter(xy)
	if err != nil {
		return err
	}
	s.Color = l.Color
	s.Shape = draw.CircleGlyph{}
	p.Add(name, l, s)
	return nil
}

// dash is the pattern of the live-memory lines: a dash, then a gap that holds the other
// layers' dashes.
const dash = 4

// addDashed adds layer i of n's live-memory line, dashed, its dashes shifted by i dash
// lengths: where the layers' lines coincide (a full memory, a fixed one) their dashes
// take turns, so every layer's colour stays visible.
func addDashed(p *figure.Panel, name string, xy plotter.XYs, i, n int) (*plotter.Line, error) {
	l, err := plotter.NewLine(xy)
	if err != nil {
		return nil, err
	}
	l.Color = plotutil.Color(i)
	l.Dashes = []vg.Length{vg.Points(dash), vg.Points(float64(dash * max(n-1, 1)))}
	l.DashOffs = vg.Points(float64(dash * i))
	l.Width = vg.Points(1.2)
	p.Add(name, l)
	return l, nil
}

// finite drops NaN and infinite points (a plot refuses them).
func finite(xy plotter.XYs) plotter.XYs {
	out := xy[:0:0]
	for _, p := range xy {
		if !math.IsNaN(p.Y) && !math.IsInf(p.Y, 0) {
			out = append(out, p)
		}
	}
	return out
}
