package spanview

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"strings"
	"unicode"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gomono"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	vgdraw "gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"xspan/internal/figure"
)

// PNGOptions shape WritePNG's picture.
type PNGOptions struct {
	Title   string
	Columns int   // characters per row (default 100)
	Layers  []int // the layers drawn, 0-based (default: all)
}

// The grid's geometry, in pixels.
const (
	cellW, cellH = 9, 19
	margin       = 12
	chartH       = 210
)

var aliveColour = color.RGBA{0xe4, 0x57, 0x2e, 0xff}

// WritePNG draws s as a PNG: per layer, the text in a grid of cells coloured by span
// with the tokens still in memory underlined, a colour key, and the live memory per
// layer over the text.
func WritePNG(w io.Writer, s *Score, o PNGOptions) error {
	if o.Columns <= 0 {
		o.Columns = 100
	}
	layers := o.Layers
	if len(layers) == 0 {
		for l := 0; l < s.Layers; l++ {
			layers = append(layers, l)
		}
	}
	for _, l := range layers {
		if l < 0 || l >= s.Layers {
			return fmt.Errorf("spanview: layer %d of a model with %d layers", l+1, s.Layers)
		}
	}
	f, err := opentype.Parse(gomono.TTF)
	if err != nil {
		return err
	}
	face, err := opentype.NewFace(f, &opentype.FaceOptions{Size: 14, DPI: 72, Hinting: font.HintingFull})
	if err != nil {
		return err
	}
	defer face.Close()
	small, err := opentype.NewFace(f, &opentype.FaceOptions{Size: 12, DPI: 72, Hinting: font.HintingFull})
	if err != nil {
		return err
	}
	defer small.Close()

	cells := layout(s.Tokens, o.Columns)
	rows := 0
	for _, c := range cells {
		rows = max(rows, c.row+1)
	}
	width := max(2*margin+o.Columns*cellW, 640)
	head := 3 * cellH                     // title, summary, key
	block := cellH + rows*cellH + cellH/2 // caption, grid, gap
	height := margin + head + len(layers)*block + chartH + margin
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	text := func(fc font.Face, x, y int, s string, c color.Color) int {
		d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: fc, Dot: fixed.P(x, y)}
		d.DrawString(s)
		return d.Dot.X.Round()
	}
	y := margin + 14
	title := o.Title
	if title == "" {
		title = s.Model
	}
	text(face, margin, y, title, color.Black)
	y += cellH
	sum := fmt.Sprintf("%d tokens", len(s.Tokens))
	if s.BPC != nil {
		sum += fmt.Sprintf("; %.3f bits per character over %d characters", *s.BPC, s.ScoredChars)
	}
	text(small, margin, y, sum, color.Gray{0x33})
	y += cellH
	// The key: the colour scale, then the mark of memories still held.
	x := margin
	if s.Expire {
		x = text(small, x, y, "span: 0 ", color.Gray{0x33})
		for i := 0; i < 120; i++ {
			r, g, b := Colour(float64(i) / 119)
			fill(img, x+i, y-11, 1, 13, color.RGBA{r, g, b, 0xff})
		}
		x = text(small, x+124, y, fmt.Sprintf("%g tokens (log scale)", s.MaxSpan), color.Gray{0x33})
	} else {
		x = text(small, x, y, fmt.Sprintf("fixed memory of the last %g tokens", s.MaxSpan), color.Gray{0x33})
	}
	x += 20
	fill(img, x, y-12, 14, cellH-4, color.Gray{0xee})
	fill(img, x, y+1, 14, 3, aliveColour)
	text(small, x+20, y, "still in memory after the text", color.Gray{0x33})
	y += cellH / 2

	for _, l := range layers {
		y += cellH
		caption := fmt.Sprintf("layer %d: %d of %d tokens still in memory", l+1, s.AliveCount(l), len(s.Tokens))
		if s.Expire {
			caption = fmt.Sprintf("layer %d: mean span %.1f tokens; %d of %d tokens still in memory", l+1, s.MeanSpan(l), s.AliveCount(l), len(s.Tokens))
		}
		text(small, margin, y, caption, color.Black)
		top := y + 5
		for _, c := range cells {
			t := s.Tokens[c.tok]
			cx, cy := margin+c.col*cellW, top+c.row*cellH
			fg := color.Color(color.Black)
			if s.Expire && l < len(t.Spans) {
				sh := Shade(float64(t.Spans[l]), s.MaxSpan)
				r, g, b := Colour(sh)
				fill(img, cx, cy, cellW, cellH, color.RGBA{r, g, b, 0xff})
				if DarkText(sh) {
					fg = color.White
				}
			}
			if c.faint {
				fg = color.Gray{0x88}
			}
			if l < len(t.Alive) && t.Alive[l] {
				fill(img, cx, cy+cellH-3, cellW, 3, aliveColour)
			}
			text(face, cx, cy+14, string(c.r), fg)
		}
		y = top + rows*cellH + cellH/2
	}
	chart, err := liveChart(s, width, chartH)
	if err != nil {
		return err
	}
	draw.Draw(img, image.Rect(0, y, width, y+chartH), chart, chart.Bounds().Min, draw.Over)
	return png.Encode(w, img)
}

func fill(img *image.RGBA, x, y, w, h int, c color.Color) {
	draw.Draw(img, image.Rect(x, y, x+w, y+h), image.NewUniform(c), image.Point{}, draw.Src)
}

// cell is one character of the grid: the token it belongs to and where it goes.
type cell struct {
	tok, row, col int
	r             rune
	faint         bool // a stand-in for an invisible character
}

// layout places the tokens' characters in rows of cols cells, breaking after newlines.
// A token without text (the first bytes of a character) gets no cell.
func layout(tokens []Token, cols int) []cell {
	var out []cell
	row, col := 0, 0
	put := func(tok int, r rune, faint bool) {
		if col >= cols {
			row, col = row+1, 0
		}
		out = append(out, cell{tok: tok, row: row, col: col, r: r, faint: faint})
		col++
	}
	for i, t := range tokens {
		for _, r := range t.Text {
			switch {
			case r == '\n':
				put(i, '¶', true)
				row, col = row+1, 0
			case r == '\t':
				put(i, '»', true)
			case !unicode.IsPrint(r) && r != ' ':
				put(i, '·', true)
			default:
				put(i, r, false)
			}
		}
	}
	return out
}

// liveChart plots the live memory per layer over the text, its legend beside it.
func liveChart(s *Score, width, height int) (image.Image, error) {
	p, err := livePanel(s)
	if err != nil {
		return nil, err
	}
	c := vgimg.NewWith(vgimg.UseWH(vg.Length(width), vg.Length(height)), vgimg.UseDPI(72))
	figure.Draw(vgdraw.New(c), []*figure.Panel{p})
	return c.Image(), nil
}

// livePanel is the chart of liveChart: per layer, the memories held after each token.
func livePanel(s *Score) (*figure.Panel, error) {
	p := figure.NewPanel()
	p.Plot.Title.Text = "memories held per layer after each token"
	p.Plot.X.Label.Text = "token"
	p.Plot.Y.Label.Text = "memories"
	top := 1
	for l, row := range s.Live {
		pts := make(plotter.XYs, len(row))
		for i, v := range row {
			pts[i].X, pts[i].Y = float64(i+1), float64(v)
			top = max(top, v)
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return nil, err
		}
		line.Color = lineColours[l%len(lineColours)]
		line.Width = vg.Points(1.5)
		p.Add(fmt.Sprintf("layer %d", l+1), line)
	}
	p.Plot.Y.Min, p.Plot.Y.Max = 0, float64(top)*1.08
	return p, nil
}

var lineColours = []color.Color{
	color.RGBA{0x1f, 0x77, 0xb4, 0xff}, color.RGBA{0xff, 0x7f, 0x0e, 0xff}, color.RGBA{0x2c, 0xa0, 0x2c, 0xff},
	color.RGBA{0xd6, 0x27, 0x28, 0xff}, color.RGBA{0x94, 0x67, 0xbd, 0xff}, color.RGBA{0x8c, 0x56, 0x4b, 0xff},
	color.RGBA{0xe3, 0x77, 0xc2, 0xff}, color.RGBA{0x7f, 0x7f, 0x7f, 0xff}, color.RGBA{0xbc, 0xbd, 0x22, 0xff},
	color.RGBA{0x17, 0xbe, 0xcf, 0xff},
}

// Title names a picture: its model, and what it shows.
func Title(model string, n int) string {
	return strings.TrimSpace(fmt.Sprintf("what %s remembers of %d tokens", model, n))
}
