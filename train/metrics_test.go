package train

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMetricsResumeAndTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), MetricsName)
	w, err := OpenMetrics(path, -1)
	if err != nil {
		t.Fatal(err)
	}
	for s := int64(1); s <= 5; s++ {
		w.Write(&Row{Kind: RowTrain, Step: s, Loss: float64(s)})
	}
	w.Write(&Row{Kind: RowEval, Step: 5, BPC: 2})
	w.Close()
	// A killed run may leave half a line: it is ignored.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"kind":"train","step":6,"lo`)
	f.Close()
	rows, err := ReadMetrics(path)
	if err != nil || len(rows) != 6 {
		t.Fatalf("ReadMetrics: %d rows, %v", len(rows), err)
	}
	// Resuming at step 3 drops the rows after it, the torn line too.
	w, err = OpenMetrics(path, 3)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(&Row{Kind: RowTrain, Step: 4, Loss: 40})
	w.Close()
	rows, _ = ReadMetrics(path)
	var steps []int64
	for _, r := range rows {
		steps = append(steps, r.Step)
	}
	if len(rows) != 4 || rows[3].Loss != 40 {
		t.Fatalf("after resume at 3: steps %v", steps)
	}
	// A bad line in the middle is an error naming the line.
	data, _ := os.ReadFile(path)
	bad := bytes.Replace(data, []byte("\n"), []byte("\nnot json\n"), 1)
	os.WriteFile(path, bad, 0o644)
	if _, err := ReadMetrics(path); err == nil || !strings.Contains(err.Error(), ":2:") {
		t.Fatalf("bad line: err = %v", err)
	}
}

func TestReportPNG(t *testing.T) {
	rows := []Row{
		{Kind: RowTrain, Step: 1, Tokens: 100, BPC: 5, MeanSpan: []float64{10, 12}, Live: []float64{20, 22}},
		{Kind: RowTrain, Step: 2, Tokens: 200, BPC: 4, MeanSpan: []float64{11, 13}, Live: []float64{21, 23}},
		{Kind: RowEval, Step: 2, Tokens: 200, BPC: 4.2, Unit: "bits per character"},
	}
	var buf bytes.Buffer
	sample := &SpanSample{Step: 2, Split: "valid", MaxSpan: 64, Spans: [][]float32{{1, 5, 60}, {3, 3, 3}}}
	if err := ReportPNG(&buf, "run", rows, sample); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf.Bytes(), []byte("\x89PNG")) {
		t.Fatal("not a PNG")
	}
	if err := ReportPNG(&buf, "run", rows[2:], nil); err == nil {
		t.Fatal("no training rows: no error")
	}
}
