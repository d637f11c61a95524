package generate

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// Stats is a snapshot of a running generation.
type Stats struct {
	Tokens       int           // new tokens so far
	Elapsed      time.Duration // since the first new token was drawn
	TokensPerSec float64       // over the whole generation
	RecentPerSec float64       // since the previous snapshot
	Live         []int         // live memories per layer
	Dropped      int64         // memories dropped so far
	RSS          int64         // resident set size of the process in bytes (0: unknown)
	Final        bool          // the snapshot at the end
}

// LiveTotal is the number of live memories over all layers.
func (s Stats) LiveTotal() int { return sum(s.Live) }

func sum(xs []int) int {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t
}

// String is the one-line form that --stats prints.
func (s Stats) String() string {
	var b strings.Builder
	if s.Final {
		b.WriteString("stats (end): ")
	} else {
		b.WriteString("stats: ")
	}
	fmt.Fprintf(&b, "%d tokens in %.2fs, %.1f tok/s", s.Tokens, s.Elapsed.Seconds(), s.TokensPerSec)
	if !s.Final {
		fmt.Fprintf(&b, " (recent %.1f)", s.RecentPerSec)
	}
	fmt.Fprintf(&b, "; live memories %v = %d; dropped %d; rss %s", s.Live, s.LiveTotal(), s.Dropped, FormatBytes(s.RSS))
	return b.String()
}

// StatsPrinter returns an OnStats that writes each snapshot as one line to w.
func StatsPrinter(w io.Writer) func(Stats) {
	return func(s Stats) { fmt.Fprintln(w, s.String()) }
}

// statsClock turns a Stepper's state into Stats snapshots.
type statsClock struct {
	start      time.Time
	lastT      time.Time
	lastTokens int
}

func (c *statsClock) stats(tokens int, st Stepper, final bool) Stats {
	now := time.Now()
	if c.lastT.IsZero() {
		c.lastT = c.start
	}
	s := Stats{Tokens: tokens, Elapsed: now.Sub(c.start), Live: st.Live(), Dropped: st.Dropped(), Final: final}
	if secs := s.Elapsed.Seconds(); secs > 0 {
		s.TokensPerSec = float64(tokens) / secs
	}
	if secs := now.Sub(c.lastT).Seconds(); secs > 0 {
		s.RecentPerSec = float64(tokens-c.lastTokens) / secs
	}
	s.RSS, _ = ProcessRSS()
	c.lastT, c.lastTokens = now, tokens
	return s
}

// ProcessRSS returns this process's resident set size in bytes, read from the VmRSS line
// of /proc/self/status (Linux); elsewhere it is an error.
func ProcessRSS() (int64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	return parseVmRSS(data)
}

func parseVmRSS(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmRSS line %q: want a number of kB", sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS line %q: %v", sc.Text(), err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("no VmRSS line in /proc/self/status")
}

// FormatBytes writes n bytes in KiB, MiB or GiB; 0 is "?" (unknown).
func FormatBytes(n int64) string {
	switch {
	case n <= 0:
		return "?"
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
}
