package main

import (
	"fmt"
	"os"

	"xspan/internal/torchrt"
)

func init() {
	register(command{name: "version", summary: "print xspan's version, the libtorch it uses and the device found", run: runVersion})
}

func runVersion(e *env, args []string) error {
	fs := newFlagSet("version", "", "Prints xspan's module version, the libtorch that its native library was built against (with the CUDA runtime's version where there is one), the library's file, the CUDA devices, and the device that --device auto would choose.")
	if err := fs.noArgs(e, args); err != nil {
		return err
	}
	defer torchrt.Lock()()
	w := e.stdout
	fmt.Fprintf(w, "xspan %s\n", torchrt.Version())
	fmt.Fprintf(w, "%s\n", torchrt.LibtorchVersion())
	fmt.Fprintf(w, "native library: %s\n", torchrt.NativeLibrary())
	for _, d := range torchrt.CUDADevices() {
		fmt.Fprintf(w, "cuda:%d: %s\n", d.Index, d.Name)
	}
	_, note, err := (&deviceFlags{device: "auto"}).open()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s\n", note)
	if core := os.Getenv("OPENBLAS_CORETYPE"); core != "" {
		fmt.Fprintf(w, "OpenBLAS core type: %s\n", core)
	}
	if policy := os.Getenv("OMP_WAIT_POLICY"); policy != "" {
		fmt.Fprintf(w, "OpenMP wait policy: %s\n", policy)
	}
	return nil
}
