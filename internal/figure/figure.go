// Package figure holds what xspan's pictures (the run report, the copy task's plot, the
// spans PNG's chart) share on top of gonum/plot: tick labels written as people write
// numbers ("250k", "1.5M", "0.25", never "250000.00"), and legends drawn in a column
// beside their plot, where they cannot cover a line or run off the picture.
package figure

import (
	"io"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Number writes a tick value compactly: at most six significant digits with no trailing
// zeros, thousands as k from 10,000, millions as M and billions as G (1024 stays 1024).
func Number(v float64) string {
	if v == 0 {
		return "0" // also -0
	}
	a := math.Abs(v)
	switch {
	case a >= 1e9:
		return short(v/1e9) + "G"
	case a >= 1e6:
		return short(v/1e6) + "M"
	case a >= 1e4:
		return short(v/1e3) + "k"
	}
	return short(v)
}

func short(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

// Ticks places an axis's ticks where plot.DefaultTicks does and labels the major ones
// with Number.
type Ticks struct{}

// Ticks implements plot.Ticker.
func (Ticks) Ticks(min, max float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = Number(ts[i].Value)
		}
	}
	return ts
}

// At labels an axis at exactly these values (with Number), as for a log axis over a few
// measured points that plot.LogTicks would label only at powers of ten.
type At []float64

// Ticks implements plot.Ticker: the values within [min, max].
func (a At) Ticks(min, max float64) []plot.Tick {
	var ts []plot.Tick
	for _, v := range a {
		if v >= min && v <= max {
			ts = append(ts, plot.Tick{Value: v, Label: Number(v)})
		}
	}
	return ts
}

// Panel is a plot with the legend that goes beside it. Its plot's own Legend stays
// empty: Draw puts the legend in a column to the plot's right.
type Panel struct {
	Plot   *plot.Plot
	Legend plot.Legend
	names  []string
}

// Names are the legend's entries, in order.
func (p *Panel) Names() []string { return p.names }

// NewPanel returns a panel with an empty plot whose axes are labelled with Ticks.
func NewPanel() *Panel {
	p := plot.New()
	p.X.Tick.Marker, p.Y.Tick.Marker = Ticks{}, Ticks{}
	l := plot.NewLegend()
	l.Top, l.Left = true, true
	l.TextStyle.Font.Size = vg.Points(10)
	l.ThumbnailWidth = vg.Points(22)
	return &Panel{Plot: p, Legend: l}
}

// Add adds plotters to the plot and, when name is not empty, an entry to the legend
// drawn with their thumbnails.
func (p *Panel) Add(name string, ps ...plot.Plotter) {
	p.Plot.Add(ps...)
	if name == "" {
		return
	}
	var th []plot.Thumbnailer
	for _, x := range ps {
		if t, ok := x.(plot.Thumbnailer); ok {
			th = append(th, t)
		}
	}
	p.Legend.Add(name, th...)
	p.names = append(p.names, name)
}

// legendGap is the space between a plot and its legend column, legendMargin the space
// between the column and the picture's right edge.
const (
	legendGap    = 3 * vg.Millimeter
	legendMargin = 3 * vg.Millimeter
)

// Layout is where Draw puts each panel: its plot's canvas (axes and title included), the
// data area within it, and its legend's column.
type Layout struct {
	Plot, Data, Legend []vg.Rectangle
}

// Draw draws panels one above the other onto c, their data areas aligned, each legend
// in a column to the right of all the plots (as wide as the widest legend), level with
// the top of its plot's data area. It returns where everything went.
func Draw(c draw.Canvas, panels []*Panel) Layout {
	var legendW vg.Length
	for _, p := range panels {
		r := p.Legend.Rectangle(c)
		legendW = max(legendW, r.Max.X-r.Min.X)
	}
	plotsC := c
	if legendW > 0 {
		plotsC = draw.Crop(c, 0, -(legendW + legendGap + legendMargin), 0, 0)
	}
	rows := make([][]*plot.Plot, len(panels))
	for i, p := range panels {
		rows[i] = []*plot.Plot{p.Plot}
	}
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadX: vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 2 * vg.Millimeter}
	canvases := plot.Align(rows, tiles, plotsC)
	var lay Layout
	for i, p := range panels {
		pc := canvases[i][0]
		p.Plot.Draw(pc)
		data := p.Plot.DataCanvas(pc)
		lc := draw.Canvas{Canvas: c.Canvas, Rectangle: vg.Rectangle{
			Min: vg.Point{X: pc.Max.X + legendGap, Y: data.Min.Y},
			Max: vg.Point{X: c.Max.X - legendMargin, Y: data.Max.Y},
		}}
		p.Legend.Draw(lc)
		lay.Plot = append(lay.Plot, pc.Rectangle)
		lay.Data = append(lay.Data, data.Rectangle)
		// Legend.Rectangle gives the size; the place is Draw's (top left of lc).
		r := p.Legend.Rectangle(lc)
		lay.Legend = append(lay.Legend, vg.Rectangle{
			Min: vg.Point{X: lc.Min.X, Y: lc.Max.Y - (r.Max.Y - r.Min.Y)},
			Max: vg.Point{X: lc.Min.X + (r.Max.X - r.Min.X), Y: lc.Max.Y},
		})
	}
	return lay
}

// WritePNG draws panels (as Draw does) on a white picture of the given size and writes
// it as a PNG.
func WritePNG(w io.Writer, width, height vg.Length, dpi int, panels []*Panel) (Layout, error) {
	img := vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(dpi))
	dc := draw.New(img)
	lay := Draw(dc, panels)
	_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(w)
	return lay, err
}
