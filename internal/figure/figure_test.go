package figure

import (
	"bytes"
	"image/png"
	"testing"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

func TestNumber(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0", 250000: "250k", 500000: "500k", 1e6: "1M", 1.5e6: "1.5M", 2.25e9: "2.25G", 12500: "12.5k",
		1024: "1024", 7500: "7500", 0.25: "0.25", 0.1 + 0.2: "0.3", 2.5: "2.5", 3: "3", -250000: "-250k", 1e-5: "1e-05",
	} {
		if got := Number(v); got != want {
			t.Errorf("Number(%v) = %q, want %q", v, got, want)
		}
	}
}

// The labels of an axis come from its Marker, as gonum/plot draws them: Ticks keeps
// DefaultTicks' positions and writes their labels with Number, where DefaultTicks wrote
// "250000.00" (a step of 2.5 adds two decimals) and "0.00".
func TestTicksRelabelDefaultTicks(t *testing.T) {
	def := plot.DefaultTicks{}.Ticks(0, 750000)
	ours := Ticks{}.Ticks(0, 750000)
	if len(ours) != len(def) {
		t.Fatalf("%d ticks, DefaultTicks gives %d", len(ours), len(def))
	}
	var labels, defLabels []string
	for i := range def {
		if ours[i].Value != def[i].Value || (ours[i].Label == "") != (def[i].Label == "") {
			t.Fatalf("tick %d: %+v, DefaultTicks %+v", i, ours[i], def[i])
		}
		if def[i].Label != "" {
			labels, defLabels = append(labels, ours[i].Label), append(defLabels, def[i].Label)
		}
	}
	t.Logf("DefaultTicks: %q; ours: %q", defLabels, labels)
	want := []string{"0", "250k", "500k", "750k"}
	if len(labels) != len(want) {
		t.Fatalf("labels %q, want %q", labels, want)
	}
	for i := range want {
		if labels[i] != want[i] {
			t.Fatalf("labels %q, want %q", labels, want)
		}
	}
	// What the pictures said before (gonum/plot v0.15.2): a run report of 750k tokens.
	if defLabels[1] != "250000.00" || defLabels[0] != "0.00" {
		t.Logf("(DefaultTicks now labels these %q)", defLabels)
	}
	// Halves keep their one decimal and lose DefaultTicks' trailing zero.
	var half []string
	for _, tk := range (Ticks{}).Ticks(0, 1) {
		if tk.Label != "" {
			half = append(half, tk.Label)
		}
	}
	if len(half) != 3 || half[0] != "0" || half[1] != "0.5" || half[2] != "1" {
		t.Errorf("[0, 1] labelled %q, want 0, 0.5, 1", half)
	}
}

func TestAt(t *testing.T) {
	ts := At{256, 512, 1024, 8192}.Ticks(300, 2000)
	if len(ts) != 2 || ts[0].Label != "512" || ts[1].Label != "1024" {
		t.Fatalf("ticks %+v", ts)
	}
}

// Draw puts each legend in a column right of every plot: no legend can cover a line,
// and it stays within the picture.
func TestDrawLegendBesidePlot(t *testing.T) {
	var panels []*Panel
	for k := 0; k < 2; k++ {
		p := NewPanel()
		for i := 0; i < 3; i++ {
			l, err := plotter.NewLine(plotter.XYs{{X: 0, Y: float64(i)}, {X: 1e6, Y: float64(i + 1)}})
			if err != nil {
				t.Fatal(err)
			}
			p.Add("a rather long legend entry", l)
		}
		panels = append(panels, p)
	}
	var buf bytes.Buffer
	lay, err := WritePNG(&buf, 6*vg.Inch, 6*vg.Inch, 96, panels)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() != 576 || img.Bounds().Dy() != 576 {
		t.Fatalf("picture %v", img.Bounds())
	}
	for i := range panels {
		plotR, dataR, legR := lay.Plot[i], lay.Data[i], lay.Legend[i]
		if legR.Min.X < plotR.Max.X || legR.Max.X > 6*vg.Inch-legendMargin+0.01 || legR.Min.X >= legR.Max.X {
			t.Errorf("panel %d: legend %v beside a plot %v in a picture 6 inches wide", i, legR, plotR)
		}
		if legR.Max.Y > dataR.Max.Y+0.01 || legR.Min.Y < dataR.Min.Y-0.01 {
			t.Errorf("panel %d: legend %v outside its data area's height %v", i, legR, dataR)
		}
	}
}
