package train

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"xspan/checkpoint"
)

// progress shows how training goes: a progress bar on a terminal, plain lines otherwise.
type progress struct {
	w     io.Writer
	bar   *progressbar.ProgressBar
	total int64
	start time.Time
	first int64   // step at start (a resumed run starts past 0)
	best  float64 // the best tokens/s of a logged interval so far
}

// slowFactor is how far below the run's own best throughput a logged interval must fall
// for the progress line to say so: another process holding a core is the usual cause.
const slowFactor = 2

// slowNote returns a remark when tokens/s falls far below the run's best, and records a
// new best.
func (p *progress) slowNote(tokPerSec float64, logLine bool) string {
	if tokPerSec > p.best {
		if logLine {
			p.best = tokPerSec
		}
		return ""
	}
	if p.best > 0 && tokPerSec*slowFactor < p.best {
		return fmt.Sprintf("  [slow: %.1f× below this run's best %s tok/s; another process may hold a core]", p.best/tokPerSec, siCount(p.best))
	}
	return ""
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func newProgress(w io.Writer, first, total int64, bar bool) *progress {
	p := &progress{w: w, total: total, start: time.Now(), first: first}
	if w == nil {
		p.w = io.Discard
		return p
	}
	if bar && isTerminal(w) {
		p.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetWidth(24),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionSetRenderBlankState(true),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
		)
		p.bar.Set64(first)
	}
	return p
}

// step reports step (updates done) with the latest figures; a plain line is printed only
// when logLine is set.
func (p *progress) step(step int64, r *checkpoint.Row, logLine bool) {
	note := p.slowNote(r.TokPerSec, logLine)
	if p.bar != nil {
		slow := ""
		if note != "" {
			slow = " (slow)"
		}
		p.bar.Describe(fmt.Sprintf("loss %.3f bpc %.3f lr %.2g |g| %.2g %s tok/s%s rss %.0f MiB", r.Loss, r.BPC, r.LR, r.GradNorm, siCount(r.TokPerSec), slow, r.RSS))
		p.bar.Set64(step)
		return
	}
	if !logLine {
		return
	}
	eta := "?"
	if done := step - p.first; done > 0 {
		left := time.Duration(float64(time.Since(p.start)) / float64(done) * float64(p.total-step))
		eta = left.Round(time.Second).String()
	}
	fmt.Fprintf(p.w, "step %d/%d  loss %.4f  bpc %.4f  span-loss %.3g  lr %.3g  |g| %.3g  %s tok/s  rss %.0f MiB  eta %s%s\n",
		step, p.total, r.Loss, r.BPC, r.SpanLoss, r.LR, r.GradNorm, siCount(r.TokPerSec), r.RSS, eta, note)
}

// logf prints a line of its own (clearing the bar first).
func (p *progress) logf(format string, a ...any) {
	if p.bar != nil {
		p.bar.Clear()
	}
	fmt.Fprintf(p.w, format+"\n", a...)
}

// finish ends the bar.
func (p *progress) finish() {
	if p.bar != nil {
		p.bar.Exit()
		fmt.Fprintln(p.w)
	}
}

// siCount writes a rate with a k or M suffix.
func siCount(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e4:
		return fmt.Sprintf("%.1fk", x/1e3)
	default:
		return fmt.Sprintf("%.0f", x)
	}
}
