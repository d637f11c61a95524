package lm

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/sugarme/gotch"

	"xspan/internal/torchrt"
)

// benchmarkStep times forward + backward of one training block of a preset (batch 16, as
// in the reference CPU figures of the README) after a few warm-up blocks have filled the memory, and
// reports tokens/s and the live memory per layer.
func benchmarkStep(b *testing.B, preset string) {
	defer torchrt.Lock()()
	threads := 0
	if v, err := strconv.Atoi(os.Getenv("XSPAN_BENCH_THREADS")); err == nil {
		threads = v
	}
	torchrt.SetThreads(threads)
	rng := torchrt.Seed(1)
	cfg, _ := Preset(preset)
	cfg.Vocab = 73
	m, err := New(cfg, gotch.CPU)
	if err != nil {
		b.Fatal(err)
	}
	mem := m.NewMemory(cfg.Batch)
	step := func(i int) *StepResult {
		blk := tensor2(tokens(cfg.Batch*(cfg.Block+1), cfg.Vocab, uint64(i)), cfg.Batch, cfg.Block+1)
		res, err := m.Step(mem, blk, StepOptions{Train: true, RNG: rng})
		if err != nil {
			b.Fatal(err)
		}
		loss := res.TaskLoss.MustAdd(res.SpanLoss, false)
		loss.MustBackward()
		loss.MustDrop()
		for _, p := range m.Parameters() {
			p.ZeroGrad()
		}
		blk.MustDrop()
		if os.Getenv("XSPAN_BENCH_GC") == "1" {
			runtime.GC()
		}
		return res
	}
	for i := 0; i < 6; i++ {
		step(i).Drop()
	}
	cpu0 := cpuSeconds()
	b.ResetTimer()
	var res *StepResult
	for i := 0; i < b.N; i++ {
		if res != nil {
			res.Drop()
		}
		res = step(100 + i)
	}
	b.StopTimer()
	// CPU seconds per step: on a busy shared machine a steadier figure than wall time.
	b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/step")
	b.ReportMetric(float64(cfg.Batch*cfg.Block)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
	b.ReportMetric(res.Stats.Live[0], "live-keys-layer0")
	b.ReportMetric(float64(peakRSSKiB())/1024, "peak-RSS-MiB")
	b.Logf("%s: live memory per layer %v, mean span %v", preset, res.Stats.Live, fmt.Sprintf("%.1f", res.Stats.MeanSpan))
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// peakRSSKiB reads the process's peak resident set size (VmHWM).
func peakRSSKiB() int64 { return readStatus("VmHWM:") }

// readStatus reads a kB figure of /proc/self/status.
func readStatus(key string) int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

func BenchmarkStepTiny(b *testing.B)  { benchmarkStep(b, "tiny") }
func BenchmarkStepSmall(b *testing.B) { benchmarkStep(b, "small") }
