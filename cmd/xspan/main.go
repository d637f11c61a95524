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
	"strings"

	"xspan/internal/torchrt"
	"xspan/train"
)

// command is one subcommand: its name, a one-line summary, and the function that parses
// its flags and runs it.
type command struct {
	name    string
	summary string
	run     func(args []string) error
}

var commands = map[string]command{}

// register adds a subcommand; each file of this package calls it from init.
func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("xspan: subcommand registered twice: " + c.name)
	}
	commands[c.name] = c
}

// errUsage marks an error caused by how the command was called; main prints it with a
// pointer to the subcommand's -h.
var errUsage = errors.New("usage")

// usageErrorf returns an error that wraps errUsage.
func usageErrorf(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, a...)...)
}

// newFlagSet returns a FlagSet for a subcommand whose -h prints the synopsis, the
// description and the flags, and whose parse errors are returned, not fatal.
func newFlagSet(name, synopsis, description string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: xspan %s %s\n\n", name, synopsis)
		if description != "" {
			fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(description))
		}
		fmt.Fprintln(w, "flags:")
		fs.PrintDefaults()
	}
	return fs
}

func printHelp(w io.Writer) {
	fmt.Fprintln(w, "xspan: Expire-Span language models: prepare corpora, train, evaluate (bpc), generate.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "usage: xspan <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "  help       print this list")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'xspan <command> -h' for a command's flags.")
}

func main() {
	torchrt.TuneAndReexec()
	os.Exit(runMain(os.Args[1:]))
}

// errInterrupted is returned by a command stopped by Ctrl-C (or SIGTERM) that has no
// error of its own to say so (train's is train.ErrInterrupted).
var errInterrupted = errors.New("interrupted")

// runMain dispatches to a subcommand and returns the exit status: 0 on success, 1 on a
// failure, 2 on a usage error, 130 after Ctrl-C (as a shell reports SIGINT).
func runMain(args []string) int {
	if len(args) == 0 {
		printHelp(os.Stderr)
		return 2
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" || name == "-help" {
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				_ = c.run([]string{"-h"})
				return 0
			}
		}
		printHelp(os.Stdout)
		return 0
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "xspan: unknown command %q; run 'xspan help' for the list\n", name)
		return 2
	}
	err := c.run(args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(os.Stderr, "xspan %s: %v\nrun 'xspan %s -h' for help\n", name, err, name)
		return 2
	case errors.Is(err, errInterrupted) || errors.Is(err, train.ErrInterrupted) || errors.Is(err, context.Canceled):
		fmt.Fprintf(os.Stderr, "xspan %s: %v\n", name, err)
		return 130
	default:
		fmt.Fprintf(os.Stderr, "xspan %s: %v\n", name, err)
		return 1
	}
}

// parseFlags parses a subcommand's flags; a bad flag is a usage error, -h is not an error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErrorf("%v", err)
	}
	return nil
}
