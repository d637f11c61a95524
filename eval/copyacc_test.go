package eval_test

import (
	"bytes"
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"xspan/dataset"
	"xspan/eval"
	"xspan/internal/torchrt"
	"xspan/lm"
)

// TestCopyAccuracy forces a model to predict one symbol everywhere (output weights
// zero, a large bias on 'a'), so that its copy accuracy is the share of 'a' among the
// copied tokens and its exact matches are the examples whose string is all 'a': both
// counted here from the split's tokens and mask. With batch 2 the block length leaves each
// stream's last example incomplete, and those must not count as examples.
func TestCopyAccuracy(t *testing.T) {
	defer torchrt.Lock()()
	task := dataset.CopyTask{SeqLen: 3, Gap: 5, Alphabet: 2, Examples: 40, EvalExamples: 10, Seed: 3}
	data := filepath.Join(t.TempDir(), "copy")
	man, err := dataset.PrepCopy(context.Background(), data, task)
	if err != nil {
		t.Fatal(err)
	}
	r, err := dataset.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	a := int64(strings.IndexRune(man.Vocab.Chars, 'a'))
	if a < 0 {
		t.Fatalf("vocabulary %q has no 'a'", man.Vocab.Chars)
	}

	cfg := tinyConfig(0)
	cfg.Vocab = man.Vocab.Size
	cfg.Block = 20 // streams of 5 examples of 13 tokens: 3 blocks reach token 60, cutting the 5th
	cfg.Dropout = 0
	m, err := lm.New(cfg, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	bias := make([]float32, cfg.Vocab)
	bias[a] = 100
	for _, p := range m.NamedParameters() {
		switch p.Name {
		case "out_w":
			func() { defer torchrt.NoGrad()(); p.Tensor.MustZero_() }()
		case "out_b":
			b := ts.MustOfSlice(bias)
			func() { defer torchrt.NoGrad()(); p.Tensor.Copy_(b) }()
			b.MustDrop()
		}
	}

	// The expected figures over the examples whose scored tokens end before limit (a
	// position within each stream of streamLen tokens).
	ids, err := r.Tokens("valid")
	if err != nil {
		t.Fatal(err)
	}
	scored, err := r.Scored("valid")
	if err != nil {
		t.Fatal(err)
	}
	el := task.ExampleLen()
	expect := func(streamLen, limit int) (right, total, exact, examples int64) {
		for e := 0; (e+1)*el <= len(ids); e++ {
			inStream := (e*el)%streamLen + el - 1 // the example's last token, in its stream
			complete := inStream <= limit
			all := true
			for p := e * el; p < (e+1)*el; p++ {
				if !scored[p] {
					continue
				}
				if !complete && p%streamLen > limit {
					continue
				}
				total++
				if int64(ids[p]) == a {
					right++
				} else {
					all = false
				}
			}
			if complete {
				examples++
				if all {
					exact++
				}
			}
		}
		return
	}

	check := func(name string, res *eval.Result, streamLen, limit int) {
		t.Helper()
		c := res.Copy
		if c == nil {
			t.Fatalf("%s: no copy accuracy", name)
		}
		right, total, exact, examples := expect(streamLen, limit)
		if c.Scored != total || c.Correct != right || c.Examples != examples || c.Exact != exact {
			t.Errorf("%s: %d of %d right, %d of %d examples exact; want %d of %d, %d of %d",
				name, c.Correct, c.Scored, c.Exact, c.Examples, right, total, exact, examples)
		}
		if c.Scored != res.Tokens {
			t.Errorf("%s: accuracy over %d tokens, loss over %d", name, c.Scored, res.Tokens)
		}
		if math.Abs(c.Accuracy-float64(right)/float64(total)) > 1e-12 || math.Abs(c.ExactRate-float64(exact)/float64(examples)) > 1e-12 {
			t.Errorf("%s: rates %v, %v", name, c.Accuracy, c.ExactRate)
		}
		if c.Chance != 0.5 {
			t.Errorf("%s: chance %v, want 1/2", name, c.Chance)
		}
		if right == 0 || right == total || exact == 0 || exact == examples {
			t.Errorf("%s: degenerate case (%d of %d right, %d of %d exact): change the seed", name, right, total, exact, examples)
		}
	}

	one, err := eval.Run(context.Background(), m, r, "valid")
	if err != nil {
		t.Fatal(err)
	}
	check("batch 1", one, len(ids), len(ids))
	if one.Copy.Examples != int64(task.EvalExamples) {
		t.Errorf("batch 1: %d complete examples, want all %d", one.Copy.Examples, task.EvalExamples)
	}

	two, err := eval.Run(context.Background(), m, r, "valid", eval.WithBatch(2))
	if err != nil {
		t.Fatal(err)
	}
	streamLen := 5 * el                // 10 examples in 2 streams
	limit := (streamLen - 1) / 20 * 20 // the last target position reached in each stream
	check("batch 2", two, streamLen, limit)
	if two.Copy.Examples != 8 {
		t.Errorf("batch 2: %d complete examples, want 8 (each stream's last is cut)", two.Copy.Examples)
	}

	// A dump changes nothing: the same loss and the same accuracy.
	var dump bytes.Buffer
	dumped, err := eval.Run(context.Background(), m, r, "valid", eval.WithDump(&dump, nil))
	if err != nil {
		t.Fatal(err)
	}
	if dumped.Copy == nil || *dumped.Copy != *one.Copy {
		t.Errorf("with a dump: copy accuracy %+v, without %+v", dumped.Copy, one.Copy)
	}
	if dumped.Tokens != one.Tokens || dumped.Loss != one.Loss {
		t.Errorf("with a dump: loss %v over %d tokens; without %v over %d", dumped.Loss, dumped.Tokens, one.Loss, one.Tokens)
	}
}
