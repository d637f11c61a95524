package report

import (
	"bytes"
	"testing"

	"xspan/checkpoint"
	"xspan/eval"
)

func TestPNG(t *testing.T) {
	rows := []checkpoint.Row{
		{Kind: checkpoint.RowTrain, Step: 1, Tokens: 100, BPC: 5, MeanSpan: []float64{10, 12}, Live: []float64{20, 22}},
		{Kind: checkpoint.RowTrain, Step: 2, Tokens: 200, BPC: 4, MeanSpan: []float64{11, 13}, Live: []float64{21, 23}},
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
	if err := PNG(&buf, "run", rows[2:], nil); err == nil {
		t.Fatal("no training rows: no error")
	}
}
