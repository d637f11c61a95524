package eval

import "xspan/dataset"

// CopyAccuracy scores greedy predictions on the scored targets of a split: a target is
// right when the argmax of the model's log-probabilities at its position, given the true
// prefix (teacher forcing), is the target token.
type CopyAccuracy struct {
	Scored   int64   `json:"scored"`   // scored targets evaluated
	Correct  int64   `json:"correct"`  // of those, predicted right
	Accuracy float64 `json:"accuracy"` // Correct / Scored
	// Examples counts the complete examples: those whose every scored target was
	// evaluated (a stream's cut tail and unevaluated blocks leave some out). Exact of them
	// had every scored target right. Both are 0 when the split has no example length.
	Examples  int64   `json:"examples"`
	Exact     int64   `json:"exact"`
	ExactRate float64 `json:"exact_rate"` // Exact / Examples
	// Chance is the accuracy of guessing one of the task's symbols uniformly (1/alphabet
	// for the copy task), 0 when the manifest does not say.
	Chance float64 `json:"chance,omitempty"`
}

// copyCounter accumulates CopyAccuracy: per example, scored targets seen and right.
type copyCounter struct {
	acc        CopyAccuracy
	exampleLen int64
	want       []int32 // scored targets per example, from the split's mask
	seen, good []int32
}

func newCopyCounter(r *dataset.Reader, split string, exampleLen int64) (*copyCounter, error) {
	c := &copyCounter{exampleLen: exampleLen}
	if t := r.Manifest().Task; t != nil && t.Name == dataset.TaskCopy && t.Alphabet > 0 {
		c.acc.Chance = 1 / float64(t.Alphabet)
	}
	if exampleLen <= 0 {
		return c, nil
	}
	scored, err := r.Scored(split)
	if err != nil {
		return nil, err
	}
	n := (int64(len(scored)) + exampleLen - 1) / exampleLen
	c.want, c.seen, c.good = make([]int32, n), make([]int32, n), make([]int32, n)
	for p, ok := range scored {
		if ok {
			c.want[int64(p)/exampleLen]++
		}
	}
	return c, nil
}

// add counts one scored target at split position pos (the target token's position).
func (c *copyCounter) add(pos int64, right bool) {
	c.acc.Scored++
	if right {
		c.acc.Correct++
	}
	if c.exampleLen > 0 {
		e := pos / c.exampleLen
		c.seen[e]++
		if right {
			c.good[e]++
		}
	}
}

func (c *copyCounter) result() *CopyAccuracy {
	a := c.acc
	for e, w := range c.want {
		if w > 0 && c.seen[e] == w {
			a.Examples++
			if c.good[e] == w {
				a.Exact++
			}
		}
	}
	if a.Scored > 0 {
		a.Accuracy = float64(a.Correct) / float64(a.Scored)
	}
	if a.Examples > 0 {
		a.ExactRate = float64(a.Exact) / float64(a.Examples)
	}
	return &a
}
