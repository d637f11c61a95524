package torchrt

import (
	"os"
	"runtime"
	"strings"
	"syscall"
)

// OpenBLAS (the BLAS behind Debian's libtorch) picks its kernels from the CPU model. On
// virtual machines that report a generic model ("Intel(R) Xeon(R) Processor") it falls
// back to its oldest kernels and multiplies matrices about 8 times slower (12 against 92
// GFLOP/s, measured on this project's machines). OPENBLAS_CORETYPE overrides the choice,
// but OpenBLAS reads it once, when the library loads: before any Go code runs.

// BLASCoreType returns the OpenBLAS core type that matches the CPU's instruction-set
// flags (as /proc/cpuinfo lists them), or "" when none is known to be safe.
func BLASCoreType(cpuFlags []string) string {
	has := map[string]bool{}
	for _, f := range cpuFlags {
		has[f] = true
	}
	switch {
	case has["avx512f"] && has["avx512cd"] && has["avx512bw"] && has["avx512dq"] && has["avx512vl"]:
		return "SkylakeX"
	case has["avx2"] && has["fma"]:
		return "Haswell"
	}
	return ""
}

// cpuFlags reads the first "flags" line of /proc/cpuinfo.
func cpuFlags() []string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
			return strings.Fields(v)
		}
	}
	return nil
}

// TuneBLASAndReexec makes the process run with OpenBLAS kernels that fit the CPU: when
// OPENBLAS_CORETYPE is unset and the CPU supports a known core type, it sets the variable
// and replaces the process with a fresh copy of itself (same arguments), so that OpenBLAS
// loads with it. It returns only when nothing was to be done or the re-exec failed.
// XSPAN_BLAS_TUNE=0 turns it off.
func TuneBLASAndReexec() {
	if runtime.GOOS != "linux" || os.Getenv("OPENBLAS_CORETYPE") != "" || os.Getenv("XSPAN_BLAS_TUNE") == "0" {
		return
	}
	core := BLASCoreType(cpuFlags())
	if core == "" {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	env := append(os.Environ(), "OPENBLAS_CORETYPE="+core)
	_ = syscall.Exec(exe, os.Args, env)
}
