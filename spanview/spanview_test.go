package spanview

import (
	"bytes"
	"image/png"
	"math"
	"strings"
	"testing"

	"gonum.org/v1/plot"
)

func testScore() *Score {
	s := &Score{Layers: 2, MaxSpan: 100, Ramp: 4, Expire: true, Model: "test"}
	text := "ab\ncd✓e"
	i := 0
	for _, r := range text {
		t := Token{ID: i, Text: string(r), Spans: []float32{float32(i * 10), 1}, Alive: []bool{i > 3, i == 6}}
		if i > 0 {
			b := float64(i)
			t.Bits = &b
		}
		s.Tokens = append(s.Tokens, t)
		i++
	}
	s.Live = [][]int{{1, 2, 3, 3, 3, 4, 4}, {1, 1, 1, 1, 1, 1, 1}}
	s.Finish()
	return s
}

func TestScoreSummaryAndColours(t *testing.T) {
	s := testScore()
	if s.ScoredTokens != 6 || s.ScoredChars != 6 || s.Bits != 21 || s.BPC == nil || *s.BPC != 3.5 {
		t.Fatalf("scored %d tokens, %d chars, %v bits, bpc %v", s.ScoredTokens, s.ScoredChars, s.Bits, s.BPC)
	}
	if s.MeanSpan(0) != 30 || s.AliveCount(0) != 3 || s.AliveCount(1) != 1 || Age(6, 7) != 0 || Age(0, 7) != 6 {
		t.Fatalf("mean span %v, alive %d %d", s.MeanSpan(0), s.AliveCount(0), s.AliveCount(1))
	}
	if Shade(0, 100) != 0 || Shade(100, 100) != 1 || Shade(1000, 100) != 1 || math.Abs(Shade(9, 99)-0.5) > 1e-12 {
		t.Fatalf("shades %v %v %v", Shade(0, 100), Shade(100, 100), Shade(9, 99))
	}
	if r, g, b := Colour(0); r != 255 || g != 255 || b != 204 {
		t.Fatalf("short spans: %d %d %d", r, g, b)
	}
	if r, g, b := Colour(1); r != 37 || g != 52 || b != 148 {
		t.Fatalf("long spans: %d %d %d", r, g, b)
	}
	cells := layout(s.Tokens, 3)
	// "ab¶" on row 0, then "cd✓" and "e" after the break.
	if len(cells) != 7 || cells[2].r != '¶' || !cells[2].faint || cells[3].row != 1 || cells[3].col != 0 || cells[6].row != 2 {
		t.Fatalf("layout %+v", cells)
	}
}

func TestWriteHTMLAndPNG(t *testing.T) {
	s := testScore()
	s.Tokens[0].Text = "</script><b>"
	var b bytes.Buffer
	if err := WriteHTML(&b, s, "a <title>"); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if !strings.Contains(page, "<title>a &lt;title&gt;</title>") || !strings.Contains(page, "function xspanView") ||
		strings.Count(page, "</script>") != 2 || !strings.Contains(page, `"max_span":100`) {
		t.Fatalf("page:\n%s", page[:min(len(page), 400)])
	}
	b.Reset()
	if err := WritePNG(&b, s, PNGOptions{Columns: 20}); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&b)
	if err != nil || img.Bounds().Dx() != 640 {
		t.Fatalf("png: %v %v", err, img.Bounds())
	}
	if err := WritePNG(&b, s, PNGOptions{Layers: []int{2}}); err == nil {
		t.Fatalf("layer 3 of 2 drawn")
	}
}

// The live-memory chart of the PNG: layers named from 1, integer axes labelled as
// integers, its top above the highest line.
func TestLivePanel(t *testing.T) {
	s := testScore()
	p, err := livePanel(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.Names(), ", "); got != "layer 1, layer 2" {
		t.Errorf("legend %q", got)
	}
	if p.Plot.Y.Max <= 4 {
		t.Errorf("top of the chart at %v: the line at 4 lies on its edge", p.Plot.Y.Max)
	}
	for _, a := range []plot.Axis{p.Plot.X, p.Plot.Y} {
		for _, tk := range a.Tick.Marker.Ticks(a.Min, a.Max) {
			if tk.Label != "" && strings.Contains(tk.Label, ".") {
				t.Errorf("tick label %q on an axis of counts", tk.Label)
			}
		}
	}
}
