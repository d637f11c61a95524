package bench

import (
	"bytes"
	"image/png"
	"strings"
	"testing"

	"gonum.org/v1/plot"
)

// The copy task's plot labels its gap axis at every gap measured (LogTicks labelled
// only 1000 over gaps 256 … 8192), its other axes as people write numbers, and keeps
// each legend beside its plot.
func TestCopyPanelsLabelEveryGap(t *testing.T) {
	var rows []CopyRow
	for _, gap := range []int{512, 2048, 8192} {
		for _, m := range []string{"expire-span", "transformer-xl", "last-l"} {
			rows = append(rows, CopyRow{Model: m, Gap: gap, Accuracy: 0.5, Chance: 0.125, MeanLive: []float64{100, 90}})
		}
	}
	panels, err := CopyPanels(rows)
	if err != nil {
		t.Fatal(err)
	}
	labels := func(a plot.Axis) string {
		var out []string
		for _, tk := range a.Tick.Marker.Ticks(a.Min, a.Max) {
			if tk.Label != "" && tk.Value >= a.Min && tk.Value <= a.Max {
				out = append(out, tk.Label)
			}
		}
		return strings.Join(out, " ")
	}
	for i, p := range panels {
		if got := labels(p.Plot.X); got != "512 2048 8192" {
			t.Errorf("panel %d: gap axis labelled %q, want every gap", i, got)
		}
	}
	if got := labels(panels[0].Plot.Y); got != "0 0.5 1" {
		t.Errorf("accuracy axis labelled %q", got)
	}
	if got := strings.Join(panels[0].Names(), ", "); got != "expire-span, transformer-xl, last-l, chance" {
		t.Errorf("accuracy legend %q", got)
	}
	// One gap alone (a quick run of one gap) still plots, on a widened axis.
	one, err := CopyPanels(rows[:3])
	if err != nil {
		t.Fatal(err)
	}
	if got := labels(one[0].Plot.X); got != "512" {
		t.Errorf("one gap: axis labelled %q", got)
	}
	var buf bytes.Buffer
	if err := CopyPNG(&buf, rows); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 768 || b.Dy() != 672 {
		t.Errorf("copy.png %v, want 768 × 672 (8 × 7 in at 96 dpi)", b)
	}
}
