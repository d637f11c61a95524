package main

import (
	"fmt"
	"os"

	"xspan/internal/torchrt"
)

func init() {
	register(command{name: "version", summary: "print xspan's version, the libtorch it uses and the device found", run: runVersion})
}

func runVersion(args []string) error {
	fs := newFlagSet("version", "", "Prints xspan's module version, the libtorch that its native library was built against (with the CUDA runtime's version where there is one), the library's file, the CUDA devices, and the device that --device auto would choose.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	defer torchrt.Lock()()
	fmt.Printf("xspan %s\n", torchrt.Version())
	fmt.Printf("%s\n", torchrt.LibtorchVersion())
	fmt.Printf("native library: %s\n", torchrt.NativeLibrary())
	for _, d := range torchrt.CUDADevices() {
		fmt.Printf("cuda:%d: %s\n", d.Index, d.Name)
	}
	torchrt.SetThreads(0)
	_, note, err := torchrt.ParseDevice("auto")
	if err != nil {
		return err
	}
	fmt.Printf("%s; intra-op threads: %d\n", note, torchrt.Threads())
	if core := os.Getenv("OPENBLAS_CORETYPE"); core != "" {
		fmt.Printf("OpenBLAS core type: %s\n", core)
	}
	if policy := os.Getenv("OMP_WAIT_POLICY"); policy != "" {
		fmt.Printf("OpenMP wait policy: %s\n", policy)
	}
	return nil
}
