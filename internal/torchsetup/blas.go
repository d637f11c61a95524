package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Debian's libtorch links libblas.so.3, which the alternatives system points at the
// reference (netlib) BLAS unless an optimised one is installed: matrix products then run
// 50–100 times slower. OpenBLAS built for OpenMP matches libtorch's own threading.
const blasPackage = "libopenblas0-openmp"

// referenceBLAS tells whether libblas.so.3 in libDir resolves to the netlib reference BLAS
// (Debian installs it under .../blas/).
func referenceBLAS(libDir string) (bool, string) {
	for _, d := range []string{libDir, "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"} {
		p, err := filepath.EvalSymlinks(filepath.Join(d, "libblas.so.3"))
		if err != nil {
			continue
		}
		return strings.Contains(p, "/blas/"), p
	}
	return false, ""
}

// ensureFastBLAS installs OpenBLAS when the system libtorch would use the reference BLAS.
func ensureFastBLAS(lt *libtorch) error {
	if lt.Dir != "" {
		return nil // a libtorch folder brings its own BLAS (MKL or OpenBLAS)
	}
	slow, path := referenceBLAS(lt.LibDir)
	if !slow {
		return nil
	}
	cmd := "apt-get install -y " + blasPackage
	if os.Geteuid() != 0 {
		fmt.Printf("torch set-up: WARNING: libblas.so.3 is the slow reference BLAS (%s); run 'sudo %s' for 50x faster matrix products\n", path, cmd)
		return nil
	}
	fmt.Printf("torch set-up: libblas.so.3 is the slow reference BLAS (%s); installing %s\n", path, blasPackage)
	if err := runVisible("apt-get", "install", "-y", "-q", blasPackage); err != nil {
		if err := runVisible("apt-get", "update", "-q"); err != nil {
			return fmt.Errorf("apt-get update failed: %v", err)
		}
		if err := runVisible("apt-get", "install", "-y", "-q", blasPackage); err != nil {
			return fmt.Errorf("'%s' failed: %v", cmd, err)
		}
	}
	return nil
}
