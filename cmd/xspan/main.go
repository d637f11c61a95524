// Command xspan prepares corpora, trains Expire-Span language models, evaluates them in
// bits per character and generates text from their checkpoints.
//
// Each subcommand lives in its own file and registers itself in commands; main only
// dispatches. Run "xspan help" for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"

	"xspan/internal/torchrt"
	"xspan/train"
)

// command is one subcommand: its name, a one-line summary, and the function that parses
// its flags and runs it.
type command struct {
	name    string
	summary string
	run     func(e *env, args []string) error
}

var commands = map[string]command{}

// register adds a subcommand; each file of this package calls it from init.
func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("xspan: subcommand registered twice: " + c.name)
	}
	commands[c.name] = c
}

// errUsage marks an error caused by how the command was called (a bad flag, a value out
// of range, a missing argument): exit status 2, with a pointer to the subcommand's -h.
var errUsage = errors.New("usage")

// usageErrorf returns an error that wraps errUsage.
func usageErrorf(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, a...)...)
}

func printHelp(w io.Writer) {
	fmt.Fprintln(w, "xspan: Expire-Span language models: prepare corpora, train, evaluate (bpc), generate.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "usage: xspan <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	names := []string{"help"}
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	width := 0
	for _, n := range names {
		width = max(width, len(n))
	}
	for _, n := range names {
		summary := "print this list, or a command's flags: xspan help <command>"
		if n != "help" {
			summary = commands[n].summary
		}
		fmt.Fprintf(w, "  %-*s  %s\n", width, n, summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'xspan <command> -h' for a command's flags, 'xspan --version' for the version.")
}

func main() {
	torchrt.TuneAndReexec()
	os.Exit(runMain(&env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:]))
}

// errInterrupted is returned by a command stopped by a signal that has no error of its
// own to say so (train's is train.ErrInterrupted).
var errInterrupted = errors.New("interrupted")

// runMain dispatches to a subcommand and returns the exit status: 0 on success, 1 on a
// failure (a failed write to stdout included), 2 on a usage error, 128 + the signal's
// number after a signal stopped it (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP).
func runMain(e *env, args []string) int {
	stdout, stderr := &exitWriter{w: e.stdout}, e.stderr
	if _, ok := stderr.(*os.File); !ok {
		stderr = &exitWriter{w: stderr} // one write at a time (a file is so already, and a terminal stays one for progress bars)
	}
	ce := &env{stdin: e.stdin, stdout: stdout, stderr: stderr,
		sharedOutput: e.stdout == e.stderr || (isTerminal(e.stdout) && isTerminal(e.stderr))}
	if len(args) == 0 {
		printHelp(stderr)
		return 2
	}
	name := args[0]
	if name == "--version" || name == "-version" {
		fmt.Fprintf(stdout, "xspan %s\n", torchrt.Version())
		return writeStatus(stdout, stderr, "--version", 0)
	}
	if name == "help" || name == "-h" || name == "--help" || name == "-help" {
		if len(args) > 1 {
			c, ok := commands[args[1]]
			if !ok {
				fmt.Fprintf(stderr, "xspan help: unknown command %q; run 'xspan help' for the list\n", args[1])
				return 2
			}
			_ = c.run(ce, []string{"-h"})
		} else {
			printHelp(stdout)
		}
		return writeStatus(stdout, stderr, name, 0)
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "xspan: unknown command %q; run 'xspan help' for the list\n", name)
		return 2
	}
	err := c.run(ce, args[1:])
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return writeStatus(stdout, stderr, name, 0)
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "xspan %s: %v\nrun 'xspan %s -h' for help\n", name, err, name)
		return 2
	case stdout.Err() != nil:
		return writeStatus(stdout, stderr, name, 1) // the failed write, whatever it made the command say
	case errors.Is(err, errInterrupted) || errors.Is(err, train.ErrInterrupted) || errors.Is(err, context.Canceled):
		fmt.Fprintf(stderr, "xspan %s: %v\n", name, err)
		if n := ce.caught.Load(); n > 0 {
			return 128 + int(n)
		}
		return 130
	default:
		fmt.Fprintf(stderr, "xspan %s: %v\n", name, err)
		return 1
	}
}

// writeStatus is a successful command's exit status: 1 if its output could not be
// written.
func writeStatus(stdout *exitWriter, stderr io.Writer, name string, code int) int {
	if err := stdout.Err(); err != nil {
		fmt.Fprintf(stderr, "xspan %s: writing standard output: %v\n", name, err)
		return 1
	}
	return code
}
