package eval

import (
	"context"
	"errors"

	"xspan/dataset"
	"xspan/lm"
)

// SpanSample is the spans a checkpoint gives the tokens of a stretch of text.
type SpanSample struct {
	Step    int64       // the checkpoint's step
	Split   string      // where the text came from
	MaxSpan float64     // the model's L
	Spans   [][]float32 // per layer, one span per token
}

// SampleSpans runs the model over the first blocks of a split (one stream, memory
// carried) and returns the span it gives each token, per layer.
func SampleSpans(ctx context.Context, m *lm.Model, r *dataset.Reader, split string, blocks int64) (*SpanSample, error) {
	if !m.Cfg.Expire {
		return nil, errors.New("the model has no learned spans (expire is off)")
	}
	s := &SpanSample{Split: split, MaxSpan: float64(m.Cfg.MaxSpan), Spans: make([][]float32, m.Cfg.Layers)}
	_, err := Run(ctx, m, r, split, WithMaxBlocks(blocks), withSpans(func(l int, sp []float32) {
		s.Spans[l] = append(s.Spans[l], sp...)
	}))
	if err != nil {
		return nil, err
	}
	return s, nil
}
