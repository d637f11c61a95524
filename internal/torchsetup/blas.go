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

// glooPackage holds gloo's headers, which c10d's Gloo process group (xspan's distributed
// training on CPUs) includes; Debian's libtorch links libgloo0 but does not depend on them.
const glooPackage = "libgloo-dev"

// ensureGloo installs gloo's headers for the system libtorch when they are missing and
// this runs as root; otherwise it says what distributed training lacks.
func ensureGloo(lt *libtorch) error {
	if lt.Dir != "" || glooIncludeDir(lt) != "" {
		return nil
	}
	if os.Geteuid() != 0 {
		fmt.Printf("torch set-up: note: gloo's headers are missing: distributed training (Gloo) is off; run 'sudo apt-get install -y %s' to have it\n", glooPackage)
		return nil
	}
	fmt.Printf("torch set-up: installing %s (gloo's headers, for distributed training on CPUs)\n", glooPackage)
	if err := runVisible("apt-get", "install", "-y", "-q", "--no-install-recommends", glooPackage); err != nil {
		if err := runVisible("apt-get", "update", "-q"); err != nil {
			fmt.Printf("torch set-up: note: apt-get update failed (%v): distributed training (Gloo) is off\n", err)
			return nil
		}
		if err := runVisible("apt-get", "install", "-y", "-q", "--no-install-recommends", glooPackage); err != nil {
			fmt.Printf("torch set-up: note: installing %s failed (%v): distributed training (Gloo) is off\n", glooPackage, err)
		}
	}
	return nil
}
