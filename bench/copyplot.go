package bench

import (
	"fmt"
	"io"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// CopyPNG draws the grid: copy accuracy against the gap per model, with chance, and the
// mean live memory (over layers) per model.
func CopyPNG(w io.Writer, rows []CopyRow) error {
	if len(rows) == 0 {
		return fmt.Errorf("no rows to plot")
	}
	models := []string{}
	for _, r := range rows {
		if !slices.Contains(models, r.Model) {
			models = append(models, r.Model)
		}
	}
	acc, mem := plot.New(), plot.New()
	acc.Title.Text = "copy task: accuracy on the copied tokens (test split)"
	acc.X.Label.Text, acc.Y.Label.Text = "gap (tokens)", "copy accuracy"
	acc.Y.Min, acc.Y.Max = 0, 1
	mem.Title.Text = "mean live memory per layer"
	mem.X.Label.Text, mem.Y.Label.Text = "gap (tokens)", "keys"
	for _, p := range []*plot.Plot{acc, mem} {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Add(plotter.NewGrid())
		p.Legend.Top = true
	}
	mem.Y.Min = 0
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
			p  *plot.Plot
			xy plotter.XYs
		}{{acc, a}, {mem, m}} {
			l, p, err := plotter.NewLinePoints(pl.xy)
			if err != nil {
				return err
			}
			l.Color, p.Color = plotutil.Color(i), plotutil.Color(i)
			l.Width = vg.Points(1.5)
			p.Shape = plotutil.Shape(i)
			pl.p.Add(l, p)
			pl.p.Legend.Add(name, l, p)
		}
	}
	if len(chance) > 0 {
		l, err := plotter.NewLine(chance)
		if err != nil {
			return err
		}
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		l.Color = plotutil.Color(len(models))
		acc.Add(l)
		acc.Legend.Add("chance", l)
	}
	img := vgimg.New(7*vg.Inch, 7*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadX: vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
	canvases := plot.Align([][]*plot.Plot{{acc}, {mem}}, tiles, dc)
	acc.Draw(canvases[0][0])
	mem.Draw(canvases[1][0])
	_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(w)
	return err
}
