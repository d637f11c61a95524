package main

import (
	"encoding/json"
	"errors"
	"flag"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"xspan/lm"
)

// flagHelp returns the help text of one flag in a command's -h: its line and usage.
func flagHelp(help, name string) string {
	lines := strings.Split(help, "\n")
	for i, l := range lines {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "--"+name && i+1 < len(lines) {
			return l + "\n" + lines[i+1]
		}
	}
	return ""
}

func TestCLIHelpShowsTypedGroupsAndDefaults(t *testing.T) {
	t.Parallel()
	code, help, stderr := run(t, "train", "-h")
	if code != 0 || stderr != "" {
		t.Fatalf("train -h: exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{"usage: xspan train ", "\nflags:\n", "\nconfig:\n", "\nconfig keys (defaults of preset tiny", "\ndevice:\n"} {
		if !strings.Contains(help, want) {
			t.Errorf("train -h lacks %q:\n%s", want, help)
		}
	}
	for name, want := range map[string][]string{
		"steps":    {"--steps int", "(default 200)"},
		"lr":       {"--lr float", "(default 0.0007)"},
		"dropout":  {"--dropout float", "(default 0)"},
		"schedule": {"--schedule string", `(default "constant")`},
		"set":      {"--set key=value"},
		"threads":  {"--threads int", "(default 0)"},
		"device":   {"--device string", `(default "auto")`},
	} {
		h := flagHelp(help, name)
		for _, w := range want {
			if !strings.Contains(h, w) {
				t.Errorf("train -h, --%s: %q lacks %q", name, h, w)
			}
		}
	}
	// The defaults follow the preset named before -h.
	_, small, _ := run(t, "train", "--preset", "small", "-h")
	if h := flagHelp(small, "steps"); !strings.Contains(h, "(default 1000)") || !strings.Contains(small, "defaults of preset small") {
		t.Errorf("train --preset small -h: --steps %q", h)
	}
	// help COMMAND is -h.
	if code, h, _ := run(t, "help", "train"); code != 0 || h != help {
		t.Errorf("help train: exit %d, differs from train -h", code)
	}
}

// Every command that has --device or --threads has the same defaults for them.
func TestCLISameDefaultsEverywhere(t *testing.T) {
	t.Parallel()
	names := []string{"bench copy", "bench gen", "bench prep", "bench train"}
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	seen := 0
	for _, n := range names {
		code, help, _ := run(t, append(strings.Fields(n), "-h")...)
		if code != 0 || !strings.HasPrefix(help, "usage: xspan ") {
			t.Errorf("%s -h: exit %d:\n%s", n, code, help)
			continue
		}
		if h := flagHelp(help, "threads"); h != "" {
			seen++
			if !strings.Contains(h, "--threads int") || !strings.Contains(h, "(default 0)") {
				t.Errorf("%s: --threads %q", n, h)
			}
		}
		if h := flagHelp(help, "device"); h != "" && !strings.Contains(h, `(default "auto")`) {
			t.Errorf("%s: --device %q", n, h)
		}
	}
	if seen < 8 {
		t.Errorf("only %d commands show --threads", seen)
	}
}

// The command list keeps its columns: no name runs into its summary.
func TestCLIHelpColumns(t *testing.T) {
	t.Parallel()
	code, out, _ := run(t, "help")
	if code != 0 {
		t.Fatalf("help: exit %d", code)
	}
	col := -1
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "  ") {
			continue
		}
		name := strings.Fields(l)[0]
		rest := strings.TrimPrefix(l, "  "+name)
		c := len(l) - len(strings.TrimLeft(rest, " "))
		if len(rest)-len(strings.TrimLeft(rest, " ")) < 2 {
			t.Errorf("%q: the name runs into the summary", l)
		}
		if col >= 0 && c != col {
			t.Errorf("%q: summary at column %d, others at %d", l, c, col)
		}
		col = c
	}
	if col < 0 {
		t.Fatalf("no commands listed:\n%s", out)
	}
}

// One rule for positional arguments: before, between or after the flags; "--" ends the
// flags; "-" is an argument.
func TestFlagSetPositionalRule(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args  []string
		pos   []string
		split string
		n     int
	}{
		{[]string{"DIR", "--split", "x"}, []string{"DIR"}, "x", 0},
		{[]string{"--split", "x", "DIR"}, []string{"DIR"}, "x", 0},
		{[]string{"A", "--n", "3", "B", "--split=y"}, []string{"A", "B"}, "y", 3},
		{[]string{"--n", "2", "--", "--split", "z"}, []string{"--split", "z"}, "", 2},
		{[]string{"-", "--n", "1"}, []string{"-"}, "", 1},
		{nil, nil, "", 0},
	} {
		fs := newFlagSet("t", "", "")
		split := fs.String("split", "", "")
		n := fs.Int("n", 0, "")
		pos, err := fs.parse(&env{}, c.args)
		if err != nil || !reflect.DeepEqual(pos, c.pos) || *split != c.split || *n != c.n {
			t.Errorf("%q: %q, split %q, n %d, %v; want %q, %q, %d", c.args, pos, *split, *n, err, c.pos, c.split, c.n)
		}
	}
	fs := newFlagSet("t", "", "")
	fs.Int("n", 0, "")
	if _, err := fs.parse(&env{}, []string{"x", "--n", "many"}); !errors.Is(err, errUsage) {
		t.Errorf("a bad value: %v, want a usage error", err)
	}
	var help strings.Builder
	if _, err := fs.parse(&env{stdout: &help}, []string{"-h"}); !errors.Is(err, flag.ErrHelp) || !strings.Contains(help.String(), "--n int") {
		t.Errorf("-h: %v, %q", err, help.String())
	}
}

func TestSetFlag(t *testing.T) {
	t.Parallel()
	var s setFlag
	for _, v := range []string{"a=1", " b = two ", "c=x=y", "d="} {
		if err := s.Set(v); err != nil {
			t.Errorf("%q: %v", v, err)
		}
	}
	want := setFlag{{"a", "1"}, {"b", "two"}, {"c", "x=y"}, {"d", ""}}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("got %v, want %v", s, want)
	}
	for _, v := range []string{"a", "=1", " =1"} {
		if err := s.Set(v); err == nil {
			t.Errorf("%q: accepted", v)
		}
	}
}

// train --print-config prints the resolved config without a dataset or run folder.
func TestCLITrainPrintConfig(t *testing.T) {
	t.Parallel()
	code, out, stderr := run(t, "train", "--print-config", "--preset", "small", "--steps", "7", "--set", "dropout=0.25", "--set", "recompute=true")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	cfg, err := lm.ParseConfig([]byte(out))
	if err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	want, _ := lm.Preset("small")
	want.Steps, want.Dropout, want.Recompute = 7, 0.25, true
	if cfg != want {
		t.Errorf("printed %+v, want %+v", cfg, want)
	}
	if !json.Valid([]byte(out)) || !strings.Contains(out, "\n  \"layers\": 4,") {
		t.Errorf("not indented JSON:\n%s", out)
	}
	// Written to a file, it is a --config.
	code, out2, _ := runWith(t, strings.NewReader(""), "train", "--print-config", "--config", writeTemp(t, out))
	if code != 0 || out2 != out {
		t.Errorf("--config of the printed config: exit %d:\n%s", code, out2)
	}
	if code, _, stderr := run(t, "train", "--print-config", "--set", "heads=3"); code != 2 || !strings.Contains(stderr, "multiple of heads") {
		t.Errorf("a config that cannot work: exit %d, %q", code, stderr)
	}
}

// bench-train is bench train.
func TestCLIBenchTrainAlias(t *testing.T) {
	t.Parallel()
	_, a, _ := run(t, "bench-train", "-h")
	_, b, _ := run(t, "bench", "train", "-h")
	if a == "" || a != b || !strings.HasPrefix(a, "usage: xspan bench train") {
		t.Errorf("bench-train -h:\n%s\nbench train -h:\n%s", a, b)
	}
}

// writeTemp writes s to a file of its own and returns its path.
func writeTemp(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Commands' errors wrap their causes: a missing file is fs.ErrNotExist, a bad value a
// usage error that still holds the parser's error.
func TestCLIErrorsWrapTheirCause(t *testing.T) {
	t.Parallel()
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard}
	missing := filepath.Join(t.TempDir(), "missing")
	for _, c := range []struct {
		run    func(*env, []string) error
		args   []string
		target error
	}{
		{runInspect, []string{missing}, fs.ErrNotExist},
		{runCat, []string{missing, "--split", "train"}, fs.ErrNotExist},
		{runTrain, []string{"--print-config", "--config", missing}, fs.ErrNotExist},
		{runTrain, []string{"--print-config", "--steps", "many"}, errUsage},
	} {
		if err := c.run(e, c.args); !errors.Is(err, c.target) {
			t.Errorf("%q: %v, want one that is %v", c.args, err, c.target)
		}
	}
}
