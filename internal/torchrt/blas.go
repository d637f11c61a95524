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

// OpenMP's worker threads (libtorch's intra-op pool and OpenBLAS's) spin while they wait
// for work by default. When another process holds a core, a spinning thread keeps its
// siblings from the core they wait for, and batched products stall: training ran at
// 260–650 tokens/s against 6,360 with one thread on a machine where another job held a
// core. OMP_WAIT_POLICY=PASSIVE makes them sleep instead, at a cost of about a quarter
// of the speed on an idle machine (measured in the README; no GOMP_SPINCOUNT does better
// on both). libgomp, too, reads it once, at load.

// RuntimeEnv returns the variables that TuneAndReexec would add to env (a list of
// KEY=VALUE) for a CPU with the given flags: OPENBLAS_CORETYPE and OMP_WAIT_POLICY, each
// only where env does not set it already. XSPAN_BLAS_TUNE=0 leaves the BLAS kernels
// alone; setting OMP_WAIT_POLICY (e.g. to ACTIVE) keeps the user's policy.
func RuntimeEnv(env []string, cpuFlags []string) []string {
	set := map[string]bool{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && v != "" {
			set[k] = true
			if k == "XSPAN_BLAS_TUNE" && v == "0" {
				set["OPENBLAS_CORETYPE"] = true
			}
		}
	}
	var add []string
	if !set["OPENBLAS_CORETYPE"] {
		if core := BLASCoreType(cpuFlags); core != "" {
			add = append(add, "OPENBLAS_CORETYPE="+core)
		}
	}
	if !set["OMP_WAIT_POLICY"] {
		add = append(add, "OMP_WAIT_POLICY=PASSIVE")
	}
	return add
}

// TuneAndReexec makes the process run with the variables of RuntimeEnv: when any is
// missing, it sets them and replaces the process with a fresh copy of itself (same
// arguments), so that OpenBLAS and OpenMP load with them. It returns only when nothing was
// to be done or the re-exec failed.
func TuneAndReexec() {
	if runtime.GOOS != "linux" {
		return
	}
	add := RuntimeEnv(os.Environ(), cpuFlags())
	if len(add) == 0 {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	_ = syscall.Exec(exe, os.Args, append(os.Environ(), add...))
}
