package eval

// DumpLine is dumpLine, for the tests of package eval_test (which train models with
// package train, which imports eval).
type DumpLine = dumpLine
