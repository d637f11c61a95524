package bench

import (
	"fmt"
	"io"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/vgimg"

	"xspan/internal/figure"
)

// CopyPNG draws the grid (the panels of CopyPanels) as a PNG.
func CopyPNG(w io.Writer, rows []CopyRow) error {
	panels, err := CopyPanels(rows)
	if err != nil {
		return err
	}
	_, err = figure.WritePNG(w, 8*vg.Inch, 7*vg.Inch, vgimg.DefaultDPI, panels)
	return err
}

// CopyPanels plots the grid: copy accuracy against the gap per model, with chance, and
// the mean live memory (over layers) per model; the gap axis (log scale) is labelled at
// every gap measured.
func CopyPanels(rows []CopyRow) ([]*figure.Panel, error) {
	if len(rows) == 0 {
		return nil, fmt.Errorf("no rows to plot")
	}
	models := []string{}
	var gaps figure.At
	for _, r := range rows {
		if !slices.Contains(models, r.Model) {
			models = append(models, r.Model)
		}
		if !slices.Contains(gaps, float64(r.Gap)) {
			gaps = append(gaps, float64(r.Gap))
		}
	}
	slices.Sort(gaps)
	acc, mem := figure.NewPanel(), figure.NewPanel()
	acc.Plot.Title.Text = "copy task: accuracy on the copied tokens (test split)"
	acc.Plot.X.Label.Text, acc.Plot.Y.Label.Text = "gap (tokens)", "copy accuracy"
	acc.Plot.Y.Min, acc.Plot.Y.Max = 0, 1
	mem.Plot.Title.Text = "mean live memory per layer"
	mem.Plot.X.Label.Text, mem.Plot.Y.Label.Text = "gap (tokens)", "keys"
	for _, p := range []*figure.Panel{acc, mem} {
		p.Plot.X.Scale = plot.LogScale{}
		p.Plot.X.Tick.Marker = gaps
		p.Plot.Add(plotter.NewGrid())
	}
	mem.Plot.Y.Min = 0
	var chance plotter.XYs
	for i, name := range models {
		var a, m plotter.XYs
		for _, r := range rows {
			if r.Model != name {
				continue
			}
			a = append(a, plotter.XY{X: float64(r.Gap), Y: r.Accuracy})
			live := 0.0
			for _, v := range r.MeanLive {
				live += v / float64(len(r.MeanLive))
			}
			m = append(m, plotter.XY{X: float64(r.Gap), Y: live})
			if i == 0 && r.Chance > 0 {
				chance = append(chance, plotter.XY{X: float64(r.Gap), Y: r.Chance})
			}
		}
		for _, pl := range []struct {
			p  *figure.Panel
			xy plotter.XYs
		}{{acc, a}, {mem, m}} {
			l, p, err := plotter.NewLinePoints(pl.xy)
			if err != nil {
				return nil, err
			}
			l.Color, p.Color = plotutil.Color(i), plotutil.Color(i)
			l.Width = vg.Points(1.5)
			p.Shape = plotutil.Shape(i)
			pl.p.Add(name, l, p)
		}
	}
	if len(chance) > 0 {
		l, err := plotter.NewLine(chance)
		if err != nil {
			return nil, err
		}
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		l.Color = plotutil.Color(len(models))
		acc.Add("chance", l)
	}
	// A gap or two alone: widen the axis around them (a log axis needs a range).
	for _, p := range []*figure.Panel{acc, mem} {
		if p.Plot.X.Min == p.Plot.X.Max {
			p.Plot.X.Min, p.Plot.X.Max = p.Plot.X.Min/1.5, p.Plot.X.Max*1.5
		}
	}
	mem.Plot.Y.Max *= 1.08
	return []*figure.Panel{acc, mem}, nil
}
