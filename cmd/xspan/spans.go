package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"xspan/checkpoint"
	"xspan/generate"
	"xspan/internal/torchrt"
	"xspan/spanview"
)

func init() {
	register(command{name: "spans", summary: "show what a model remembers of a text: spans per layer as HTML and PNG", run: runSpans})
}

const spansDescription = `
Runs a text (--text FILE, or standard input) through the model as one stream and draws
what it remembers: every character coloured by the span the model gave it as a memory
(light: dropped within a few tokens; dark blue: kept up to L tokens; a log scale), the
characters each layer still holds after the text underlined, and the memories each layer
holds after every token as a chart. A memory of span e is held while its age (tokens since
it was seen) stays below e + R, R the ramp; memories are dropped the step they expire.

--out FILE.html writes a self-contained page (choose the layer; hover a character for its
span, age and bits), --png FILE.png a picture of the chosen --layer (default: all), and
--json FILE the numbers, as POST /v1/score answers them. It prints the text's bits per
character and, per layer, the mean span and what is held at the end.`

func runSpans(e *env, args []string) error {
	fs := newFlagSet("spans", "(--ckpt PATH_OR_RUN | --preset NAME --random) [--text FILE | < FILE] [--out spans.html] [--png spans.png] [flags]", spansDescription)
	var mf modelFlags
	mf.register(fs)
	fs.group("output")
	textFile := fs.String("text", "", "the text to show (default: standard input)")
	out := fs.String("out", "", "write a self-contained HTML page here")
	pngOut := fs.String("png", "", "write a PNG picture here")
	jsonOut := fs.String("json", "", "write the per-token numbers as JSON here")
	layer := fs.String("layer", "all", "with --png: the layer to draw, 1 to N, or all")
	cols := fs.Int("columns", 100, "with --png: characters per row")
	maxTokens := fs.Int("max-tokens", 20000, "refuse texts longer than this many tokens")
	unk := fs.String("unk", "error", "characters outside a char vocabulary: error or replace (with <unk>)")
	if err := fs.noArgs(e, args); err != nil {
		return err
	}
	if err := mf.check(); err != nil {
		return err
	}
	if *out == "" && *pngOut == "" && *jsonOut == "" {
		return usageErrorf("give --out FILE.html, --png FILE.png or --json FILE (or several)")
	}
	if *cols < 10 {
		return usageErrorf("--columns %d: need at least 10", *cols)
	}
	if *maxTokens < 1 {
		return usageErrorf("--max-tokens %d: need at least 1", *maxTokens)
	}
	policy, err := generate.ParseUnkPolicy(*unk)
	if err != nil {
		return usageErrorf("--unk: %v", err)
	}
	var text []byte
	if *textFile != "" && *textFile != "-" {
		if text, err = os.ReadFile(*textFile); err != nil {
			return fmt.Errorf("--text: %w", err)
		}
	} else if text, err = io.ReadAll(e.stdin); err != nil {
		return fmt.Errorf("reading the text from standard input: %w", err)
	}

	defer torchrt.Lock()()
	model, err := mf.load(func(f string, a ...any) { fmt.Fprintf(e.stderr, f+"\n", a...) })
	if err != nil {
		return err
	}
	var layers []int
	if *layer != "all" {
		l, err := strconv.Atoi(*layer)
		if err != nil || l < 1 || l > model.m.Cfg.Layers {
			return usageErrorf("--layer %q: want 1 to %d, or all", *layer, model.m.Cfg.Layers)
		}
		layers = []int{l - 1}
	}
	ids, warning, err := generate.EncodePrompt(model.vocab, text, policy)
	if errors.Is(err, generate.ErrEmptyPrompt) {
		return usageErrorf("the text is empty: nothing to show")
	}
	if err != nil {
		return fmt.Errorf("--text: %w", err)
	}
	if warning != "" {
		fmt.Fprintln(e.stderr, warning)
	}
	if len(ids) > *maxTokens {
		return fmt.Errorf("--text: %d tokens, over --max-tokens %d", len(ids), *maxTokens)
	}
	ctx, stop := e.interruptible()
	defer stop()
	s, err := model.Score(ctx, ids)
	if err != nil {
		return err
	}
	if mf.ckpt != "" {
		s.Model = fmt.Sprintf("%s (step %v)", mf.ckpt, model.info["step"])
	}
	title := "What " + s.Model + " remembers"
	if *out != "" {
		var b bytes.Buffer
		if err := spanview.WriteHTML(&b, s, title); err != nil {
			return err
		}
		if err := checkpoint.WriteFileAtomic(*out, b.Bytes()); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	if *pngOut != "" {
		var b bytes.Buffer
		if err := spanview.WritePNG(&b, s, spanview.PNGOptions{Title: title, Columns: *cols, Layers: layers}); err != nil {
			return err
		}
		if err := checkpoint.WriteFileAtomic(*pngOut, b.Bytes()); err != nil {
			return fmt.Errorf("--png: %w", err)
		}
	}
	if *jsonOut != "" {
		js, err := json.Marshal(s)
		if err != nil {
			return err
		}
		if err := checkpoint.WriteFileAtomic(*jsonOut, append(js, '\n')); err != nil {
			return fmt.Errorf("--json: %w", err)
		}
	}
	w := e.stdout
	fmt.Fprintf(w, "%s: %d tokens", s.Model, len(s.Tokens))
	if s.BPC != nil {
		fmt.Fprintf(w, ", %.4f bits per character over %d characters", *s.BPC, s.ScoredChars)
	}
	fmt.Fprintln(w)
	for l := 0; l < s.Layers; l++ {
		line := fmt.Sprintf("layer %d: ", l+1)
		if s.Expire {
			line += fmt.Sprintf("mean span %.1f, ", s.MeanSpan(l))
		}
		line += fmt.Sprintf("%d of the text's tokens held at the end, %d memories in all", s.AliveCount(l), s.Live[l][len(s.Live[l])-1])
		fmt.Fprintln(w, line)
	}
	for _, f := range []string{*out, *pngOut, *jsonOut} {
		if f != "" {
			fmt.Fprintf(w, "wrote %s\n", f)
		}
	}
	if !s.Expire {
		fmt.Fprintln(w, strings.TrimSpace("the model has no learned spans (expire is off): a fixed memory of the last "+strconv.Itoa(int(s.MaxSpan))+" tokens"))
	}
	return nil
}
