package checkpoint

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Kinds of metrics rows.
const (
	RowTrain = "train"
	RowEval  = "eval"
)

// Row is one line of RUN/metrics.jsonl: a logged training step (Kind "train") or an
// evaluation (Kind "eval").
type Row struct {
	Kind   string  `json:"kind"`
	Step   int64   `json:"step"`
	Tokens int64   `json:"tokens"`
	Time   float64 `json:"time"` // seconds since the run (or its resumption) started

	// Training rows: averages over the steps since the last logged row.
	Loss      float64 `json:"loss,omitempty"` // task loss, nats per token
	BPC       float64 `json:"bpc,omitempty"`  // in the run's unit (see dataset.Unit)
	SpanLoss  float64 `json:"span_loss,omitempty"`
	LR        float64 `json:"lr,omitempty"`
	GradNorm  float64 `json:"grad_norm,omitempty"`
	TokPerSec float64 `json:"tok_per_s,omitempty"`
	// Per layer: the mean and largest span of the live memories, and live memories per
	// stream (cache length).
	MeanSpan []float64 `json:"mean_span,omitempty"`
	MaxSpan  []float64 `json:"max_span,omitempty"`
	Live     []float64 `json:"live,omitempty"`
	// RSS is the process's resident memory in MiB when the row was written.
	RSS float64 `json:"rss_mib,omitempty"`
	// GPUPeak is the CUDA caching allocator's peak allocation since the run (or resume)
	// began, in MiB; 0 on the CPU.
	GPUPeak float64 `json:"gpu_peak_mib,omitempty"`
	// Distributed runs: the ranks, and the mean time per step spent in the gradients'
	// all-reduce, in milliseconds.
	World       int     `json:"world,omitempty"`
	AllReduceMS float64 `json:"allreduce_ms,omitempty"`

	// Evaluation rows.
	Split        string  `json:"split,omitempty"`
	BitsPerToken float64 `json:"bits_per_token,omitempty"`
	Unit         string  `json:"unit,omitempty"`
	EvalTokens   int64   `json:"eval_tokens,omitempty"`
}

// MetricsWriter appends rows to a metrics.jsonl file, one line each, flushed per row.
type MetricsWriter struct {
	f *os.File
}

// OpenMetrics opens path for appending. Rows of a step after keepUpTo are dropped first
// (keepUpTo < 0 keeps all): a resumed run rewrites the history after its checkpoint.
func OpenMetrics(path string, keepUpTo int64) (*MetricsWriter, error) {
	if keepUpTo >= 0 {
		rows, err := ReadMetrics(path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		var buf bytes.Buffer
		dropped := false
		for _, r := range rows {
			if r.Step > keepUpTo {
				dropped = true
				continue
			}
			js, _ := json.Marshal(r)
			buf.Write(js)
			buf.WriteByte('\n')
		}
		if dropped {
			if err := WriteFileAtomic(path, buf.Bytes()); err != nil {
				return nil, err
			}
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &MetricsWriter{f: f}, nil
}

// Write appends one row.
func (w *MetricsWriter) Write(r *Row) error {
	js, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.f.Write(append(js, '\n'))
	return err
}

// Close closes the file.
func (w *MetricsWriter) Close() error { return w.f.Close() }

// ReadMetrics reads a metrics.jsonl file. A last line cut short (a killed run) is
// ignored; any other bad line is an error naming its line number.
func ReadMetrics(path string) ([]Row, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rows []Row
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	line := 0
	complete := len(data) == 0 || data[len(data)-1] == '\n'
	var pending error
	for sc.Scan() {
		line++
		if pending != nil {
			return nil, pending
		}
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var r Row
		if err := json.Unmarshal(b, &r); err != nil {
			pending = fmt.Errorf("%s:%d: %w", path, line, err)
			continue
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if pending != nil && complete {
		return nil, pending
	}
	return rows, nil
}
