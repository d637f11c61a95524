package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"xspan/checkpoint"
	"xspan/dataset"
	"xspan/eval"
	"xspan/internal/torchrt"
	"xspan/lm"
	"xspan/report"
)

func init() {
	register(command{name: "report", summary: "plot a run's bpc and spans to a PNG", run: runReport})
}

const reportDescription = `
Draws RUN/metrics.jsonl as a PNG (default RUN/report.png): training and validation bpc
against tokens seen, and the mean span and live memory of each layer over training. With
a checkpoint (default: RUN/best, else the latest) and its dataset at hand, it adds a
histogram of the spans the model gives the tokens of the first --sample tokens of the
valid split. --no-spans leaves that out.`

func runReport(e *env, args []string) error {
	fs := newFlagSet("report", "RUN [flags]", reportDescription)
	out := fs.String("out", "", "PNG to write (default RUN/report.png)")
	ckpt := fs.String("ckpt", "", "checkpoint for the span histogram (default RUN/best, else RUN's latest)")
	data := fs.String("data", "", "dataset for the span histogram (default: the checkpoint's)")
	split := fs.String("split", "valid", "split whose text the span histogram samples")
	sample := fs.Int64("sample", 4096, "tokens of text for the span histogram")
	noSpans := fs.Bool("no-spans", false, "leave out the span histogram")
	var df deviceFlags
	fs.group("device")
	fs.IntVar(&df.threads, "threads", 0, fmt.Sprintf("CPU threads for libtorch, 1 to %d (4 per core); 0: one per core (the span histogram runs on the CPU)", maxThreads()))
	fs.group("flags")
	pos, err := fs.parse(e, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("want one run folder, got %d arguments", len(pos))
	}
	run := pos[0]
	if *sample < 1 {
		return usageErrorf("--sample %d: need at least 1 token", *sample)
	}
	if err := df.check(); err != nil {
		return err
	}
	df.device = "cpu"
	rows, err := checkpoint.ReadMetrics(filepath.Join(run, checkpoint.MetricsName))
	if err != nil {
		return err
	}
	var spans *eval.SpanSample
	if !*noSpans {
		spans, err = reportSpans(e, run, *ckpt, *data, *split, *sample, df)
		if err != nil {
			return fmt.Errorf("span histogram: %w (use --no-spans to leave it out)", err)
		}
	}
	var cfg *lm.Config
	if c, err := checkpoint.ReadRunConfig(run); err == nil {
		cfg = &c
	}
	var buf bytes.Buffer
	if err := report.PNG(&buf, report.Title(filepath.Base(filepath.Clean(run)), cfg, rows), rows, spans); err != nil {
		return fmt.Errorf("%s: %w", run, err)
	}
	path := *out
	if path == "" {
		path = filepath.Join(run, "report.png")
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	var last *checkpoint.Row
	for i := range rows {
		if rows[i].Kind == checkpoint.RowEval {
			last = &rows[i]
		}
	}
	fmt.Fprintf(e.stdout, "wrote %s (%d metrics rows", path, len(rows))
	if last != nil {
		fmt.Fprintf(e.stdout, "; last validation at step %d: %.4f %s", last.Step, last.BPC, last.Unit)
	}
	if spans != nil {
		fmt.Fprintf(e.stdout, "; spans of step %d", spans.Step)
	}
	fmt.Fprintln(e.stdout, ")")
	return nil
}

// reportSpans samples the spans of a run's checkpoint over the start of a split.
func reportSpans(e *env, run, ckpt, data, split string, tokens int64, df deviceFlags) (*eval.SpanSample, error) {
	if ckpt == "" {
		ckpt = run
		if best, _ := checkpoint.Best(run); best != "" {
			ckpt = filepath.Join(run, checkpoint.BestName)
		}
	}
	defer torchrt.Lock()()
	dev, _, err := df.open()
	if err != nil {
		return nil, err
	}
	m, ck, err := checkpoint.Load(ckpt, dev)
	if err != nil {
		return nil, err
	}
	if !ck.Config.Expire {
		fmt.Fprintf(e.stderr, "report: %s has no learned spans (expire is off): no span histogram\n", ck.Path)
		return nil, nil
	}
	if data == "" {
		data = ck.Header.Data.Dir
	}
	r, err := dataset.Open(data)
	if err != nil {
		return nil, err
	}
	if err := ck.CheckVocab(r); err != nil {
		return nil, err
	}
	blocks := max(1, tokens/int64(ck.Config.Block))
	s, err := eval.SampleSpans(context.Background(), m, r, split, blocks)
	if err != nil {
		return nil, err
	}
	s.Step = ck.Step
	return s, nil
}
