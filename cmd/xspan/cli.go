package main

// The flag layer that every subcommand shares: the streams a command writes to (env), a
// flag set whose -h lists the flags by group with their types and defaults (flagSet),
// one rule for positional arguments (they may come before, between or after the flags;
// "--" ends the flags), one --set parser (setFlag), and the groups that several commands
// share: device and threads (deviceFlags) and the config (configFlags).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/sugarme/gotch"
	"golang.org/x/term"

	"xspan/internal/torchrt"
	"xspan/lm"
)

// env is what a command runs with: its standard streams, and the signal that stopped it.
// Commands write only to these, so tests run them side by side.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// sharedOutput: standard output and error end on one screen (two terminals, or one
	// writer), so a line on stderr must not start in the middle of a line of stdout.
	sharedOutput bool
	caught       atomic.Int32 // the number of the signal that cancelled interruptible's context
}

// signals stop a command gracefully: Ctrl-C, kill, and a closed terminal (a training run
// checkpoints first). The exit status is then 128 + the signal's number.
var signals = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP}

// interruptible returns a context that the first of signals cancels; after it, the
// signals' default action is back, so a second Ctrl-C kills at once. Call stop when done.
func (e *env) interruptible() (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, signals...)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			if n, ok := s.(syscall.Signal); ok {
				e.caught.Store(int32(n))
			}
			signal.Stop(ch)
			cancel()
		case <-done:
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			close(done)
			signal.Stop(ch)
			cancel()
		})
	}
}

// exitWriter passes writes on, one at a time, and keeps the first error, so that a
// command whose output could not be written (a full disk, a closed pipe) fails.
type exitWriter struct {
	mu  sync.Mutex
	w   io.Writer
	err error
}

func (w *exitWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.w.Write(p)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

func (w *exitWriter) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// isTerminal reports whether w is a terminal (progress bars draw only there).
func isTerminal(w io.Writer) bool {
	if ew, ok := w.(*exitWriter); ok {
		w = ew.w
	}
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// flagSet is a subcommand's flags, in groups.
type flagSet struct {
	*flag.FlagSet
	name, synopsis, description string
	groups                      []*flagGroup
	cur                         *flagGroup // the group of the flags defined next
	beforeHelp                  []func()   // run before -h prints (the config's defaults follow --preset)
}

type flagGroup struct {
	title string
	names []string
}

// newFlagSet returns the flag set of a subcommand; flags defined next go in the group
// "flags" until group starts another.
func newFlagSet(name, synopsis, description string) *flagSet {
	f := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), name: name, synopsis: synopsis, description: description}
	f.SetOutput(io.Discard)
	f.Usage = func() {}
	f.group("flags")
	return f
}

// group makes title the group of the flags defined next (a new group is listed after
// the existing ones).
func (f *flagSet) group(title string) {
	f.assign()
	for _, g := range f.groups {
		if g.title == title {
			f.cur = g
			return
		}
	}
	f.cur = &flagGroup{title: title}
	f.groups = append(f.groups, f.cur)
}

// assign puts the flags not yet in a group in the current one (each group lists its
// flags sorted, as the flag package gives them).
func (f *flagSet) assign() {
	if f.cur == nil {
		return
	}
	in := map[string]bool{}
	for _, g := range f.groups {
		for _, n := range g.names {
			in[n] = true
		}
	}
	f.VisitAll(func(fl *flag.Flag) {
		if !in[fl.Name] {
			f.cur.names = append(f.cur.names, fl.Name)
		}
	})
}

// parse parses args: flags and positional arguments in any order ("--" ends the flags,
// and "-" is an argument). It returns the positional arguments. A bad flag or value is a
// usage error; -h prints the help to stdout and returns flag.ErrHelp.
func (f *flagSet) parse(e *env, args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.FlagSet.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				f.printHelp(e.stdout)
				return nil, err
			}
			return nil, usageErrorf("%w", err)
		}
		rest := f.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// noArgs parses args for a command that takes no positional arguments.
func (f *flagSet) noArgs(e *env, args []string) error {
	pos, err := f.parse(e, args)
	if err == nil && len(pos) > 0 {
		err = usageErrorf("unexpected argument %q", pos[0])
	}
	return err
}

// visited returns the flags given on the command line.
func (f *flagSet) visited() map[string]bool {
	set := map[string]bool{}
	f.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	return set
}

// printHelp writes the synopsis, the description and the flags by group.
func (f *flagSet) printHelp(w io.Writer) {
	for _, fn := range f.beforeHelp {
		fn()
	}
	f.assign()
	fmt.Fprintf(w, "usage: xspan %s %s\n", f.name, f.synopsis)
	if d := strings.TrimSpace(f.description); d != "" {
		fmt.Fprintf(w, "\n%s\n", d)
	}
	for _, g := range f.groups {
		if len(g.names) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, n := range g.names {
			printFlag(w, f.Lookup(n))
		}
	}
}

// typed is a flag.Value that names its type for -h.
type typed interface{ Type() string }

func printFlag(w io.Writer, fl *flag.Flag) {
	typ, usage := flag.UnquoteUsage(fl)
	if t, ok := fl.Value.(typed); ok {
		typ = t.Type()
	}
	line := "  --" + fl.Name
	if typ != "" {
		line += " " + typ
	}
	// A usage that states its own default (one that depends on other flags) keeps it.
	if def := fl.DefValue; def != "" && !(typ == "" && def == "false") && !strings.Contains(usage, "(default") {
		if typ == "string" {
			def = fmt.Sprintf("%q", def)
		}
		usage += " (default " + def + ")"
	}
	fmt.Fprintf(w, "%s\n        %s\n", line, strings.ReplaceAll(usage, "\n", "\n        "))
}

// setFlag is --set key=value, repeatable: the one parser of config assignments.
type setFlag []keyValue

type keyValue struct{ key, value string }

func (s *setFlag) Type() string { return "key=value" }
func (s *setFlag) String() string {
	var parts []string
	for _, kv := range *s {
		parts = append(parts, kv.key+"="+kv.value)
	}
	return strings.Join(parts, " ")
}
func (s *setFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	k = strings.TrimSpace(k)
	if !ok || k == "" {
		return fmt.Errorf("%q: want key=value", v)
	}
	*s = append(*s, keyValue{k, strings.TrimSpace(val)})
	return nil
}

// maxThreads is the most libtorch threads a command may ask for: beyond a few per core
// they only cost (and thousands of OS threads can hang the machine).
func maxThreads() int { return 4 * runtime.NumCPU() }

// deviceFlags are --device and --threads, with the same defaults in every command.
type deviceFlags struct {
	device  string
	threads int
}

func (d *deviceFlags) register(f *flagSet) {
	f.group("device")
	f.StringVar(&d.device, "device", "auto", "auto (CUDA if usable, else the CPU), cpu, cuda or cuda:N")
	f.IntVar(&d.threads, "threads", 0, fmt.Sprintf("CPU threads for libtorch, 1 to %d (4 per core); 0: one per core", maxThreads()))
	f.group("flags")
}

// check reports an out-of-range --threads as a usage error.
func (d *deviceFlags) check() error {
	if d.threads < 0 || d.threads > maxThreads() {
		return usageErrorf("--threads %d: want 0 (one per core) to %d (4 per core of this machine's %d)", d.threads, maxThreads(), runtime.NumCPU())
	}
	return nil
}

// open sets the threads and parses the device; note says which device and how many
// threads. The caller holds its OS thread.
func (d *deviceFlags) open() (dev gotch.Device, note string, err error) {
	if err := d.check(); err != nil {
		return gotch.CPU, "", err
	}
	n := torchrt.SetThreads(d.threads)
	dev, note, err = torchrt.ParseDevice(d.device)
	if err != nil {
		return gotch.CPU, "", usageErrorf("--device: %w", err)
	}
	return dev, note + "; " + plural(n, "thread"), nil
}

// plural returns "1 thread" or "4 threads".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// configFlags are --preset, --config, a typed flag for each common config key, and
// --set for any key. The config starts from the preset or the file, then the typed
// flags apply, then each --set in order.
type configFlags struct {
	preset, file string
	sets         setFlag
	keys         []*configKey
}

// configKeyFlags are the config keys with a flag of their own (flag name, key, usage).
var configKeyFlags = []struct{ flag, key, usage string }{
	{"steps", "steps", "optimizer steps"},
	{"batch", "batch", "streams per step"},
	{"block", "block", "tokens per stream per step (M)"},
	{"lr", "lr", "peak learning rate"},
	{"warmup", "warmup", "linear warm-up steps"},
	{"schedule", "schedule", "learning-rate schedule after warm-up: constant, cosine or step"},
	{"clip", "clip", "gradient clipping by global norm (0: none)"},
	{"alpha", "alpha", "span-loss coefficient"},
	{"dropout", "dropout", "dropout rate"},
	{"accumulate", "accumulate", "micro-batches per step (gradient accumulation; must divide --batch)"},
	{"seed", "seed", "random seed (weights, dropout, span noise)"},
	{"eval-every", "eval_every", "steps between validations (0: at the end only)"},
	{"ckpt-every", "ckpt_every", "steps between checkpoints (0: at the end only)"},
}

// configKey is the flag of one config key: typed as the key, checked when given.
type configKey struct {
	key, typ, text string
	given          bool
}

func (k *configKey) Type() string   { return k.typ }
func (k *configKey) String() string { return k.text }
func (k *configKey) Set(v string) error {
	var scratch lm.Config
	if err := scratch.Set(k.key, v); err != nil {
		return err
	}
	k.text, k.given = v, true
	return nil
}

// register adds the config group; defaultPreset is --preset's default.
func (c *configFlags) register(f *flagSet, defaultPreset string) {
	f.group("config")
	f.StringVar(&c.preset, "preset", defaultPreset, "preset config: "+strings.Join(lm.PresetNames(), ", "))
	f.StringVar(&c.file, "config", "", "config JSON `file` (instead of --preset): an object with config.json's keys")
	f.Var(&c.sets, "set", "set any config key (config.json's names; repeatable, applied last)")
	f.group("config keys")
	def, _ := lm.Preset(defaultPreset)
	for _, kf := range configKeyFlags {
		k := &configKey{key: kf.key, typ: configKeyType(kf.key)}
		k.text = configKeyValue(def, kf.key)
		c.keys = append(c.keys, k)
		f.Var(k, kf.flag, kf.usage+" (config key "+kf.key+")")
	}
	f.group("flags")
	// -h shows the defaults of the preset named before it.
	f.beforeHelp = append(f.beforeHelp, func() {
		p, err := lm.Preset(c.preset)
		known := c.file == "" && err == nil
		for _, kf := range configKeyFlags {
			fl := f.Lookup(kf.flag)
			fl.DefValue = ""
			if known {
				fl.DefValue = configKeyValue(p, kf.key)
			}
		}
		for _, g := range f.groups {
			if strings.HasPrefix(g.title, "config keys") {
				g.title = "config keys"
				if known {
					g.title = "config keys (defaults of preset " + c.preset + "; '--preset NAME -h' shows another's)"
				}
			}
		}
	})
}

// base returns the config that --preset or --config names.
func (c *configFlags) base(set map[string]bool) (lm.Config, error) {
	if set["preset"] && set["config"] {
		return lm.Config{}, usageErrorf("give --preset or --config, not both")
	}
	if c.file != "" {
		b, err := os.ReadFile(c.file)
		if err != nil {
			return lm.Config{}, fmt.Errorf("--config: %w", err)
		}
		cfg, err := lm.ParseConfig(b)
		if err != nil {
			return lm.Config{}, usageErrorf("--config %s: %w", c.file, err)
		}
		return cfg, nil
	}
	cfg, err := lm.Preset(c.preset)
	if err != nil {
		return lm.Config{}, usageErrorf("--preset: %w", err)
	}
	return cfg, nil
}

// apply sets the keys given as flags, then each --set, and checks the result: a value
// that cannot work is a usage error.
func (c *configFlags) apply(cfg *lm.Config) error {
	for i, k := range c.keys {
		if k.given {
			if err := cfg.Set(k.key, k.text); err != nil {
				return usageErrorf("--%s: %w", configKeyFlags[i].flag, err)
			}
		}
	}
	for _, kv := range c.sets {
		if err := cfg.Set(kv.key, kv.value); err != nil {
			return usageErrorf("--set %s=%s: %w", kv.key, kv.value, err)
		}
	}
	check := *cfg
	if check.Vocab == 0 {
		check.Vocab = 2 // set from the dataset later
	}
	if err := check.Validate(); err != nil {
		return usageErrorf("%w", err)
	}
	return nil
}

// configField returns the field of cfg whose JSON name is key.
func configField(cfg reflect.Value, key string) (reflect.Value, bool) {
	for _, sf := range reflect.VisibleFields(cfg.Type()) {
		if sf.Anonymous {
			continue
		}
		if name, _, _ := strings.Cut(sf.Tag.Get("json"), ","); name == key {
			return cfg.FieldByIndex(sf.Index), true
		}
	}
	return reflect.Value{}, false
}

// configKeyType names a config key's type as -h shows it.
func configKeyType(key string) string {
	f, ok := configField(reflect.ValueOf(lm.Config{}), key)
	if !ok {
		panic("xspan: no config key " + key)
	}
	switch f.Kind() {
	case reflect.Float64:
		return "float"
	case reflect.Int, reflect.Int64:
		return "int"
	}
	return f.Kind().String()
}

// configKeyValue is a config key's value in the text form that --set takes.
func configKeyValue(cfg lm.Config, key string) string {
	f, ok := configField(reflect.ValueOf(cfg), key)
	if !ok {
		return ""
	}
	return fmt.Sprint(f.Interface())
}
