package torchrt

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// PeakRSS returns the process's peak resident memory in bytes (VmHWM of
// /proc/self/status), or 0 where that file does not exist.
func PeakRSS() int64 { return statusKB("VmHWM:") * 1024 }

// RSS returns the process's current resident memory in bytes (VmRSS), or 0.
func RSS() int64 { return statusKB("VmRSS:") * 1024 }

// ResetPeakRSS starts PeakRSS over from the current resident memory (Linux 4.0 and
// later: "5" written to /proc/self/clear_refs).
func ResetPeakRSS() error {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak RSS: %w", err)
	}
	return nil
}

func statusKB(key string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
