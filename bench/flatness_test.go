package bench

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"xspan/generate"
	"xspan/generate/gentest"
)

func TestFlatnessFake(t *testing.T) {
	pruned := 0
	runs, err := Flatness(context.Background(), func(pruning bool) (generate.Stepper, error) {
		if pruning {
			pruned++
		}
		return gentest.NewStepper(64, 2, 100, pruning), nil
	}, []int64{1, 2, 3}, FlatnessConfig{Tokens: 3000, Marks: []int{3000, 1000, 99999, 2000}, Window: 100, BytesPerMemory: 512})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || !runs[0].Pruning || runs[1].Pruning || pruned != 1 {
		t.Fatalf("runs %+v", runs)
	}
	for _, r := range runs {
		if len(r.Marks) != 3 || r.Marks[0].Tokens != 1000 || r.Marks[2].Tokens != 3000 {
			t.Fatalf("marks %+v", r.Marks)
		}
	}
	on, off := runs[0].Marks, runs[1].Marks
	if !slices.Equal(on[0].Live, on[2].Live) || !slices.Equal(on[2].Live, []int{100, 101}) {
		t.Errorf("pruned memory should stay flat: %v → %v", on[0].Live, on[2].Live)
	}
	// 3 prompt tokens plus one feed per new token.
	if !slices.Equal(off[0].Live, []int{1003, 1003}) || !slices.Equal(off[2].Live, []int{3003, 3003}) {
		t.Errorf("unpruned memory should grow: %v → %v", off[0].Live, off[2].Live)
	}
	// Step times in one unit: a window of 1 ms steps and one 100 ms pause has a median of
	// 1 and a mean of 1.99 ms (no "tok/s" column beside ms/token to contradict it).
	window := make([]time.Duration, 100)
	for i := range window {
		window[i] = time.Millisecond
	}
	window[50] = 100 * time.Millisecond
	if m := measure(window, 100, gentest.NewStepper(10, 1, 10, true)); m.MsPerToken != 1 || m.MsP10 != 1 || math.Abs(m.MsMean-1.99) > 1e-9 {
		t.Errorf("window of 99 × 1 ms and one 100 ms: median %v, p10 %v, mean %v; want 1, 1, 1.99", m.MsPerToken, m.MsP10, m.MsMean)
	}
	var b strings.Builder
	WriteFlatness(&b, runs, FlatnessConfig{BytesPerMemory: 512})
	if head, _, _ := strings.Cut(b.String(), "\n"); strings.Contains(head, "tok/s") || !strings.Contains(head, "ms mean") {
		t.Errorf("table header %q", head)
	}
	out := b.String()
	for _, want := range []string{"ms/token", "on          1000", "off         3000", "live memories ×1.00 (201 → 201)", "live memories ×2.99 (2006 → 6006)", "100.5 KiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
