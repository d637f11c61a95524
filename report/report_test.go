package report

import (
	"bytes"
	"errors"
	"image/png"
	"regexp"
	"strings"
	"testing"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"xspan/checkpoint"
	"xspan/eval"
	"xspan/internal/figure"
	"xspan/lm"
)

func TestPNG(t *testing.T) {
	rows := []checkpoint.Row{
		{Kind: checkpoint.RowTrain, Step: 1, Tokens: 100, BPC: 5, LR: 1e-4, GradNorm: 2, MeanSpan: []float64{10, 12}, Live: []float64{20, 22}},
		{Kind: checkpoint.RowTrain, Step: 2, Tokens: 200, BPC: 4, LR: 2e-4, GradNorm: 1.5, MeanSpan: []float64{11, 13}, Live: []float64{21, 23}},
		{Kind: checkpoint.RowEval, Step: 2, Tokens: 200, BPC: 4.2, Unit: "bits per character"},
	}
	var buf bytes.Buffer
	sample := &eval.SpanSample{Step: 2, Split: "valid", MaxSpan: 64, Spans: [][]float32{{1, 5, 60}, {3, 3, 3}}}
	if err := PNG(&buf, "run", rows, sample); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf.Bytes(), []byte("\x89PNG")) {
		t.Fatal("not a PNG")
	}
	if err := PNG(&buf, "run", rows[1:], nil); !errors.Is(err, ErrTooShort) {
		t.Fatalf("one training row: err = %v, want ErrTooShort", err)
	}
}

// labels returns the labels an axis draws: its Marker's, as gonum/plot calls it.
func labels(a plot.Axis) []string {
	var out []string
	for _, tk := range a.Tick.Marker.Ticks(a.Min, a.Max) {
		if tk.Label != "" && tk.Value >= a.Min && tk.Value <= a.Max {
			out = append(out, tk.Label)
		}
	}
	return out
}

// A fixed-memory run of 750k tokens: axes labelled as people write numbers, layers
// named from 1 as eval and the page name them, the two layers' flat live lines (both
// at L) below the top edge and dashed in turns so that both show, and every legend
// beside its plot.
func TestPanelsLabelsAndLegends(t *testing.T) {
	var rows []checkpoint.Row
	for s := int64(1); s <= 6; s++ {
		rows = append(rows, checkpoint.Row{Kind: checkpoint.RowTrain, Step: s * 100, Tokens: s * 125000, BPC: 3 - 0.1*float64(s),
			LR: 1e-3, GradNorm: 1, MeanSpan: []float64{100 + float64(s), 40}, Live: []float64{1024, 1024}})
	}
	rows = append(rows, checkpoint.Row{Kind: checkpoint.RowEval, Step: 600, Tokens: 750000, BPC: 2.5, Unit: "bits per character"})
	sample := &eval.SpanSample{Step: 600, Split: "valid", MaxSpan: 1024, Spans: [][]float32{{1, 5, 600}, {3, 3, 3}}}
	panels, err := Panels("run", rows, sample)
	if err != nil {
		t.Fatal(err)
	}
	if len(panels) != 4 {
		t.Fatalf("%d panels, want bpc, memory, lr and spans", len(panels))
	}
	number := regexp.MustCompile(`^(0|[1-9][0-9]*(\.[0-9]*[1-9])?[kM]?|0\.[0-9]*[1-9]|[0-9.]+e[-+][0-9]+)$`)
	for i, p := range panels {
		for _, ax := range []plot.Axis{p.Plot.X, p.Plot.Y} {
			ls := labels(ax)
			if len(ls) < 2 {
				t.Errorf("panel %d (%s): labels %q", i, p.Plot.Title.Text, ls)
			}
			for _, l := range ls {
				if !number.MatchString(l) {
					t.Errorf("panel %d (%s): tick label %q", i, p.Plot.Title.Text, l)
				}
			}
		}
	}
	if got := strings.Join(labels(panels[0].Plot.X), " "); got != "0" && !strings.Contains(got, "250k") {
		t.Errorf("tokens axis labelled %q", got)
	}
	mem := panels[1]
	if got, want := strings.Join(mem.Names(), "; "), "mean span, layer 1; mean span, layer 2; live, layer 1; live, layer 2"; got != want {
		t.Errorf("memory legend %q, want %q", got, want)
	}
	if got := strings.Join(panels[3].Names(), "; "); !strings.HasPrefix(got, "layer 1 (mean ") || !strings.Contains(got, "; layer 2 (mean 3)") {
		t.Errorf("span histogram legend %q", got)
	}
	if mem.Plot.Y.Max <= 1024*1.05 {
		t.Errorf("memory plot's top at %v: the live lines at 1024 lie on its edge", mem.Plot.Y.Max)
	}
	var buf bytes.Buffer
	if err := PNG(&buf, "run", rows, sample); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 768 || b.Dy() != 1229 {
		t.Errorf("report %v, want 768 × 1229 (8 in, 3.2 in a panel, 96 dpi, rounded up)", b)
	}
}

// The live lines of layers that coincide take turns in their dashes: layer l's dash
// starts where the layers before it left a gap.
func TestLiveLinesDashInTurns(t *testing.T) {
	p := figure.NewPanel()
	xy := plotter.XYs{{X: 0, Y: 5}, {X: 1, Y: 5}}
	for n := 1; n <= 3; n++ {
		for l := 0; l < n; l++ {
			line, err := addDashed(p, "live", xy, l, n)
			if err != nil {
				t.Fatal(err)
			}
			period := line.Dashes[0] + line.Dashes[1]
			if line.Dashes[0] != vg.Points(dash) || (n > 1 && period != vg.Points(float64(n*dash))) || line.DashOffs != vg.Points(float64(l*dash)) {
				t.Errorf("layer %d of %d: dashes %v offset %v", l, n, line.Dashes, line.DashOffs)
			}
		}
	}
}

func TestTitle(t *testing.T) {
	cfg, _ := lm.Preset("tiny")
	rows := []checkpoint.Row{
		{Kind: checkpoint.RowTrain, Step: 100},
		{Kind: checkpoint.RowEval, Step: 100, BPC: 2.5, Unit: "bits per character"},
		{Kind: checkpoint.RowTrain, Step: 200},
		{Kind: checkpoint.RowEval, Step: 200, BPC: 2.6, Unit: "bits per character"},
	}
	got := Title("runs/b", &cfg, rows)
	want := "runs/b: 2 layers, d 128, block 128, L 1024, batch 16\nstep 200 of 200; valid 2.6000 bpc at step 200 (best 2.5000 at step 100)"
	if got != want {
		t.Fatalf("title\n%q\nwant\n%q", got, want)
	}
}
