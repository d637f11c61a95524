package torchrt

import (
	"errors"

	lib "github.com/sugarme/gotch/libtch"
)

// ErrLibtorch is matched (errors.Is) by every error that Recover makes from a failed op.
var ErrLibtorch = errors.New("libtorch")

// OpError is a libtorch op that failed inside code that does not return errors (gotch's
// Must* wrappers, which the set-up patches to panic instead of ending the process).
type OpError struct{ Err error }

func (e *OpError) Error() string        { return "libtorch: " + e.Err.Error() }
func (e *OpError) Unwrap() error        { return e.Err }
func (e *OpError) Is(target error) bool { return target == ErrLibtorch }

// Recover turns a failed libtorch op, raised as a panic somewhere below, into an error in
// *err, so that one training step, evaluation or request fails alone while the process
// and every other request go on. Any other panic is a bug and is raised again. Use it as
//
//	func step() (err error) {
//		defer torchrt.Recover(&err)
//		...
func Recover(err *error) {
	r := recover()
	if r == nil {
		return
	}
	if e := AsOpError(r); e != nil {
		*err = e
		return
	}
	panic(r)
}

// AsOpError returns the OpError that a recovered panic value stands for, or nil when it is
// not a libtorch failure.
func AsOpError(r any) *OpError {
	e, ok := r.(error)
	if !ok {
		return nil
	}
	var pe *lib.PanicError
	if errors.As(e, &pe) {
		return &OpError{Err: pe.Err}
	}
	return nil
}
