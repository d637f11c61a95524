// Package report draws a run's report: its learning curves (training and validation
// bpc against tokens seen), its memory over training (mean span and live memories per
// layer), and a histogram of the spans a checkpoint gives a sample of text.
package report

import (
	"errors"
	"fmt"
	"image/color"
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

// PNG draws a run's report as a PNG: training and validation bpc against tokens seen;
// the mean span and the live memory per layer over training; the learning rate and the
// gradient norm; and, when sample is given, a histogram of its spans per layer.
func PNG(w io.Writer, title string, rows []checkpoint.Row, sample *eval.SpanSample) error {
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
		return ErrTooShort
	}

	p1 := plot.New()
	p1.Title.Text = title
	p1.X.Label.Text = "tokens seen"
	p1.Y.Label.Text = unit
	p1.Add(plotter.NewGrid())
	if err := addLine(p1, "train", trainXY, 0, false); err != nil {
		return err
	}
	if len(validXY) > 0 {
		if err := addLine(p1, "valid", validXY, 1, true); err != nil {
			return err
		}
	}
	p1.Legend.Top = true

	p2 := plot.New()
	// In training the batch keeps one rectangle of keys: every stream keeps as many as the
	// stream that needs the most, so "live" here sits above an evaluation's per-stream
	// figure (one stream, each key dropped the step it expires).
	p2.Title.Text = "memory over training, per layer (live: keys kept per stream, the batch's rectangle)"
	p2.X.Label.Text = "tokens seen"
	p2.Y.Label.Text = "keys"
	p2.Add(plotter.NewGrid())
	for l, xy := range spanXY {
		if err := addLine(p2, fmt.Sprintf("mean span L%d", l), xy, l, false); err != nil {
			return err
		}
	}
	for l, xy := range liveXY {
		if err := addDashed(p2, fmt.Sprintf("live L%d", l), xy, l); err != nil {
			return err
		}
	}
	p2.Legend.Top = true

	plots := [][]*plot.Plot{{p1}, {p2}}
	if len(lrXY) > 1 || len(normXY) > 1 {
		p4 := plot.New()
		p4.Title.Text = "learning rate and gradient norm (before clipping), log scale"
		p4.X.Label.Text = "tokens seen"
		p4.Y.Scale = plot.LogScale{}
		p4.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p4.Add(plotter.NewGrid())
		if len(lrXY) > 1 {
			if err := addLine(p4, "learning rate", lrXY, 2, false); err != nil {
				return err
			}
		}
		if len(normXY) > 1 {
			if err := addLine(p4, "gradient norm", normXY, 3, false); err != nil {
				return err
			}
		}
		p4.Legend.Top = true
		plots = append(plots, []*plot.Plot{p4})
	}
	if sample != nil {
		p3, err := spanHistogram(sample)
		if err != nil {
			return err
		}
		plots = append(plots, []*plot.Plot{p3})
	}
	width, height := 8*vg.Inch, vg.Length(len(plots))*3.2*vg.Inch
	img := vgimg.New(width, height)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadX: vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(w)
	return err
}

// spanHistogram plots, per layer, how many tokens got each span (40 bins over [0, L]).
func spanHistogram(s *eval.SpanSample) (*plot.Plot, error) {
	p := plot.New()
	n := 0
	if len(s.Spans) > 0 {
		n = len(s.Spans[0])
	}
	p.Title.Text = fmt.Sprintf("learned spans at step %d, %d %s tokens", s.Step, n, s.Split)
	p.X.Label.Text = "span (tokens)"
	p.Y.Label.Text = "share of tokens"
	p.Add(plotter.NewGrid())
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
		if err := addLine(p, fmt.Sprintf("L%d (mean %.0f)", l, mean), xy, l, false); err != nil {
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
	p.X.Min = 0
	p.X.Max = min(s.MaxSpan, math.Max(1, hi*1.05))
	p.Legend.Top = true
	return p, nil
}

func addLine(p *plot.Plot, name string, xy plotter.XYs, i int, points bool) error {
	l, err := plotter.NewLine(xy)
	if err != nil {
		return err
	}
	l.Color = plotutil.Color(i)
	l.Width = vg.Points(1.2)
	p.Add(l)
	p.Legend.Add(name, l)
	if points {
		s, err := plotter.NewScatter(xy)
		if err != nil {
			return err
		}
		s.Color = l.Color
		s.Shape = draw.CircleGlyph{}
		p.Add(s)
	}
	return nil
}

func addDashed(p *plot.Plot, name string, xy plotter.XYs, i int) error {
	l, err := plotter.NewLine(xy)
	if err != nil {
		return err
	}
	c := plotutil.Color(i)
	r, g, b, _ := c.RGBA()
	l.Color = color.NRGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), 180}
	l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	l.Width = vg.Points(1)
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
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
