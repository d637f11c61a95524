package report

import (
	"bytes"
	"errors"
	"testing"

	"xspan/checkpoint"
	"xspan/eval"
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
