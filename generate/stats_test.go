package generate

import "testing"

func TestParseVmRSS(t *testing.T) {
	n, err := parseVmRSS([]byte("Name:\tx\nVmPeak:\t  900 kB\nVmRSS:\t  1234 kB\n"))
	if err != nil || n != 1234*1024 {
		t.Errorf("parseVmRSS = %d, %v", n, err)
	}
	if _, err := parseVmRSS([]byte("Name:\tx\n")); err == nil {
		t.Errorf("missing VmRSS should fail")
	}
	if _, err := parseVmRSS([]byte("VmRSS: 12 MB\n")); err == nil {
		t.Errorf("VmRSS in MB should fail")
	}
	if rss, err := ProcessRSS(); err != nil || rss < 1<<20 {
		t.Errorf("ProcessRSS = %d, %v", rss, err)
	}
	for n, want := range map[int64]string{0: "?", 2048: "2.0 KiB", 3 << 20: "3.0 MiB", 5 << 30: "5.00 GiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
