package train

import (
	"io"

	"bytes"
	"github.com/schollz/progressbar/v3"
	"strings"
	"testing"
	"xspan/checkpoint"
)

// A logged interval far below the run's best throughput says so; one near it does not.
func TestProgressSaysWhenThroughputCollapses(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, 0, 40, false)
	for i, tps := range []float64{9000, 10000, 8000, 3000} {
		p.step(int64(10*(i+1)), &checkpoint.Row{Loss: 2, BPC: 2.9, TokPerSec: tps}, true)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines:\n%s", len(lines), out.String())
	}
	for i, l := range lines[:3] {
		if strings.Contains(l, "slow") {
			t.Errorf("line %d (within 2× of the best) says slow: %s", i, l)
		}
	}
	if !strings.Contains(lines[3], "slow: 3.3× below this run's best 10.0k tok/s") {
		t.Errorf("3,000 tok/s after a best of 10,000 is not called slow: %s", lines[3])
	}
}

// The progress bar shows what the plain lines show: learning rate, gradient norm, RSS.
func TestProgressBarShowsTheLineFigures(t *testing.T) {
	p := newProgress(io.Discard, 0, 10, false)
	var out bytes.Buffer
	p.w = &out
	p.bar = progressbar.NewOptions64(10, progressbar.OptionSetWriter(&out), progressbar.OptionThrottle(0))
	p.step(1, &checkpoint.Row{Loss: 2.5, BPC: 3.6, LR: 7e-4, GradNorm: 0.25, TokPerSec: 9000, RSS: 456}, false)
	for _, want := range []string{"loss 2.500", "bpc 3.600", "lr 0.0007", "|g| 0.25", "9000 tok/s", "rss 456 MiB"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("bar lacks %q: %q", want, out.String())
		}
	}
}
