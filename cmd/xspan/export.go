package main

import (
	"fmt"
	"os"

	"github.com/sugarme/gotch"

	"xspan/checkpoint"
	"xspan/internal/torchrt"
)

func init() {
	register(command{name: "export", summary: "write a checkpoint's model as one safetensors file (weights, config, vocabulary)", run: runExport})
}

const exportDescription = `
Writes the model of a checkpoint (--ckpt: a run folder for its latest checkpoint,
RUN/best, or a checkpoint folder; format 1 or 2) as one file in the safetensors format
(--format safetensors, the only one): the weights as float32 tensors named as xspan names
them, and in the header's __metadata__ the config (JSON), the vocabulary (its spec as
JSON, and a tokenizer vocabulary's tokenizer.json), the step and training tokens, and a
checksum of the data. The optimizer state and memory are left out.

Any safetensors reader opens it; 'xspan import' reads it back into a run, weights exact.`

func runExport(e *env, args []string) error {
	fs := newFlagSet("export", "--ckpt PATH_OR_RUN --out FILE [--format safetensors]", exportDescription)
	ckpt := fs.String("ckpt", "", "checkpoint: run folder, RUN/best or checkpoint folder (required)")
	format := fs.String("format", "safetensors", "the file format: safetensors")
	out := fs.String("out", "", "the file to write (required)")
	if err := fs.noArgs(e, args); err != nil {
		return err
	}
	switch {
	case *ckpt == "":
		return usageErrorf("--ckpt is required")
	case *out == "":
		return usageErrorf("--out is required")
	case *format != "safetensors":
		return usageErrorf("--format %q: the one format is safetensors", *format)
	}
	if st, err := os.Stat(*out); err == nil && st.IsDir() {
		return usageErrorf("--out %s is a folder: want the path of a file to write", *out)
	}
	defer torchrt.Lock()()
	m, ck, err := checkpoint.Load(*ckpt, gotch.CPU)
	if err != nil {
		return err
	}
	if err := checkpoint.WriteExport(*out, m, ck); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	st, err := os.Stat(*out)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "wrote %s: %d parameters of %s (step %d), %s vocabulary of %d, %d bytes\n",
		*out, m.NumParams(), ck.Path, ck.Step, ck.Vocab.Kind(), ck.Vocab.Size(), st.Size())
	return err
}
