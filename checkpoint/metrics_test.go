package checkpoint

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
